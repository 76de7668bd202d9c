"""What each graph node did, as token counts for the usage field and as OpenTelemetry spans.

``NodeObserver`` is the run's ``NodeHooks`` (``knowgate.graphs.direct``): told about each node
and its partial update by whichever engine runs the graph, it reads the step, dollars and tokens
from that update, so nodes need no tracing code of their own.
Spans are made only when the app was given a tracer provider (``settings.otel_exporter`` or a
test's in-memory exporter); otherwise tracing is off and costs nothing but the token count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knowgate.errors import UserError
from knowgate.settings import Settings


def tracer_provider_for(settings: Settings) -> Any:
    """The tracer provider ``settings.otel_exporter`` asks for, or ``None`` when off."""
    if settings.otel_exporter == "off":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if settings.otel_exporter == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise UserError("otel_exporter = 'otlp' needs opentelemetry-exporter-otlp") from exc
        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "knowgate"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _node_step(outputs: Any) -> Any:
    """The step a node recorded (nodes return only their new steps)."""
    steps = outputs.get("steps") if isinstance(outputs, dict) else None
    return steps[-1] if steps else None


class NodeObserver:
    """Collects tokens per run and, with a tracer, one span per node under ``parent``.

    Args:
        tracer: An OpenTelemetry tracer, or ``None`` for no spans.
        parent: The span context node spans hang under (the request's span).
        on_spent: Called with the dollars the run's finished steps cost, after each node that
            changed them (the request's budget hold records it for a restart).
    """

    def __init__(self, tracer: Any = None, parent: Any = None,
                 on_spent: Callable[[float], None] | None = None) -> None:
        self.tracer = tracer
        self.parent = parent
        self.on_spent = on_spent
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.steps: list[Any] = []  # the steps so far, for a run the request timeout cuts off
        self._open: dict[str, Any] = {}  # node -> its span (None without a tracer)

    async def node_started(self, node: str, state: Any) -> None:
        """Open a span when a node starts."""
        span = None
        if self.tracer is not None:
            span = self.tracer.start_span(f"knowgate.node.{node}", context=self.parent,
                                          attributes={"knowgate.node": node})
        self._open[node] = span

    async def node_finished(self, node: str, outputs: dict[str, Any]) -> None:
        """Count the node's tokens and close its span with the step's figures."""
        if node not in self._open:
            return
        span = self._open.pop(node)
        if isinstance(outputs, dict) and outputs.get("steps"):
            self.steps += outputs["steps"]
            if self.on_spent is not None:
                self.on_spent(round(sum(s.cost_usd for s in self.steps), 10))
        tokens = [0, 0]
        for name in ("draft", "verdict"):
            usage = getattr(outputs.get(name) if isinstance(outputs, dict) else None,
                            "usage", None)
            if usage is not None:
                tokens[0] += usage.prompt_tokens
                tokens[1] += usage.completion_tokens
        self.prompt_tokens += tokens[0]
        self.completion_tokens += tokens[1]
        if span is None:
            return
        step = _node_step(outputs)
        span.set_attribute("knowgate.tokens.prompt", tokens[0])
        span.set_attribute("knowgate.tokens.completion", tokens[1])
        if step is not None:
            span.set_attribute("knowgate.action", step.action)
            span.set_attribute("knowgate.reason", step.reason)
            span.set_attribute("knowgate.cost_usd", step.cost_usd)
            span.set_attribute("knowgate.error", step.error)
            if step.role:
                span.set_attribute("knowgate.role", step.role)
        decision = outputs.get("decision") if isinstance(outputs, dict) else None
        if decision is not None:
            span.set_attribute("knowgate.decision", decision.action)
            span.set_attribute("knowgate.p_correct", decision.p_correct)
        if step is not None and step.error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, step.reason))
        span.end()

    async def node_failed(self, node: str, error: BaseException) -> None:
        """Close a node's span when the node raised (or was cancelled by the timeout)."""
        span = self._open.pop(node, None)
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
