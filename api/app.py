"""The FastAPI app: OpenAI-compatible chat completions over the registered graphs.

``create_app(settings)`` builds the app; its lifespan builds the roles once (in a worker
thread, since loading models is blocking) and opens the thread checkpointer. Each registered
graph the server serves is a model (``knowgate/triage`` ...). A completion is one graph run:
the last user message is the question and the earlier turns (the stored thread's, when a thread
id is given; threads belong to the key that made them) are its history; the answer, or "I don't
know.", is the assistant message and the ``knowgate`` field carries the trace. A run reserves
its worst case of the key's budget first and settles to its cost however it ends; it runs as a
task of its own, so a stream the client leaves still ends, is stored and is charged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from knowgate.api.errors import ERROR_RESPONSES, ApiError, install_error_handlers
from knowgate.api.guard import Gate, Hold
from knowgate.api.health import check_health
from knowgate.api.metrics import Metrics
from knowgate.api.middleware import BodyLimit, LoopbackHosts, RequestMetrics
from knowgate.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    KnowgateTrace,
    Model,
    ModelList,
    Usage,
    check_supported,
    completion_id,
    dump,
    now,
)
from knowgate.api.streaming import chunk_events, unavailable
from knowgate.api.threads import (
    THREAD_HEADER,
    Threads,
    check_thread_id,
    merge_history,
    open_checkpointer,
    owned_thread,
)
from knowgate.api.tracing import NodeObserver, tracer_provider_for
from knowgate.api.ui import ui_headers
from knowgate.errors import UserError
from knowgate.graphs.compose import PLUGIN_FAILURES, load_plugin_graphs, served_graphs
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.state import Step
from knowgate.roles import Turn
from knowgate.runtime import MAX_QUESTION_CHARS, AskResult, Knowgate
from knowgate.settings import Settings, load_settings

_log = logging.getLogger("knowgate.api")
MODEL_PREFIX = "knowgate/"
_SHUTDOWN_GRACE_S = 5.0
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
    # Runs detached from their request (a stream's client may leave): kept so they are not
    # garbage-collected before they settle.
    running: set[asyncio.Task[Any]]


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
    if name not in served_graphs():
        why = (f"is not available: {PLUGIN_FAILURES[name].message()}" if name in PLUGIN_FAILURES
               else "does not exist; see GET /v1/models")
        raise ApiError(404, f"the model {model!r} {why}", type="invalid_request_error",
                       code="model_not_found", param="model")
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


def worst_case_usd(context: TriageContext) -> float:
    """The most one completion can cost at the estimated prices: every draft, search and
    critic call the policy's round limits allow (a draft opens the run and follows each
    search), whichever graph runs. A request reserves this much of its key's budget."""
    policy, prices = context.policy, context.prices
    searches, refines = max(1, policy.max_searches), max(1, policy.max_refines)
    return round(prices.draft * (1 + searches) + prices.search * searches
                 + prices.refine * refines, 10)


async def _complete(svc: Service, hold: Hold, graph: str, question: str, history: list[Turn],
                    thread_id: str | None, stored_id: str | None, stream: bool) -> Turnout:
    """Run one completion through the graph, bounded by the request timeout, and settle its
    hold to what it spent, however it ends (finished, timed out, failed, cancelled)."""
    from opentelemetry import trace

    span = None
    parent = None
    if svc.tracer is not None:
        span = svc.tracer.start_span("knowgate.chat_completion", attributes={
            "knowgate.graph": graph, "knowgate.stream": stream,
            "knowgate.thread_id": thread_id or ""})
        parent = trace.set_span_in_context(span)
    observer = NodeObserver(svc.tracer, parent, on_spent=hold.progress)
    kg = svc.threaded if stored_id else svc.stateless
    started = time.perf_counter()
    result: AskResult | None = None
    try:
        try:
            async with asyncio.timeout(svc.settings.request_timeout_s):
                if stored_id:  # the stored turns, bounded like a request's messages
                    stored = await svc.threads.history(stored_id)
                    history = merge_history(stored, history)[-svc.settings.max_messages:]
                result = await kg.ask(question, graph=graph, history=history,
                                      thread_id=stored_id, hooks=observer)
        except TimeoutError:
            result = _cut_off(question, graph, observer, svc.settings.request_timeout_s,
                              time.perf_counter() - started, stored_id)
        except UserError as exc:
            raise ApiError(400, str(exc), code="invalid_request") from exc
        except Exception as exc:  # roles never raise; this is the checkpointer's database
            raise ApiError(503, f"the thread store failed: {type(exc).__name__}: {exc}",
                           type="server_error", code="thread_store_unavailable") from exc
        # The client sees its own thread id, not the key-scoped one it is stored under.
        result = result.model_copy(update={"thread_id": thread_id})
        if span is not None:
            span.set_attributes({"knowgate.outcome": result.outcome,
                                 "knowgate.cost_usd": result.cost_usd})
    finally:
        if span is not None:
            span.end()
        hold.settle(result.cost_usd if result is not None
                    else round(sum(s.cost_usd for s in observer.steps), 10))
    svc.metrics.record(result)
    usage = Usage(prompt_tokens=observer.prompt_tokens,
                  completion_tokens=observer.completion_tokens,
                  total_tokens=observer.prompt_tokens + observer.completion_tokens)
    return Turnout(result, usage)


def _detached(svc: Service, run: Any, done: Any) -> asyncio.Task[Turnout]:
    """``run`` as a task of its own, so a client that leaves (a dropped stream) does not cut
    off a run whose calls are already paid: it ends, settles its hold and calls ``done``."""
    task = asyncio.create_task(run)
    svc.running.add(task)

    def finished(task: asyncio.Task[Turnout]) -> None:
        svc.running.discard(task)
        done()
        if not task.cancelled():
            task.exception()  # retrieved: a run nobody awaits any more does not warn

    task.add_done_callback(finished)
    return task


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
        for failure in load_plugin_graphs():  # the others are served; say which one is not
            _log.warning("%s", failure.message())
        stateless = Knowgate(settings.model_copy(update={"checkpoint_db": None}),
                             context=context)
        # Loading models and opening the index block: keep them off the event loop.
        roles = await asyncio.to_thread(lambda: stateless.context)
        async with open_checkpointer(settings) as saver:
            svc = app.state.service = Service(
                settings=settings, stateless=stateless,
                threaded=Knowgate(settings, context=roles, checkpointer=saver),
                threads=Threads(saver), gate=Gate(settings), metrics=metrics,
                tracer=provider.get_tracer("knowgate.api") if provider is not None else None,
                running=set())
            try:
                yield
            finally:
                # Runs still going (a dropped stream's) get a moment to finish; the rest are
                # cancelled, which settles each to what its finished steps cost.
                if svc.running:
                    await asyncio.wait(set(svc.running), timeout=_SHUTDOWN_GRACE_S)
                for task in set(svc.running):
                    task.cancel()
                if svc.running:
                    await asyncio.wait(set(svc.running), timeout=_SHUTDOWN_GRACE_S)
                if provider is not None:
                    provider.force_flush()

    app = FastAPI(title="knowgate", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible chat completions that answer, search, refine "
                              "or abstain; the decision and its trace ride in `knowgate`.")
    app.state.settings = settings  # ServerThread reads the connection timeouts from it
    # Added last runs first: refuse foreign Host names (key-less server), count every request,
    # then refuse oversized or stalled bodies.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if not settings.api_keys:
        app.add_middleware(LoopbackHosts)
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
        check_supported(body)
        graph = graph_of(body.model)
        question, history = split_messages(body, svc.settings)
        thread_id = _thread_of(body, thread)
        # A thread belongs to the key that made it: another key's request on the same id is
        # another thread, with its own lock.
        stored_id = owned_thread(key, thread_id) if thread_id else None
        svc.gate.admit(key)
        headers = {THREAD_HEADER: thread_id} if thread_id else {}
        if stored_id:
            svc.threads.hold(stored_id)  # 409 now, before a stream's 200 goes out
        try:
            hold = svc.gate.reserve(key, worst_case_usd(svc.stateless.context))
        except ApiError:
            if stored_id:
                svc.threads.release(stored_id)
            raise

        def release() -> None:
            if stored_id:
                svc.threads.release(stored_id)

        run = _detached(svc, _complete(svc, hold, graph, question, history, thread_id,
                                       stored_id, bool(body.stream)), release)
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            events = chunk_events(lambda: asyncio.shield(run), body.model, include)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache"})
        done = await asyncio.shield(run)
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
        """Every graph the server serves, as a model id (eval-only graphs are not served)."""
        service(request).gate.authenticate(authorization)
        return ModelList(data=[Model(id=MODEL_PREFIX + name) for name in served_graphs()])

    @app.get("/healthz", responses={503: {"description": "A dependency is down"}})
    async def healthz(request: Request) -> JSONResponse:
        """Readiness of each dependency (thread store, spend store, search backend): 200 when
        all are up, 503 naming the ones that are down."""
        svc = service(request)
        checks = await check_health(svc)
        ok = all(check["ok"] for check in checks.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "graphs": served_graphs(),
                             "threads": "postgres" if svc.settings.checkpoint_url
                             else "sqlite", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response,
             responses={**ERROR_RESPONSES,
                        200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics_page(request: Request,
                           authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus metrics: requests, outcomes, decisions, dollars, latency. With API keys
        it needs one, unless ``metrics_public`` is set."""
        if not settings.metrics_public:
            service(request).gate.authenticate(authorization)
        return Response(metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    page_headers = ui_headers(UI_PAGE)

    @app.get("/ui", include_in_schema=False)
    async def ui() -> FileResponse:
        """The trace page: chat with a graph, see each answer's path, signals, costs."""
        return FileResponse(UI_PAGE, media_type="text/html", headers=page_headers)

    return app
