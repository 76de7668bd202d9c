"""A tiny scripted chat-completions server on 127.0.0.1, so tests can make real litellm calls.

It speaks enough of two wire protocols for litellm's providers:

* OpenAI Chat Completions: ``POST /v1/chat/completions`` (``openai/...``, ``hosted_vllm/...``);
* Anthropic Messages: ``POST /v1/messages`` (``anthropic/...``).

Non-streaming only. What it replies is scripted per test: ``script(...)`` queues replies that are
used first come, first served; when the queue is empty the ``default`` function of the request
decides. A reply is a content string, an ``Error`` (an HTTP status with a provider error body) or
a ``Delay`` (sleep, then reply). Every request is recorded in ``requests`` (path and JSON body),
and the usage of every reply in ``billed`` (a crude, deterministic count: words), so a test can
price exactly what a provider would have billed.

Usage::

    with LoopbackLLM(default=lambda seen: '{"answer": "Kudal"}') as server:
        server.script(Error(500), Delay(0.1, '{"answer": "Oslo"}'))
        ... litellm with api_base=server.api_base (OpenAI) or server.url (Anthropic) ...
        assert len(server.requests) == 2
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_DELAY_S = 30.0  # no scripted delay sleeps longer, and every delay ends at shutdown
MAX_BODY_BYTES = 10_000_000
LISTEN_BACKLOG = 1024  # load tests open hundreds of connections at once (the stdlib default is 5)


@dataclass(frozen=True)
class Error:
    """Reply with HTTP ``status`` and a provider-shaped error body."""

    status: int = 500
    message: str = "scripted failure"


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` (at most ``MAX_DELAY_S``), then send ``then``."""

    seconds: float
    then: Reply = '{"answer": "late", "confidence": 0.5, "label": "unsure"}'


Reply = str | Error | Delay


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    path: str
    body: dict[str, Any]

    @property
    def model(self) -> str:
        """The ``model`` field of the request."""
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages as ``{"role", "content"}`` with plain-text content (a system prompt
        sent Anthropic-style, outside ``messages``, comes first as a ``system`` message)."""
        out = []
        system = self.body.get("system")
        if system:
            out.append({"role": "system", "content": _text(system)})
        for message in self.body.get("messages", []):
            out.append({"role": str(message.get("role", "")),
                        "content": _text(message.get("content", ""))})
        return out

    @property
    def last_user(self) -> str:
        """Text of the last user message."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""


@dataclass(frozen=True)
class Billed:
    """The usage one successful reply reported (what a provider would bill); recorded just
    before the reply is sent, so a client that read the reply always finds it here."""

    path: str
    model: str
    prompt_tokens: int
    completion_tokens: int


def _text(content: Any) -> str:
    """Plain text of a message content: a string or a list of ``{"type": "text"}`` blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def _tokens(text: str) -> int:
    """A crude, deterministic token count: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


@dataclass
class _Script:
    queue: deque[Reply] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> Reply | None:
        with self.lock:
            return self.queue.popleft() if self.queue else None


class LoopbackLLM:
    """The server. Start it with ``start()`` or ``with``; ``stop()`` shuts it down.

    Args:
        default: Reply to a request when the script queue is empty (gets the ``Seen`` request);
            by default a fixed, valid answerer JSON object.
    """

    def __init__(self, default: Callable[[Seen], Reply] | None = None) -> None:
        self.default: Callable[[Seen], Reply] = default or (
            lambda seen: '{"answer": "unknown", "confidence": 0.5, "label": "unsure"}'
        )
        self.requests: list[Seen] = []
        self.billed: list[Billed] = []
        self._script = _Script()
        self._record_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order (before ``default`` takes over)."""
        with self._script.lock:
            self._script.queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._script.lock:
            return len(self._script.queue)

    def seen(self, model: str | None = None) -> list[Seen]:
        """Requests received so far (for ``model`` only, when given), oldest first."""
        with self._record_lock:
            return [r for r in self.requests if model is None or r.model == model]

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        """The ``api_base`` for OpenAI-compatible litellm providers (``<url>/v1``)."""
        return f"{self.url}/v1"

    def start(self) -> LoopbackLLM:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        assert self._httpd is None, "already started"
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"server_state": self})
        self._httpd = type("_Server", (ThreadingHTTPServer,),
                           {"request_queue_size": LISTEN_BACKLOG})(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="loopback-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake any sleeping delay, stop serving and close the socket."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving (called from handler threads) -----------------------------------------------

    def _record(self, seen: Seen) -> None:
        with self._record_lock:
            self.requests.append(seen)

    def _bill(self, billed: Billed) -> None:
        with self._record_lock:
            self.billed.append(billed)

    def _reply_for(self, seen: Seen) -> Reply:
        scripted = self._script.next()
        if scripted is not None:
            return scripted
        try:
            return self.default(seen)
        except Exception as exc:  # a broken test script shows up as a 500 that says why
            return Error(500, f"the default reply raised {type(exc).__name__}: {exc}")

    def _resolve(self, reply: Reply) -> str | Error:
        """Follow delays (bounded: at most a few nested, each at most ``MAX_DELAY_S``)."""
        for _ in range(8):
            if not isinstance(reply, Delay):
                return reply
            if self._stopping.wait(min(max(reply.seconds, 0.0), MAX_DELAY_S)):
                return Error(503, "server shutting down")
            reply = reply.then
        return Error(500, "too many nested delays")


def openai_body(content: str, model: str, prompt_tokens: int, completion_tokens: int
                ) -> dict[str, Any]:
    """A non-streaming Chat Completions response."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def anthropic_body(content: str, model: str, prompt_tokens: int, completion_tokens: int
                   ) -> dict[str, Any]:
    """A non-streaming Anthropic Messages response."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


def _error_body(path: str, error: Error) -> dict[str, Any]:
    if path.endswith("/messages"):
        return {"type": "error", "error": {"type": "api_error", "message": error.message}}
    return {"error": {"message": error.message, "type": "server_error", "param": None,
                      "code": str(error.status)}}


class _Handler(BaseHTTPRequestHandler):
    server_state: LoopbackLLM  # set on the subclass made in ``start``
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass  # tests stay quiet

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": {"message": "body too large", "type": "invalid_request"}})
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self._send(400, {"error": {"message": "the body is not a JSON object",
                                       "type": "invalid_request"}})
            return
        if path not in ("/v1/chat/completions", "/chat/completions", "/v1/messages"):
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        state = self.server_state
        seen = Seen(path=path, body=body)
        state._record(seen)
        reply = state._resolve(state._reply_for(seen))
        if not isinstance(reply, str | Error):
            reply = Error(500, f"a scripted reply must be str, Error or Delay, not {reply!r}")
        if isinstance(reply, Error):
            self._send(reply.status, _error_body(path, reply))
            return
        prompt = _tokens(" ".join(m["content"] for m in seen.messages))
        completion = _tokens(reply)
        make = anthropic_body if path == "/v1/messages" else openai_body
        # Recorded before sending, so a client that has the reply always finds it recorded.
        state._bill(Billed(path, seen.model, prompt, completion))
        self._send(200, make(reply, seen.model, prompt, completion))

    def _send(self, status: int, payload: dict[str, Any]) -> bool:
        """Send one JSON response; False when the client had already hung up."""
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True
            return False
        return True
