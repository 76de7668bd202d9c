"""The FastAPI app: OpenAI-compatible chat completions over the registered graphs.

``create_app(settings)`` builds the app; its lifespan builds the roles once (in a worker
thread, since loading models is blocking) and opens the thread checkpointer. Each registered
graph is a model (``knowgate/triage`` ...). A completion is one graph run: the last user message
is the question and the earlier turns (the stored thread's, when a thread id is given) are its
history; the answer, or "I don't know.", is the assistant message and the ``knowgate`` field
carries the trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from knowgate.agents.roles import Turn
from knowgate.api.errors import ERROR_RESPONSES, ApiError, install_error_handlers
from knowgate.api.guard import Gate
from knowgate.api.metrics import Metrics
from knowgate.api.middleware import BodyLimit, RequestMetrics
from knowgate.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    KnowgateTrace,
    Model,
    ModelList,
    Usage,
    completion_id,
    dump,
    now,
)
from knowgate.api.streaming import HeldStream, chunk_events, unavailable
from knowgate.api.threads import (
    THREAD_HEADER,
    Threads,
    check_thread_id,
    merge_history,
    open_checkpointer,
)
from knowgate.api.tracing import NodeObserver, tracer_provider_for
from knowgate.errors import UserError
from knowgate.graphs.compose import GRAPHS
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.runtime import MAX_QUESTION_CHARS, AskResult, Knowgate
from knowgate.graphs.state import Step
from knowgate.settings import Settings, load_settings

MODEL_PREFIX = "knowgate/"
UI_PAGE = Path(__file__).parent / "static" / "ui.html"


@dataclass
class Service:
    """What the routes share: roles (two views: with and without threads), limits, metrics."""

    settings: Settings
    stateless: Knowgate
    threaded: Knowgate
    threads: Threads
    gate: Gate
    metrics: Metrics
    tracer: Any


@dataclass(frozen=True)
class Turnout:
    """One completion's result with the tokens its model calls used."""

    result: AskResult
    usage: Usage


def graph_of(model: str) -> str:
    """The graph a model id names (``knowgate/triage`` or ``triage``).

    Raises:
        ApiError: 404 for a model no graph is registered as.
    """
    name = model.removeprefix(MODEL_PREFIX)
    if name not in GRAPHS:
        raise ApiError(404, f"the model {model!r} does not exist; see GET /v1/models",
                       type="invalid_request_error", code="model_not_found", param="model")
    return name


def split_messages(body: ChatCompletionRequest, settings: Settings) -> tuple[str, list[Turn]]:
    """The question (last user message) and the turns before it.

    Raises:
        ApiError: 400 for too many or too long messages, or no user question at the end.
    """
    if len(body.messages) > settings.max_messages:
        raise ApiError(400, f"{len(body.messages)} messages; at most {settings.max_messages} "
                            "are accepted", code="too_many_messages", param="messages")
    limit = min(settings.max_message_chars, MAX_QUESTION_CHARS)
    for n, message in enumerate(body.messages):
        if len(message.text) > settings.max_message_chars:
            raise ApiError(400, f"message {n} has {len(message.text)} characters; at most "
                                f"{settings.max_message_chars} are accepted",
                           code="message_too_long", param=f"messages.{n}.content")
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(400, "the last user/assistant message must be the user's question",
                       code="no_question", param="messages")
    question = turns[-1].text.strip()
    if not question:
        raise ApiError(400, "the question (last user message) is empty", code="no_question",
                       param="messages")
    if len(question) > limit:
        raise ApiError(400, f"the question has {len(question)} characters; at most {limit} are "
                            "accepted", code="message_too_long", param="messages")
    history = [Turn(role=m.role, content=m.text) for m in turns[:-1]]  # type: ignore[arg-type]
    return question, history


def _thread_of(body: ChatCompletionRequest, header: str | None) -> str | None:
    value = header if header is not None else (body.metadata or {}).get("thread_id")
    return None if value is None else check_thread_id(value)


def _cut_off(question: str, graph: str, observer: NodeObserver, limit_s: float,
             seconds: float, thread_id: str | None) -> AskResult:
    """The abstention a run becomes when the request timeout cuts it off (with the steps it
    had finished, so their cost is still billed and shown)."""
    steps = [*observer.steps, Step(action="abstain", error=True,
                                   reason=f"no outcome within the request timeout of "
                                          f"{limit_s:g} s")]
    return AskResult(question=question, graph=graph, outcome="abstained", steps=steps,
                     cost_usd=round(sum(s.cost_usd for s in steps), 10),
                     latency_s=round(seconds, 6), thread_id=thread_id)


async def _complete(svc: Service, key: str, graph: str, question: str, history: list[Turn],
                    thread_id: str | None, stream: bool) -> Turnout:
    """Run one completion through the graph, bounded by the request timeout, and account it."""
    from opentelemetry import trace

    span = None
    parent = None
    if svc.tracer is not None:
        span = svc.tracer.start_span("knowgate.chat_completion", attributes={
            "knowgate.graph": graph, "knowgate.stream": stream,
            "knowgate.thread_id": thread_id or ""})
        parent = trace.set_span_in_context(span)
    observer = NodeObserver(svc.tracer, parent)
    kg = svc.threaded if thread_id else svc.stateless
    started = time.perf_counter()
    try:
        try:
            async with asyncio.timeout(svc.settings.request_timeout_s):
                if thread_id:  # the stored turns, bounded like a request's messages
                    stored = await svc.threads.history(thread_id)
                    history = merge_history(stored, history)[-svc.settings.max_messages:]
                result = await kg.ask(question, graph=graph, history=history,
                                      thread_id=thread_id, config={"callbacks": [observer]})
        except TimeoutError:
            result = _cut_off(question, graph, observer, svc.settings.request_timeout_s,
                              time.perf_counter() - started, thread_id)
        except UserError as exc:
            raise ApiError(400, str(exc), code="invalid_request") from exc
        except Exception as exc:  # roles never raise; this is the checkpointer's database
            raise ApiError(503, f"the thread store failed: {type(exc).__name__}: {exc}",
                           type="server_error", code="thread_store_unavailable") from exc
        if span is not None:
            span.set_attributes({"knowgate.outcome": result.outcome,
                                 "knowgate.cost_usd": result.cost_usd})
    finally:
        if span is not None:
            span.end()
    svc.gate.charge(key, result.cost_usd)
    svc.metrics.record(result)
    usage = Usage(prompt_tokens=observer.prompt_tokens,
                  completion_tokens=observer.completion_tokens,
                  total_tokens=observer.prompt_tokens + observer.completion_tokens)
    return Turnout(result, usage)


def create_app(settings: Settings | None = None, *, context: TriageContext | None = None,
               tracer_provider: Any = None) -> FastAPI:
    """The chat server's app.

    Args:
        settings: Server and role settings (``load_settings()`` when omitted).
        context: Prebuilt roles (fakes from ``knowgate.testing`` ...); built from settings
            at startup when omitted.
        tracer_provider: An OpenTelemetry tracer provider for per-node spans; by default the
            one ``settings.otel_exporter`` names (none when ``off``).
    """
    settings = settings or load_settings()
    provider = tracer_provider if tracer_provider is not None else tracer_provider_for(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stateless = Knowgate(settings.model_copy(update={"checkpoint_db": None}),
                             context=context)
        # Loading models and opening the index block: keep them off the event loop.
        roles = await asyncio.to_thread(lambda: stateless.context)
        async with open_checkpointer(settings) as saver:
            app.state.service = Service(
                settings=settings, stateless=stateless,
                threaded=Knowgate(settings, context=roles, checkpointer=saver),
                threads=Threads(saver), gate=Gate(settings), metrics=metrics,
                tracer=provider.get_tracer("knowgate.api") if provider is not None else None)
            try:
                yield
            finally:
                if provider is not None:
                    provider.force_flush()

    app = FastAPI(title="knowgate", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible chat completions that answer, search, refine "
                              "or abstain; the decision and its trace ride in `knowgate`.")
    # Added last runs first: count every request, then refuse oversized bodies.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    install_error_handlers(app)

    def service(request: Request) -> Service:
        return request.app.state.service

    @app.post("/v1/chat/completions", response_model=ChatCompletion,
              responses={**ERROR_RESPONSES, 200: {
                  "description": "A chat.completion, or with `stream` a text/event-stream of "
                                 "chat.completion.chunk events ending with `data: [DONE]`",
                  "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def chat_completions(
        body: ChatCompletionRequest, request: Request,
        authorization: Annotated[str | None, Header()] = None,
        thread: Annotated[str | None, Header(alias=THREAD_HEADER)] = None,
    ) -> Response:
        """Answer the last user message, or abstain, with the trace in ``knowgate``."""
        svc = service(request)
        key = svc.gate.authenticate(authorization)
        graph = graph_of(body.model)
        question, history = split_messages(body, svc.settings)
        thread_id = _thread_of(body, thread)
        svc.gate.admit(key)
        headers = {THREAD_HEADER: thread_id} if thread_id else {}
        if thread_id:
            svc.threads.hold(thread_id)  # 409 now, before a stream's 200 goes out

        def release() -> None:
            if thread_id:
                svc.threads.release(thread_id)

        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            events = chunk_events(lambda: _complete(svc, key, graph, question, history,
                                                    thread_id, True), body.model, include)
            return HeldStream(events, release, media_type="text/event-stream",
                              headers={**headers, "Cache-Control": "no-cache"})
        try:
            done = await _complete(svc, key, graph, question, history, thread_id, False)
        finally:
            release()
        if done.result.outcome == "error":
            raise unavailable(done.result)
        trace = KnowgateTrace.of(done.result)
        reply = ChatCompletion(id=completion_id(), created=now(), model=body.model,
                               choices=[Choice(message=AssistantMessage(content=trace.content))],
                               usage=done.usage, knowgate=trace)
        return JSONResponse(dump(reply), headers=headers)

    @app.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
    async def models(request: Request,
                     authorization: Annotated[str | None, Header()] = None) -> ModelList:
        """Every registered graph, as a model id."""
        service(request).gate.authenticate(authorization)
        return ModelList(data=[Model(id=MODEL_PREFIX + name) for name in sorted(GRAPHS)])

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: the roles are built and the checkpointer is open."""
        svc = service(request)
        return {"status": "ok", "graphs": sorted(GRAPHS),
                "threads": "postgres" if svc.settings.checkpoint_url else "sqlite"}

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics_page() -> Response:
        """Prometheus metrics: requests, outcomes, decisions, dollars, latency."""
        return Response(metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/ui", include_in_schema=False)
    async def ui() -> FileResponse:
        """The trace page: chat with a graph, see each answer's path, signals, costs."""
        return FileResponse(UI_PAGE, media_type="text/html")

    return app
