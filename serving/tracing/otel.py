"""OpenTelemetry for the API: one tracer provider per process, exporting over OTLP when asked.

The ecosystem's convention decides: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans are batched to it over OTLP/HTTP, so Jaeger,
Tempo, Langfuse or Opik show them; the exporter reads the other ``OTEL_*`` variables (headers,
timeouts) itself. Without it spans are still made (the request trace reads their timings) but
go nowhere. Tests pass their own processor (the SDK's in-memory exporter).
"""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE_NAME = "streamrag-api"


def otlp_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracer_provider(processor: SpanProcessor | None = None) -> TracerProvider:
    """A provider for this API process: ``processor`` if given, else OTLP when configured."""
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    if processor is not None:
        provider.add_span_processor(processor)
    elif otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
