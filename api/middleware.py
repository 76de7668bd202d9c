"""ASGI middleware of the chat server: the body size limit and the request metrics.

Both are plain ASGI (not ``BaseHTTPMiddleware``) so that a streamed response passes through
untouched and its latency is measured to the last byte.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from knowgate.api.errors import ApiError
from knowgate.api.metrics import Metrics


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413 before the app parses them.

    A declared ``Content-Length`` over the limit is refused at once; a chunked body is read up
    to the limit and replayed to the app.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, send)
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], send: Callable) -> None:
        error = ApiError(413, f"the request body is over {self.limit} bytes",
                         code="request_too_large")
        await error.response()(scope, _drained, send)


async def _drained() -> dict[str, Any]:
    return {"type": "http.disconnect"}


class RequestMetrics:
    """ASGI middleware: status, latency (to the last byte of a stream) and requests in flight
    of every chat completion request, refusals included."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        status = [500]
        started = time.perf_counter()

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(str(status[0])).inc()
            self.metrics.latency.observe(time.perf_counter() - started)
