"""From settings to answers: build the roles once, run any registered graph, return a trace.

``Knowgate`` is the long-lived object (the server and batch runs hold one); ``knowgate.ask`` is the
one-call convenience over a ``Knowgate`` kept per settings in this process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from knowgate.agents.roles import Turn
from knowgate.errors import KnowgateError, UserError
from knowgate.graphs.compose import compile_graph, require_graph
from knowgate.graphs.direct import NodeHooks, run_graph, with_hooks
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.graphs.state import Step, TriageState
from knowgate.settings import Settings, load_settings

if TYPE_CHECKING:
    from knowgate.agents.model_files import Progress
    from knowgate.grading import GradingMode

MAX_QUESTION_CHARS = 8000
# Typical tokens of one call, for the price estimates the policy compares before it calls:
# a short question (with one passage when searching) and a short answer; hosted models also
# read the JSON instructions and write the JSON.
_LOCAL_CALL_TOKENS = (30, 4)
_SHORT_ANSWER_CALL_TOKENS = (120, 6)
_HOSTED_CALL_TOKENS = (250, 30)


class AskResult(BaseModel):
    """What one question came to.

    Attributes:
        question: The question asked.
        graph: The graph that ran.
        outcome: ``answered``, ``abstained``, or ``error`` (the graph itself could not run).
        answer: The answer, when answered.
        confidence: Calibrated P(correct) of the answer (or of the best rejected one).
        steps: What was done, with reasons, dollars and seconds.
        cost_usd: Dollars spent in total.
        latency_s: Wall-clock seconds.
        citations: Ids of the passages that back the answer.
        signals: Every signal gathered, by name.
        ledger: Dollars and calls by role.
        error: What went wrong, for ``error`` outcomes.
        thread_id: The checkpointer thread, when one was used.
    """

    question: str
    graph: str
    outcome: Literal["answered", "abstained", "error"]
    answer: str | None = None
    confidence: float = 0.0
    steps: list[Step] = Field(default_factory=list)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    citations: list[str] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    ledger: dict[str, dict[str, float]] = Field(default_factory=dict)
    error: str | None = None
    thread_id: str | None = None

    @property
    def path(self) -> list[str]:
        """The actions taken, in order."""
        return [step.action for step in self.steps]


class WorldRef:
    """The settings' world, opened only when something needs it: a world's card is read for
    its prices and policy, its models load only for roles that run them. With every role hosted,
    a collection of the user's and an explicit policy, no world is opened at all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._world: Any = None

    @property
    def world(self) -> Any:
        """The ``World`` (opened on first use)."""
        if self._world is None:
            from knowgate.worlds.world import World

            self._world = World(self.settings.world)
        return self._world

    @property
    def opened(self) -> bool:
        """Whether anything asked for the world."""
        return self._world is not None


def _local_name(model: str) -> str | None:
    return model.split("/", 1)[1] if model.startswith("local/") else None


def estimate_prices(settings: Settings, world: WorldRef | None = None) -> Prices:
    """Expected dollars of one call per role: local prices from the world (or the settings'
    overrides), hosted ones from litellm's cost map (0 for a model the map does not know)."""
    world = world or WorldRef(settings)

    def per_call(model: str, calls: int) -> float:
        name = _local_name(model)
        if name is not None:
            # The world's prices, with the settings' overrides (``World.prices`` merges them).
            p_in, p_out = world.world.prices(settings).get(name, (0.0, 0.0))
            tokens_in, tokens_out = _local_call_tokens(world, name)
            return calls * (tokens_in * p_in + tokens_out * p_out) / 1e6
        from knowgate.agents.litellm_setup import import_litellm

        tokens_in, tokens_out = _HOSTED_CALL_TOKENS
        try:
            cost_in, cost_out = import_litellm().cost_per_token(
                model=model, prompt_tokens=tokens_in, completion_tokens=tokens_out)
        except Exception:  # not in the cost map
            return 0.0
        return calls * (cost_in + cost_out)

    from knowgate.agents.answerer import resolve_format

    critic_fmt = resolve_format(settings.critic, settings.critic_format)
    return Prices(
        draft=per_call(settings.answerer, 1),
        search=search_price(settings, world),
        # A logprob-scored critic answers up to twice when there is evidence (closed and open book).
        refine=per_call(settings.critic, 2 if critic_fmt == "logprobs" else 1),
    )


def _local_call_tokens(world: WorldRef, name: str) -> tuple[int, int]:
    """Typical tokens of one call of ``local/<name>``: a short-answer prompt carries its
    instruction and examples."""
    spec = world.world.card.local_models.get(name)
    if spec is not None and spec.prompt == "short-answer":
        return _SHORT_ANSWER_CALL_TOKENS
    return _LOCAL_CALL_TOKENS


def search_price(settings: Settings, world: WorldRef | None = None) -> float:
    """Dollars per search: the setting, else the world's price when its corpus is searched,
    else the default world's."""
    if settings.search_price_usd is not None:
        return settings.search_price_usd
    if settings.collection is None or (world is not None and world.opened):
        return float((world or WorldRef(settings)).world.card.search_price_usd)
    from knowgate.worlds.schema import WorldCard

    return float(WorldCard.model_construct().search_price_usd)


def _world_card(settings: Settings) -> Any:
    """The settings' world's card, or ``None`` when it cannot be read (the defaults then apply,
    and the world's own error comes when something needs the world itself)."""
    from knowgate.worlds.world import World

    try:
        return World(settings.world).card
    except KnowgateError:
        return None


def policy_path(settings: Settings) -> Path:
    """The policy file: the setting, else the world's own fitted policy, else the default."""
    from knowgate.graphs.policy import DEFAULT_POLICY
    from knowgate.worlds.world import World

    if settings.policy is not None:
        return settings.policy
    try:
        own = World(settings.world).policy_path
    except KnowgateError:  # an unusable world: the default policy, the world's error later
        own = None
    return own if own is not None else DEFAULT_POLICY


def lexical_weight(settings: Settings) -> float:
    """The searcher's word-overlap re-rank weight: the setting, else the world's (tuned on its
    corpus), else the schema's default."""
    from knowgate.worlds.schema import WorldCard

    if settings.search_lexical_weight is not None:
        return settings.search_lexical_weight
    card = _world_card(settings) or WorldCard.model_construct()
    return float(card.search_lexical_weight)


def grading_mode(settings: Settings) -> GradingMode:
    """How answers are graded: the setting, else the world's (``exact`` when the world cannot be
    read: the dataset is then the user's own)."""
    if settings.grading != "auto":
        return settings.grading
    card = _world_card(settings)
    return card.grading if card is not None else "exact"


def build_context(settings: Settings, on_progress: Progress | None = None) -> TriageContext:
    """Build every role the settings describe (this loads models and opens the index).

    Args:
        settings: What to build.
        on_progress: ``on_progress(stage, done, total)`` while a first run converts models or
            indexes the corpus (progress bars hook in).

    Raises:
        KnowgateError: A model, the world or the index could not be loaded.
    """
    from knowgate.agents.answerer import LiteLLMAnswerer, resolve_format
    from knowgate.agents.critic import LiteLLMCritic
    from knowgate.agents.llm import build_router

    world = WorldRef(settings)
    models = {settings.answerer, settings.critic, *settings.fallbacks,
              *(m for targets in settings.fallbacks.values() for m in targets)}
    provider = None
    if any(_local_name(m) for m in models):
        provider = world.world.serve_models(settings, on_progress)
    router = build_router(settings)
    # Roles time themselves out a little before the graph's bound on a node, so that their own
    # typed error (which keeps the cost of calls already billed) is the one that fires.
    budget = settings.role_timeout_s * 0.95
    answerer = LiteLLMAnswerer(router, settings.answerer,
                               resolve_format(settings.answerer, settings.answerer_format), budget,
                               **_local_options(world, settings.answerer))
    critic = LiteLLMCritic(router, settings.critic,
                           resolve_format(settings.critic, settings.critic_format), budget,
                           closed_book_bound="critic_query_top_prob"
                           if _critic_prober_source(settings) == "world" else None,
                           **_local_options(world, settings.critic, critic=True))
    searcher = _searcher(settings, world, on_progress)
    policy = Policy.load(policy_path(settings))
    return TriageContext(
        answerer=answerer,
        critic=critic,
        searcher=searcher,
        matcher=_matcher(searcher),
        prober=_prober(settings, world, provider, policy_reads(policy)),
        policy=policy,
        prices=estimate_prices(settings, world),
        role_timeout_s=settings.role_timeout_s,
        evidence_passages=settings.evidence_passages,
    )


def _local_options(world: WorldRef, model: str, critic: bool = False) -> dict[str, Any]:
    """A local model's prompt style and reply length (and as the critic, how it weighs what it
    reads), from the world's card."""
    name = _local_name(model)
    spec = world.world.card.local_models.get(name) if name else None
    if spec is None:
        return {}
    options: dict[str, Any] = {"prompt_style": spec.prompt, "max_tokens": spec.max_tokens}
    if critic:
        options |= {"evidence_weight": spec.evidence_weight, "abstain_below": spec.abstain_below}
    return options


def open_collection(settings: Settings, create: bool = False) -> Any:
    """The ``ChromaSearcher`` over ``settings.collection`` (see ``chroma_for``).

    The embedder runs on CPU, as for the world's corpus (``World.searcher``), so stored
    passages and the queries searched against them are embedded the same way.

    ``create`` makes a missing collection (ingestion); searching one that does not exist is
    refused.

    Raises:
        UserError: No collection is named, or (without ``create``) none has that name.
        SearchBackendError: chromadb cannot open it.
    """
    from knowgate.tools.searcher import ChromaSearcher

    if settings.collection is None:
        raise UserError("no collection given: pass --collection NAME or set KNOWGATE_COLLECTION")
    return ChromaSearcher(chroma_for(settings), settings.collection,
                          lexical_weight=lexical_weight(settings),
                          candidates=settings.search_candidates, create=create)


def chroma_for(settings: Settings) -> Any:
    """The chromadb client the settings name: the server at ``chroma_url`` when set, else the
    embedded index in ``settings.data_dir``."""
    from knowgate.tools.searcher import chroma_client, chroma_http_client

    if settings.chroma_url:
        return chroma_http_client(settings.chroma_url)
    return chroma_client(settings.data_dir / "chroma")


def _searcher(settings: Settings, world: WorldRef, on_progress: Progress | None) -> Any:
    from knowgate.tools.search_role import PricedSearcher

    if settings.collection:
        backend = open_collection(settings)
    else:
        index = None if on_progress is None else (
            lambda done, total: on_progress("index", done, total))
        backend = world.world.searcher(
            settings.data_dir, lexical_weight=lexical_weight(settings),
            candidates=settings.search_candidates, client=chroma_for(settings),
            on_progress=index)
    return PricedSearcher(backend, search_price(settings, world), k=settings.evidence_passages,
                          timeout_s=settings.role_timeout_s)


def _matcher(searcher: Any) -> Any:
    """An ``EvidenceMatcher`` on the search backend's own embedder, when it has one."""
    from knowgate.tools.evidence_match import EvidenceMatcher

    embed = getattr(searcher.backend, "embed", None)
    return EvidenceMatcher(embed) if embed is not None else None


def policy_reads(policy: Policy) -> set[str]:
    """Every signal name a map of ``policy`` (main, fallback or success) weighs."""
    maps = [*policy.maps.values(), *policy.fallback_maps.values(), *policy.success_maps.values()]
    return {name for m in maps for name in m.weights}


def _prober(settings: Settings, world: WorldRef, provider: Any, reads: set[str]) -> Any:
    """The answerer's model read by a ``TransformersProber`` (with its trained probes), joined by
    a reader of the critic's model when there is one (``critic_prober``). A world model the
    provider already serves is read from the same loaded copy (one copy in memory, one lock).
    The logit-lens consistency signals are computed only where ``reads`` (the policy) or a
    combiner reads them."""
    from knowgate.agents.local_lm import LocalLM
    from knowgate.agents.prober import JointProber, TransformersProber

    def world_model(name: str) -> LocalLM:
        if provider is not None and name in provider.names:
            return provider.model(name)
        spec = world.world.local_model(name)
        return LocalLM(world.world.model_dir(name, settings.model_cache), settings.device,
                       prompt_style=spec.prompt, prefill_cache_mb=settings.local_prefill_cache_mb)

    def other_model(source: str) -> LocalLM:
        return LocalLM(source, settings.device, prefill_cache_mb=settings.local_prefill_cache_mb)

    if settings.prober == "off":
        return None
    lm = other_model(settings.prober) if settings.prober else world_model("fast")
    probes = _probes(settings, world)
    wanted = reads | {f for c in (probes.combiners if probes else ()) for f in c.spec.features}
    lens = bool(wanted & {"query_lens_consistency", "answer_lens_consistency"})
    main = TransformersProber.with_probes(lm, probes, lens=lens) if probes \
        else TransformersProber(lm, lens=lens)
    source = _critic_prober_source(settings)
    if source is None:
        return main
    reader_lm = world_model("slow") if source == "world" else other_model(source)
    return JointProber(main, {"critic": TransformersProber(
        reader_lm, lens="critic_query_lens_consistency" in wanted)})


def _critic_prober_source(settings: Settings) -> str | None:
    """The model the prober reads for the critic's signals: ``"world"`` for the world's slow
    model, which is exactly what a ``local/slow`` critic calls (so its signals describe the
    critic's own closed-book answer), else the ``critic_prober`` setting, or ``None``."""
    if settings.prober == "off" or settings.critic_prober == "off":
        return None
    if settings.critic_prober is None:
        return "world" if settings.critic == "local/slow" else None
    return settings.critic_prober


def _probes(settings: Settings, world: WorldRef) -> Any:
    """The trained probes the settings name; the world's own only for the world's fast model."""
    from knowgate.agents.probes import MANIFEST, ProbeSet

    if settings.probes == "off":
        return None
    if settings.probes is not None:
        return ProbeSet.load(settings.probes)
    shipped = world.world.path / "probes"
    if settings.prober is None and (shipped / MANIFEST).is_file():
        return ProbeSet.load(shipped)
    return None


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise UserError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise UserError(f"the question has {len(question)} characters; at most "
                        f"{MAX_QUESTION_CHARS} are accepted")
    return question.strip()


@dataclass(frozen=True)
class ComposedGraph:
    """A compiled graph together with the roles it runs with.

    Attributes:
        name: The registered name.
        graph: The compiled LangGraph graph (``graph.get_graph().draw_mermaid()``, streaming ...).
        context: The roles, policy and prices every run gets as its runtime context.
    """

    name: str
    graph: Any
    context: TriageContext

    async def run(self, question: str, history: Sequence[Turn] = (),
                  config: dict[str, Any] | None = None,
                  hooks: NodeHooks | None = None) -> TriageState:
        """Run one question to the end and return the final state (steps, outcome ...);
        ``hooks`` are told about every node (``knowgate.graphs.direct.NodeHooks``)."""
        state = TriageState(question=_check_question(question), history=list(history))
        final = await run_graph(self.graph, state, context=self.context, config=config,
                                hooks=hooks)
        return TriageState.model_validate(final)


class Knowgate:
    """Roles built once from settings, ready to run any registered graph many times.

    Args:
        settings: Settings to build roles from (``load_settings()`` when omitted).
        context: Prebuilt roles (fakes from ``knowgate.testing``, or your own); skips building.
        checkpointer: An open LangGraph checkpointer (``AsyncSqliteSaver``,
            ``AsyncPostgresSaver`` ...) to checkpoint every run to, instead of opening
            ``settings.checkpoint_db`` per run; the caller owns its connection.
    """

    def __init__(self, settings: Settings | None = None,
                 context: TriageContext | None = None, checkpointer: Any = None) -> None:
        self.settings = settings or load_settings()
        self._context = context
        self.checkpointer = checkpointer
        self._graphs: dict[str, Any] = {}
        self._checkpointed_graphs: dict[str, Any] = {}

    @property
    def context(self) -> TriageContext:
        """The roles, built on first use."""
        if self._context is None:
            self._context = build_context(self.settings)
        return self._context

    def graph(self, name: str) -> ComposedGraph:
        """The registered graph ``name`` with these roles (compiled once, no checkpointer).

        Raises:
            UserError: No graph has that name.
        """
        if name not in self._graphs:
            self._graphs[name] = compile_graph(name)
        return ComposedGraph(name, self._graphs[name], self.context)

    async def ask(self, question: str, graph: str = "triage", history: Sequence[Turn] = (),
                  thread_id: str | None = None,
                  config: dict[str, Any] | None = None,
                  hooks: NodeHooks | None = None) -> AskResult:
        """Run ``question`` through ``graph`` and return the outcome with its trace.

        With a ``checkpointer`` or ``settings.checkpoint_db``, the run is checkpointed under
        ``thread_id`` (a new id when omitted), so it can be inspected or resumed later.
        ``config`` adds LangGraph run-config entries (``callbacks`` for tracing, ``tags`` ...;
        callbacks run the graph on Pregel). ``hooks`` are told about every node whichever
        engine runs it (``knowgate.graphs.direct.NodeHooks``).

        Raises:
            UserError: The question is empty or too long, or the graph is unknown.
        """
        question = _check_question(question)
        require_graph(graph)  # an unknown name is a UserError before any model loads
        started = time.perf_counter()
        try:
            composed = self.graph(graph)
            if self.checkpointer is None and self.settings.checkpoint_db is None:
                final = await composed.run(question, history, config, hooks)
            else:
                thread_id = thread_id or uuid.uuid4().hex
                final = await self._checkpointed(composed, question, history, thread_id,
                                                 with_hooks(config, hooks))
        except UserError:
            raise
        except KnowgateError as exc:  # roles failing is handled in the graph; this is setup
            return AskResult(question=question, graph=graph, outcome="error",
                             error=str(exc), latency_s=round(time.perf_counter() - started, 6))
        return _result(final, graph, time.perf_counter() - started, thread_id)

    async def _checkpointed(self, composed: ComposedGraph, question: str,
                            history: Sequence[Turn], thread_id: str,
                            extra: dict[str, Any]) -> TriageState:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        config = {**extra, "configurable": {**extra.get("configurable", {}),
                                            "thread_id": thread_id}}
        state = TriageState(question=question, history=list(history))
        # Every field is passed explicitly so that a new question on an old thread starts
        # from a clean slate rather than the last question's draft and steps.
        fresh = {name: getattr(state, name) for name in TriageState.model_fields}
        if self.checkpointer is not None:
            if composed.name not in self._checkpointed_graphs:  # compiled once per graph
                self._checkpointed_graphs[composed.name] = compile_graph(
                    composed.name, checkpointer=self.checkpointer)
            compiled = self._checkpointed_graphs[composed.name]
            final = await compiled.ainvoke(fresh, config=config, context=composed.context)
            return TriageState.model_validate(final)
        path = self.settings.checkpoint_db
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(str(path)) as conn:
            saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
            compiled = compile_graph(composed.name, checkpointer=saver)
            final = await compiled.ainvoke(fresh, config=config, context=composed.context)
        return TriageState.model_validate(final)


def checkpoint_serde() -> Any:
    """LangGraph's serializer, allowed to restore knowgate's own state types (and only them)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from knowgate.agents import roles
    from knowgate.graphs import state
    from knowgate.tools import passage

    allowed = [(module.__name__, name) for module, names in (
        (roles, ("Draft", "Signals", "Evidence", "Verdict", "Turn", "TokenLogprob", "Usage")),
        (state, ("Step", "Candidate", "Decision", "Outcome")),
        (passage, ("Passage",)),
    ) for name in names]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def _result(state: TriageState, graph: str, seconds: float,
            thread_id: str | None) -> AskResult:
    steps = state.steps
    outcome = state.outcome
    if outcome is None:  # a composed graph that ended without answer/abstain
        return AskResult(question=state.question, graph=graph, outcome="error", steps=steps,
                         error="the graph ended without an outcome",
                         cost_usd=round(sum(s.cost_usd for s in steps), 10),
                         latency_s=round(seconds, 6), thread_id=thread_id)
    return AskResult(
        question=state.question,
        graph=graph,
        outcome=outcome.kind,
        answer=outcome.answer,
        confidence=outcome.confidence,
        steps=steps,
        cost_usd=round(sum(s.cost_usd for s in steps), 10),
        latency_s=round(seconds, 6),
        citations=outcome.citations,
        signals=state.signals.values,
        ledger=state.ledger(),
        thread_id=thread_id,
    )
