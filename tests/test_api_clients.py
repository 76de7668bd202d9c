"""The unchanged ``openai`` client and LangChain's ``ChatOpenAI`` against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from knowgate.api.serve import ServerThread
from knowgate.tests.api_helpers import Q, server_settings, serving, triage_context

UNKNOWN = "Who founded Nowhere Corp?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serving(server_settings(tmp_path_factory.mktemp("api")), triage_context()) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_openai_client_non_streaming(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="knowgate/triage", messages=[{"role": "user", "content": Q}])

    assert reply.object == "chat.completion" and reply.model == "knowgate/triage"
    assert reply.choices[0].message.content == "Kedal"
    assert reply.choices[0].finish_reason == "stop"
    trace = reply.model_extra["knowgate"]
    assert trace["outcome"] == "answered" and trace["citations"] == ["p1"]
    assert trace["path"] == ["draft", "search", "draft", "answer"]
    assert [s["action"] for s in trace["steps"]] == trace["path"]
    assert all({"reason", "cost_usd", "latency_s"} <= set(s) for s in trace["steps"])
    assert trace["cost_usd"] == pytest.approx(2 * 0.000003 + 0.00003)
    assert 0.5 < trace["confidence"] <= 1.0
    assert trace["signals"]["search_support"] == 1.0


def test_openai_client_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="knowgate/triage", messages=[{"role": "user", "content": Q}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Kedal"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finish) == 1 and finish[0].model_extra["knowgate"]["outcome"] == "answered"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # include_usage honoured


def test_stream_without_usage_ends_with_done(server: ServerThread) -> None:
    body = {"model": "knowgate/triage", "stream": True,
            "messages": [{"role": "user", "content": Q}]}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert all('"usage"' not in e for e in events)


def test_an_abstention_is_a_normal_reply(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="knowgate/triage", messages=[{"role": "user", "content": UNKNOWN}])

    assert reply.choices[0].message.content == "I don't know."
    trace = reply.model_extra["knowgate"]
    assert trace["outcome"] == "abstained" and trace["answer"] is None
    assert trace["path"][-1] == "abstain"


def test_each_graph_is_a_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"knowgate/triage", "knowgate/fast-only", "knowgate/always-search",
            "knowgate/always-refine"} <= ids
    reply = client.chat.completions.create(
        model="knowgate/fast-only", messages=[{"role": "user", "content": Q}])
    assert reply.choices[0].message.content == "Badal"  # the baseline answers closed-book
    assert reply.model_extra["knowgate"]["path"] == ["draft", "answer"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="knowgate/nope",
                                       messages=[{"role": "user", "content": Q}])
    assert caught.value.code == "model_not_found"


def test_langchain_chat_openai_invoke_and_stream(server: ServerThread) -> None:
    llm = ChatOpenAI(model="knowgate/triage", base_url=server.url + "/v1", api_key="unused",
                     max_retries=0)
    message = llm.invoke(Q)
    assert message.content == "Kedal"
    streamed = "".join(str(part.content) for part in llm.stream(Q))
    assert streamed == "Kedal"


def test_health_metrics_and_openapi(server: ServerThread, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="knowgate/triage",
                                   messages=[{"role": "user", "content": Q}])
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    metrics = httpx.get(server.url + "/metrics").text
    for name in ("knowgate_requests_total", "knowgate_outcomes_total",
                 "knowgate_decisions_total", "knowgate_cost_usd_total",
                 "knowgate_request_latency_seconds_bucket"):
        assert name in metrics
    assert 'knowgate_outcomes_total{graph="triage",outcome="answered"}' in metrics
    assert 'knowgate_decisions_total{action="search",error="false"}' in metrics
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/healthz", "/metrics"} <= set(paths)


def test_history_sent_by_the_client_reaches_the_graph(tmp_path: Path) -> None:
    from knowgate.tests.api_helpers import EchoAnswerer, triage_context

    echo = EchoAnswerer()
    with serving(server_settings(tmp_path), triage_context(answerer=echo)) as srv:
        reply = openai.OpenAI(base_url=srv.url + "/v1", api_key="x").chat.completions.create(
            model="knowgate/fast-only", messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I live in Kedal."},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": "Where do I live?"}])
    assert reply.choices[0].message.content == "heard user: I live in Kedal. | assistant: Noted."
    assert echo.calls[0][0] == "Where do I live?"
