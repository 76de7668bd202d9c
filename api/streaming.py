"""Streaming completions: ``chat.completion.chunk`` server-sent events ending with ``[DONE]``.

The graph does not produce tokens one by one, so a stream carries the role at once (the client
knows the request was accepted), then the whole answer when the graph ends, then the finishing
chunk with the ``knowgate`` trace. Errors after the 200 has gone out travel as an
``{"error": ...}`` event before ``[DONE]``, as vLLM sends them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from knowgate.api.errors import ApiError
from knowgate.api.schemas import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    KnowgateTrace,
    completion_id,
    dump,
    now,
)
from knowgate.runtime import AskResult


def unavailable(result: AskResult) -> ApiError:
    """The 503 of a graph that could not run (``AskResult.outcome == "error"``)."""
    return ApiError(503, f"the graph could not run: {result.error}", type="server_error",
                    code="graph_unavailable")


def sse(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def chunk_events(turn: Callable[[], Awaitable[Any]], model: str,
                       include_usage: bool) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` events: the role at once, then the answer, then the finishing
    chunk with the ``knowgate`` trace, the usage chunk when asked for, and ``[DONE]``.

    Args:
        turn: Runs the completion; returns a ``Turnout`` (result and usage).
        model: The model id the client asked for.
        include_usage: ``stream_options.include_usage``.
    """
    cid, created = completion_id(), now()

    def chunk(delta: Delta, finish: str | None = None,
              trace: KnowgateTrace | None = None) -> bytes:
        body = dump(ChatCompletionChunk(id=cid, created=created, model=model,
                                        choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                                        knowgate=trace))
        body["choices"][0]["delta"] = delta.model_dump(exclude_none=True)
        if trace is None:
            del body["knowgate"]
        if not include_usage:  # with include_usage every chunk says "usage": null, as OpenAI's
            del body["usage"]
        return sse(body)

    yield chunk(Delta(role="assistant", content=""))
    try:
        done = await turn()
    except ApiError as exc:
        yield sse(exc.body.model_dump())
        yield sse("[DONE]")
        return
    except Exception as exc:  # the 200 is already out: report in the stream, as vLLM does
        error = ApiError(500, f"{type(exc).__name__}: {exc}", type="server_error",
                         code="internal_error")
        yield sse(error.body.model_dump())
        yield sse("[DONE]")
        return
    if done.result.outcome == "error":
        yield sse(unavailable(done.result).body.model_dump())
        yield sse("[DONE]")
        return
    trace = KnowgateTrace.of(done.result)
    yield chunk(Delta(content=trace.content))
    yield chunk(Delta(), finish="stop", trace=trace)
    if include_usage:
        body = ChatCompletionChunk(id=cid, created=created, model=model, choices=[],
                                   usage=done.usage)
        yield sse({k: v for k, v in dump(body).items() if k != "knowgate"})
    yield sse("[DONE]")
