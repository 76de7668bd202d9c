"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from knowgate.runtime import AskResult

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Requests, outcomes, decisions, dollars and latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("knowgate_requests", "Chat completion requests by HTTP status",
                                ["status"], registry=self.registry)
        self.outcomes = Counter("knowgate_outcomes", "Completions by outcome",
                                ["graph", "outcome"], registry=self.registry)
        self.decisions = Counter("knowgate_decisions", "Actions taken by the graphs",
                                 ["action", "error"], registry=self.registry)
        self.dollars = Counter("knowgate_cost_usd", "Dollars spent by the graphs",
                               ["graph"], registry=self.registry)
        self.latency = Histogram("knowgate_request_latency_seconds",
                                 "Wall-clock seconds of a chat completion request (to the "
                                 "last byte of a stream)", buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.graph_latency = Histogram("knowgate_graph_latency_seconds",
                                       "Seconds the graph ran per completion", ["graph"],
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("knowgate_requests_in_flight", "Chat completions running",
                               registry=self.registry)

    def record(self, result: AskResult) -> None:
        """Count one finished graph run."""
        self.outcomes.labels(result.graph, result.outcome).inc()
        for step in result.steps:
            self.decisions.labels(step.action, str(step.error).lower()).inc()
        self.dollars.labels(result.graph).inc(result.cost_usd)
        self.graph_latency.labels(result.graph).observe(result.latency_s)

    def exposition(self) -> bytes:
        """The text format ``GET /metrics`` serves."""
        return generate_latest(self.registry)
