"""Optional OpenTelemetry tracing, with the trace context carried in Kafka headers.

Off by default (``<SERVICE>_TRACING_ENABLED=true`` turns it on). When on:

* every HTTP request is a SERVER span continuing an incoming ``traceparent``
  (FastAPI's native telemetry does this once an SDK tracer provider is set);
* ``outbox.enqueue`` stores the current context (W3C ``traceparent`` /
  ``tracestate``) in the outbox row's headers, so the relay publishes it with the
  message, however long after the request it runs;
* the consumer runner handles each event inside a CONSUMER span whose parent is
  the context found in the message's headers. Events the handler enqueues carry
  that span on, so one purchase can be followed from the till's request through
  every service that reacts to it.

The API (``opentelemetry-api``) is always installed; the SDK and exporters are
only imported when tracing is on. Exporters: ``otlp`` (needs
``opentelemetry-exporter-otlp-proto-http``; endpoint from the standard
``OTEL_EXPORTER_OTLP_*`` variables), ``console``, or ``none`` (spans are made and
propagated but exported only by a provider someone else installed, as in tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from shared.config import ServiceSettings

TRACER = "keepwell"
_state: dict[str, object] = {"enabled": False, "service": "service"}


def enabled() -> bool:
    return _state["enabled"] is True


def configure(settings: ServiceSettings, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on or off for this process, per the settings; True when on.

    The first call that turns it on installs the SDK's tracer provider (a test may
    have installed its own, which is kept); ``exporter`` overrides the configured one.
    """
    _state["enabled"] = bool(settings.tracing_enabled)
    _state["service"] = settings.service_name
    if not settings.tracing_enabled:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("tracing_enabled needs the opentelemetry-sdk package") from exc
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        resource = Resource.create({"service.name": settings.service_name})
        provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(provider)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.tracing_exporter != "none":
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings.tracing_exporter)))
    return True


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "tracing_exporter=otlp needs opentelemetry-exporter-otlp-proto-http"
        ) from exc
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def outgoing_headers() -> list[list[str]]:
    """The current trace context as message headers (none when tracing is off)."""
    if not enabled():
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [[k, v] for k, v in carrier.items()]


def _context_from(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {k.lower(): v.decode("latin-1") for k, v in (headers or ())}
    return propagate.extract(carrier)


@contextmanager
def consuming(
    topic: str, headers: Sequence[tuple[str, bytes]] | None, attributes: dict[str, Any]
) -> Iterator[None]:
    """Handle one message inside a CONSUMER span continuing the producer's trace."""
    if not enabled():
        yield
        return
    with _tracer().start_as_current_span(
        f"consume {topic}",
        context=_context_from(headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "keepwell.service": str(_state["service"]),
            **attributes,
        },
    ):
        yield
