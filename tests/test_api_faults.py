"""Faults degrade a completion (with the reason in ``knowgate.steps``) instead of failing the
request, and no request outlives the request timeout. The answerer and critic are the real
litellm roles, calling a loopback provider that fails on purpose."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from knowgate.agents.answerer import LiteLLMAnswerer
from knowgate.agents.critic import LiteLLMCritic
from knowgate.agents.llm import build_router
from knowgate.settings import Settings
from knowgate.testing import Fail, Hang, ScriptedAnswerer, ScriptedCritic, ScriptedSearcher
from knowgate.tests.api_helpers import Q, server_settings, serving, triage_context
from knowgate.tests.loopback_openai import Error, LoopbackLLM, Seen

FAST, SLOW = "openai/gpt-4o-mini", "openai/gpt-4o"
MODEL = "knowgate/triage"


def _provider(seen: Seen) -> str | Error:
    if seen.model == "gpt-4o-mini":
        return Error(500, "upstream exploded")
    return json.dumps({"verdict": "revise", "answer": "Kedal", "confidence": 0.97})


@pytest.fixture
def provider() -> Iterator[LoopbackLLM]:
    with LoopbackLLM(default=_provider) as srv:
        yield srv


def _hosted(tmp_path: Path, srv: LoopbackLLM, **overrides) -> Settings:
    params = {"api_base": srv.api_base, "api_key": "test-key"}
    return server_settings(tmp_path, answerer=FAST, critic=SLOW, prober="off", llm_retries=1,
                           llm_timeout_s=5.0, litellm_params={FAST: params, SLOW: params},
                           **overrides)


def _chat(url: str, stream: bool = False, thread: str | None = None) -> httpx.Response:
    headers = {"X-Knowgate-Thread": thread} if thread else {}
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": MODEL, "stream": stream,
                            "messages": [{"role": "user", "content": Q}]})


def _stream_trace(response: httpx.Response) -> dict:
    events = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    return next(e["knowgate"] for e in events if e.get("knowgate"))


def test_a_failing_answerer_provider_leaves_the_critic_to_answer(
        tmp_path: Path, provider: LoopbackLLM) -> None:
    settings = _hosted(tmp_path, provider)
    router = build_router(settings, [FAST, SLOW])
    context = triage_context(
        answerer=LiteLLMAnswerer(router, FAST, "json", 10.0),
        critic=LiteLLMCritic(router, SLOW, "json", 10.0))
    with serving(settings, context) as srv:
        response = _chat(srv.url)

    assert response.status_code == 200
    trace = response.json()["knowgate"]
    failed = [s for s in trace["steps"] if s["error"]]
    assert failed and failed[0]["role"] == "answerer" and failed[0]["action"] == "draft"
    assert "InternalServerError" in failed[0]["reason"]
    assert "upstream exploded" in failed[0]["reason"]
    assert len(provider.seen("gpt-4o-mini")) == 2  # the call and its one retry
    assert trace["outcome"] == "answered" and trace["answer"] == "Kedal"
    assert "refine" in trace["path"]


def test_search_and_critic_down_means_an_abstention_with_reasons(tmp_path: Path) -> None:
    context = triage_context(
        answerer=ScriptedAnswerer(closed={Q: ("Badal", 0.3)}),
        searcher=ScriptedSearcher(results={Q: Fail("chroma is unreachable")}),
        critic=ScriptedCritic(verdicts={Q: Fail("critic provider returned 503")}))
    with serving(server_settings(tmp_path), context) as srv:
        plain, streamed = _chat(srv.url), _chat(srv.url, stream=True)

    assert plain.status_code == streamed.status_code == 200
    for trace in (plain.json()["knowgate"], _stream_trace(streamed)):
        reasons = {s["role"]: s["reason"] for s in trace["steps"] if s["error"]}
        assert reasons == {"searcher": "failed: chroma is unreachable",
                           "critic": "failed: critic provider returned 503"}
        assert trace["outcome"] == "abstained"
    assert plain.json()["choices"][0]["message"]["content"] == "I don't know."


@pytest.mark.parametrize("stream", [False, True])
def test_nothing_outlives_the_request_timeout(tmp_path: Path, stream: bool) -> None:
    context = triage_context(answerer=ScriptedAnswerer(closed={Q: Hang(60)}), timeout_s=30)
    with serving(server_settings(tmp_path, request_timeout_s=1.0), context) as srv:
        started = time.perf_counter()
        response = _chat(srv.url, stream=stream, thread="slow")
        elapsed = time.perf_counter() - started
        again = _chat(srv.url, thread="slow")  # the thread was let go

    assert elapsed < 8.0  # the answerer would hang for 60 s
    assert response.status_code == 200 and again.status_code == 200
    trace = _stream_trace(response) if stream else response.json()["knowgate"]
    assert trace["outcome"] == "abstained"
    assert trace["steps"][-1]["error"] is True
    assert "request timeout of 1 s" in trace["steps"][-1]["reason"]
