"""The operator's own traces: one span per reconcile pass (reconcile/run.py), exported by OTLP
when the chart's `tracing.enabled` sets OTEL_TRACES_EXPORTER=otlp and the endpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["install_tracing"]


def install_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Installs the SDK's tracer provider when OTEL_TRACES_EXPORTER is `otlp`; returns whether
    it did. Without it the API's tracer is a no-op and spans cost nothing."""
    if environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() != "otlp":
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME", "kinfer-operator")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
