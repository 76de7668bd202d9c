"""ASGI middleware of the chat server: the body size and read-time limits, the request metrics,
and the Host check of a key-less server.

Both are plain ASGI (not ``BaseHTTPMiddleware``) so that a streamed response passes through
untouched and its latency is measured to the last byte.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from knowgate.api.errors import ApiError
from knowgate.api.guard import is_loopback
from knowgate.api.metrics import Metrics


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, and bodies that do not
    arrive within ``timeout_s`` with 408, before the app parses them.

    A declared ``Content-Length`` over the limit is refused at once; a body is read up to the
    limit, within the timeout (a client that declares 100 bytes and sends 10 holds nothing
    longer), and replayed to the app.
    """

    def __init__(self, app: Any, limit: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

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
        try:
            async with asyncio.timeout(self.timeout_s):
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
        except TimeoutError:
            error = ApiError(408, f"the request body did not arrive within {self.timeout_s:g} s",
                             code="request_timeout", headers={"Connection": "close"})
            await error.response()(scope, _drained, send)
            return
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


CLIENT_CLOSED = 499
"""The status counted for a request whose client left before its response was complete (as
nginx logs it); no such status is ever sent."""


class RequestMetrics:
    """ASGI middleware: status, latency (to the last byte of a stream) and requests in flight
    of every chat completion request, refusals included. A request whose client left before
    the response was complete counts as 499, not as the 500 of a server fault."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        status = [500]
        completed = [False]
        left = [False]
        started = time.perf_counter()

        async def listen() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.disconnect" and not completed[0]:
                left[0] = True
            return message

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            try:
                await send(message)
            except OSError:  # the client is gone (uvicorn raises on a closed socket)
                left[0] = True
                raise
            if message["type"] == "http.response.body" and not message.get("more_body"):
                completed[0] = True

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, listen, watch)
        except asyncio.CancelledError:
            left[0] = not completed[0]
            raise
        finally:
            self.metrics.in_flight.dec()
            code = CLIENT_CLOSED if left[0] and not completed[0] else status[0]
            self.metrics.requests.labels(str(code)).inc()
            self.metrics.latency.observe(time.perf_counter() - started)


class LoopbackHosts:
    """ASGI middleware of a key-less (loopback-only) server: refuse requests whose ``Host`` is
    not a loopback name, so a web page that rebinds its own DNS name to 127.0.0.1 cannot drive
    the server from a browser (DNS rebinding)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(name):
            error = ApiError(421, f"the Host {host!r} is not served: a server without API keys "
                                  "answers only to localhost and loopback addresses",
                             code="host_not_allowed", param="Host")
            await error.response()(scope, _drained, send)
            return
        await self.app(scope, receive, send)
