"""OpenTelemetry spans per graph node, read back from an in-memory exporter."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from knowgate.agents.answerer import LiteLLMAnswerer
from knowgate.agents.llm import build_router
from knowgate.api.tracing import tracer_provider_for
from knowgate.tests.api_helpers import Q, server_settings, serving, triage_context
from knowgate.tests.loopback_openai import LoopbackLLM

FAST = "openai/gpt-4o-mini"


def test_one_span_per_node_with_action_tokens_and_dollars(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reply = json.dumps({"answer": "Kedal", "confidence": 0.99, "label": "sure"})
    with LoopbackLLM(default=lambda seen: reply) as llm:
        settings = server_settings(tmp_path, answerer=FAST, critic=FAST, prober="off",
                                   llm_retries=0,
                                   litellm_params={FAST: {"api_base": llm.api_base,
                                                          "api_key": "k"}})
        answerer = LiteLLMAnswerer(build_router(settings, [FAST]), FAST, "json", 10.0)
        with serving(settings, triage_context(answerer=answerer),
                     tracer_provider=provider) as srv:
            body = httpx.post(srv.url + "/v1/chat/completions", timeout=30, json={
                "model": "knowgate/triage",
                "messages": [{"role": "user", "content": Q}]}).json()
        billed = llm.billed

    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "knowgate.chat_completion")
    nodes = sorted((s for s in spans if s.name.startswith("knowgate.node.")),
                   key=lambda s: s.start_time)
    assert [s.attributes["knowgate.node"] for s in nodes] == [
        "probe", "decide", "draft", "probe", "decide", "answer"]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id
               for s in nodes)
    assert root.attributes["knowgate.outcome"] == "answered"
    draft = next(s for s in nodes if s.attributes["knowgate.node"] == "draft")
    assert draft.attributes["knowgate.action"] == "draft"
    assert draft.attributes["knowgate.tokens.prompt"] == billed[0].prompt_tokens > 0
    assert draft.attributes["knowgate.tokens.completion"] == billed[0].completion_tokens
    assert draft.attributes["knowgate.cost_usd"] == body["knowgate"]["steps"][0]["cost_usd"] > 0
    decide = [s for s in nodes if s.attributes["knowgate.node"] == "decide"]
    assert [s.attributes["knowgate.decision"] for s in decide] == ["draft", "answer"]
    assert body["usage"]["prompt_tokens"] == billed[0].prompt_tokens  # usage from the same hook


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    assert tracer_provider_for(server_settings(tmp_path)) is None
    assert tracer_provider_for(server_settings(tmp_path, otel_exporter="console")) is not None
