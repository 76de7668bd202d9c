"""Threads: history kept by the checkpointer across a restart (SQLite and PostgreSQL), and the
one-request-per-thread rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from knowgate.settings import Settings
from knowgate.tests.api_helpers import (
    EchoAnswerer,
    postgres_server,
    server_settings,
    serving,
    triage_context,
)

MODEL = "knowgate/fast-only"


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield server_settings(tmp_path, checkpoint_db=tmp_path / "threads.sqlite")
        return
    with postgres_server() as postgres:
        yield server_settings(tmp_path, checkpoint_url=postgres.url)


def _ask(url: str, content: str, thread: str | None = None,
         messages: list[dict[str, str]] | None = None) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    return client.chat.completions.create(
        model=MODEL, messages=[*(messages or []), {"role": "user", "content": content}],
        metadata={"thread_id": thread} if thread else openai.NOT_GIVEN)


def test_a_restart_keeps_a_threads_history(settings: Settings) -> None:
    with serving(settings, triage_context(answerer=EchoAnswerer())) as srv:
        first = _ask(srv.url, "My name is Ada.", thread="t-ada")
        assert first.choices[0].message.content == "heard nothing"
        assert first.model_extra["knowgate"]["thread_id"] == "t-ada"

    echo = EchoAnswerer()  # a new process's roles: nothing carried over in memory
    with serving(settings, triage_context(answerer=echo)) as srv:
        second = _ask(srv.url, "What is my name?", thread="t-ada")
        other = _ask(srv.url, "What is my name?", thread="t-bob")
        stateless = _ask(srv.url, "What is my name?")

    assert echo.calls[0] == ("What is my name?", echo.calls[0][1])
    assert [(t.role, t.content) for t in echo.calls[0][1]] == [
        ("user", "My name is Ada."), ("assistant", "heard nothing")]
    assert second.choices[0].message.content == (
        "heard user: My name is Ada. | assistant: heard nothing")
    assert other.choices[0].message.content == "heard nothing"  # threads do not mix
    assert stateless.choices[0].message.content == "heard nothing"


def test_a_client_resending_the_conversation_is_not_doubled(tmp_path: Path) -> None:
    echo = EchoAnswerer()
    with serving(server_settings(tmp_path), triage_context(answerer=echo)) as srv:
        first = _ask(srv.url, "I live in Kedal.", thread="t1")
        said = first.choices[0].message.content or ""
        _ask(srv.url, "Where do I live?", thread="t1", messages=[
            {"role": "user", "content": "I live in Kedal."},
            {"role": "assistant", "content": said}])
    assert [t.content for t in echo.calls[1][1]] == ["I live in Kedal.", said]


def test_a_thread_answers_one_request_at_a_time(tmp_path: Path) -> None:
    """The documented rule: a second request on a busy thread gets 409 (thread_busy), other
    threads are not held up, and the thread takes requests again once the first is done."""
    echo = EchoAnswerer(delay_s=0.6)

    async def scenario(url: str) -> tuple[list[int], int, dict, int]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            def post(thread: str):  # a question that refers back, so it is shown the thread
                return http.post("/v1/chat/completions", headers={"X-Knowgate-Thread": thread},
                                 json={"model": MODEL,
                                       "messages": [{"role": "user", "content": "and then?"}]})

            body = {"model": MODEL, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}
            async with http.stream("POST", "/v1/chat/completions", json=body,
                                   headers={"X-Knowgate-Thread": "busy"}) as first:
                lines = first.aiter_lines()
                assert (await anext(lines)).startswith("data: ")  # the turn holds the thread
                second, elsewhere = await asyncio.gather(post("busy"), post("free"))
                rest = [line async for line in lines]
            assert [line for line in rest if line][-1] == "data: [DONE]"
            third = await post("busy")
            return ([first.status_code, second.status_code],
                    elsewhere.status_code, second.json(), third.status_code)

    with serving(server_settings(tmp_path), triage_context(answerer=echo)) as srv:
        statuses, elsewhere, refused, after = asyncio.run(scenario(srv.url))

    assert statuses == [200, 409]
    assert refused["error"]["code"] == "thread_busy"
    assert elsewhere == 200 and after == 200
    # The refused request never reached the graph, and the third saw the first turn only.
    assert len(echo.calls) == 3
    assert [t.content for t in echo.calls[2][1]] == ["hi", "heard nothing"]


def test_bad_thread_ids_are_refused(tmp_path: Path) -> None:
    with serving(server_settings(tmp_path), triage_context()) as srv:
        response = httpx.post(srv.url + "/v1/chat/completions",
                              headers={"X-Knowgate-Thread": "a b/../c"},
                              json={"model": MODEL,
                                    "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_thread_id"


def test_a_client_leaving_mid_stream_lets_the_thread_go_once_its_run_ends(
        tmp_path: Path) -> None:
    # The run a dropped stream started is paid for already, so it finishes (bounded by the
    # request timeout), is stored and charged; then the thread is free again.
    echo = EchoAnswerer(delay_s=1.0)
    with serving(server_settings(tmp_path), triage_context(answerer=echo, timeout_s=60)) as srv:
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"X-Knowgate-Thread": "left"}
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body,
                          headers=headers, timeout=10) as response:
            assert next(response.iter_lines()).startswith("data: ")  # the role chunk
        # A question that refers back, so it is shown the thread's history.
        follow_up = {**body, "stream": False,
                     "messages": [{"role": "user", "content": "and then?"}]}
        busy = httpx.post(srv.url + "/v1/chat/completions", headers=headers, timeout=10,
                          json=follow_up)
        assert busy.status_code == 409  # the dropped stream's run is still going
        echo.delay_s = 0
        deadline = time.monotonic() + 10
        while True:
            again = httpx.post(srv.url + "/v1/chat/completions", headers=headers, timeout=10,
                               json=follow_up)
            if again.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert again.status_code == 200
    # The dropped stream's turn ended and was stored: the next turn sees it.
    assert again.json()["choices"][0]["message"]["content"] == (
        "heard user: hi | assistant: heard nothing")


def test_a_long_thread_shows_the_graph_its_latest_turns(tmp_path: Path) -> None:
    echo = EchoAnswerer()
    with serving(server_settings(tmp_path, max_messages=3),
                 triage_context(answerer=echo)) as srv:
        replies = [_ask(srv.url, f"and turn {n}?", thread="long").choices[0].message.content
                   for n in range(3)]
    seen = [[t.content for t in history] for _, history in echo.calls]
    assert seen[:2] == [[], ["and turn 0?", replies[0]]]
    assert seen[2] == [replies[0], "and turn 1?", replies[1]]  # "turn 0" dropped off


def test_a_thread_store_outage_is_a_503_and_stateless_requests_go_on(tmp_path: Path) -> None:
    with postgres_server() as postgres, serving(
            server_settings(tmp_path, checkpoint_url=postgres.url, request_timeout_s=20),
            triage_context(answerer=EchoAnswerer())) as srv:
        assert _ask(srv.url, "hello", thread="t-down").choices[0].message.content
        postgres.stop()
        started = time.monotonic()
        down = httpx.post(srv.url + "/v1/chat/completions", timeout=30,
                          headers={"X-Knowgate-Thread": "t-down"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        elapsed = time.monotonic() - started
        stateless = _ask(srv.url, "still there?")
    assert down.status_code == 503 and elapsed < 15
    assert down.json()["error"]["code"] == "thread_store_unavailable"
    assert stateless.choices[0].message.content == "heard nothing"
