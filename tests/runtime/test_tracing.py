"""kinfer_runtime.tracing: off by default; span tree and batch links (in-memory exporter; the
real backend is in test_tracing_jaeger.py)."""

import asyncio

from kinfer_runtime.tracing import Tracing, batch_spans, stage, tracing_from_env
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def test_off_unless_the_otlp_exporter_is_asked_for() -> None:
    assert tracing_from_env({}, "x") is None
    assert tracing_from_env({"OTEL_TRACES_EXPORTER": "none"}, "x") is None
    on = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert tracing_from_env(on, "x") is None
    tracing = tracing_from_env({"OTEL_TRACES_EXPORTER": "otlp"}, "x")
    assert tracing is not None
    tracing.shutdown()


def test_stage_without_a_trace_is_a_no_op() -> None:
    with stage(None, "decode"):
        pass


def test_a_batch_links_every_traced_request_and_parents_under_the_first() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    parent = {"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}
    first = tracing.start(parent, "m", "1", "rest")
    second = tracing.start({}, "m", "1", "grpc")
    for request in (first, second):
        request.queued()

    async def run() -> None:
        with batch_spans([first, second], 3) as batch, batch.stage("inference"):
            await asyncio.sleep(0)

    asyncio.run(run())
    first.end(200, "miss")
    second.end(503, "off")
    spans = {s.name + str(i): s for i, s in enumerate(exporter.get_finished_spans())}
    by_name: dict[str, list] = {}
    for span in spans.values():
        by_name.setdefault(span.name, []).append(span)
    assert len(by_name["queue wait"]) == 2 and len(by_name["infer"]) == 2
    (batch,) = by_name["batch"]
    (inference,) = by_name["inference"]
    infer_first = next(s for s in by_name["infer"] if s.context.trace_id == int("a" * 32, 16))
    assert infer_first.parent is not None and infer_first.parent.span_id == int("b" * 16, 16)
    assert batch.parent.span_id == infer_first.context.span_id
    assert inference.parent.span_id == batch.context.span_id
    assert {link.context.span_id for link in batch.links} == {
        s.context.span_id for s in by_name["infer"]
    }
    assert batch.attributes["kinfer.batch.size"] == 3
    assert batch.attributes["kinfer.batch.requests"] == 2
    failed = next(s for s in by_name["infer"] if s is not infer_first)
    assert failed.attributes["http.response.status_code"] == 503
    assert not failed.status.is_ok
