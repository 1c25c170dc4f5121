"""OpenTelemetry tracing of inference requests: off unless OTEL_TRACES_EXPORTER=otlp.

Configured only by the standard OTEL_* variables (the operator sets them from
`spec.runtime.tracing` and its own `tracing.otlpEndpoint` setting; see OTEL_ENV). Off, no
tracing object exists: the request path holds `None` and every hook is one `is None` test, so
tracing costs nothing measurable when off (bench/tracing.py measures it).

One request's spans, all in the caller's trace when it sent a W3C `traceparent`:

    infer (SERVER; model, protocol, kinfer.cache=hit|miss|off)
    ├── decode          receive and parse the body / message
    ├── preprocess      validate and prepare the tensors (`stage(trace, "preprocess")` is the
    │                   hook for anything else that runs per request before the model)
    ├── queue wait      queued until a batch took the request
    ├── batch           (only under the first traced request of the batch) kinfer.batch.size
    │   │               (rows) and kinfer.batch.requests, and a span link to the `infer` span
    │   │               of every traced request in it
    │   └── inference   the model call
    └── postprocess     output selection and encoding

A response-cache hit has decode, preprocess and postprocess only: it never reaches the batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "OTEL_ENV",
    "RequestTrace",
    "Tracing",
    "batch_spans",
    "stage",
    "tracing_from_env",
]

OTEL_ENV: Final = (
    "OTEL_TRACES_EXPORTER",  # "otlp" turns tracing on; unset or "none": off
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",  # grpc (the exporter this image ships)
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)
"""The variables the runtime reads (through the OpenTelemetry SDK) and the operator sets."""

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_OFF: Final = contextlib.nullcontext()


class RequestTrace:
    """The spans of one request; created only when tracing is on."""

    __slots__ = ("context", "queued_ns", "span", "tracer")

    def __init__(self, tracer: Tracer, carrier: Mapping[str, str], attributes: dict[str, Any]):
        self.tracer = tracer
        parent = _PROPAGATOR.extract(carrier)
        self.span = tracer.start_span(
            "infer", context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        self.context: Context = trace.set_span_in_context(self.span, parent)
        self.queued_ns = 0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        with self.tracer.start_as_current_span(name, context=self.context):
            yield

    def queued(self) -> None:
        self.queued_ns = time.time_ns()

    def end(self, status: int, cache: str) -> None:
        self.span.set_attribute("http.response.status_code", status)
        self.span.set_attribute("kinfer.cache", cache)
        if status >= 500:
            self.span.set_status(trace.StatusCode.ERROR)
        self.span.end()


def stage(request: RequestTrace | None, name: str) -> contextlib.AbstractContextManager[None]:
    """A child span of the request's `infer` span, or nothing when the request is untraced."""
    return _OFF if request is None else request.stage(name)


@contextlib.contextmanager
def batch_spans(traces: Sequence[RequestTrace], rows: int) -> Iterator[RequestTrace]:
    """Ends each request's `queue wait` and opens `batch` (under the first traced request,
    linked to all of them); the caller opens `inference` with `.stage("inference")` on the
    yielded object, whose context is the batch span's."""
    now = time.time_ns()
    for request in traces:
        wait = request.tracer.start_span(
            "queue wait", context=request.context, start_time=request.queued_ns or now
        )
        wait.end(end_time=now)
    first = traces[0]
    links = [Link(request.span.get_span_context()) for request in traces]
    with first.tracer.start_as_current_span(
        "batch",
        context=first.context,
        links=links,
        attributes={"kinfer.batch.size": rows, "kinfer.batch.requests": len(traces)},
    ) as span:
        batch = RequestTrace.__new__(RequestTrace)
        batch.tracer = first.tracer
        batch.span = span
        batch.context = trace.set_span_in_context(span, first.context)
        batch.queued_ns = 0
        yield batch


class Tracing:
    """The tracer provider and its OTLP exporter; one per runtime process."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self.tracer: Tracer = provider.get_tracer("kinfer-runtime")

    def start(
        self, carrier: Mapping[str, str], model: str, version: str, protocol: str
    ) -> RequestTrace:
        return RequestTrace(
            self.tracer,
            carrier,
            {"kinfer.model": model, "kinfer.model_version": version, "rpc.system": protocol},
        )

    def shutdown(self) -> None:
        """Flushes the spans still buffered (the exporter batches them)."""
        self._provider.shutdown()


def tracing_from_env(environ: Mapping[str, str], service_name: str) -> Tracing | None:
    """Tracing when OTEL_TRACES_EXPORTER is `otlp` (and OTEL_SDK_DISABLED is not true)."""
    if environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() != "otlp":
        return None
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    # Imported only when on: the SDK and the exporter are not on the path of a runtime
    # without tracing.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER/_ARG, the endpoint from
    # OTEL_EXPORTER_OTLP_ENDPOINT: the SDK reads them itself.
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracing(provider)
