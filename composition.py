"""The composition root: from settings to the roles, policy and prices a graph runs with.

This is the one module that knows the concrete roles (``knowgate.agents``, ``knowgate.tools``,
``knowgate.worlds``); graphs see them only through their protocols (``knowgate.roles``). Roles
are chosen by name (``knowgate.role_factories``): the stock factories are registered here in
``ROLES``, plugins' come from the ``knowgate.roles`` entry points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowgate.errors import KnowgateError, UserError
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.role_factories import RoleFactory, RoleRegistry, RoleRequest, RoleSpec
from knowgate.roles import ROLE_NAMES
from knowgate.settings import Settings

if TYPE_CHECKING:
    from knowgate.agents.model_files import Progress
    from knowgate.grading import GradingMode

# Typical tokens of one call, for the price estimates the policy compares before it calls:
# a short question (with one passage when searching) and a short answer; hosted models also
# read the JSON instructions and write the JSON.
_LOCAL_CALL_TOKENS = (30, 4)
_SHORT_ANSWER_CALL_TOKENS = (120, 6)
_HOSTED_CALL_TOKENS = (250, 30)


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


class Assembly:
    """What the roles of one build share, each made on first use: the parsed role specs, the
    world, the world's local models served to litellm, one litellm ``Router`` over every model
    the litellm roles name, the policy, and the progress callback.

    A plugin's factory may use ``router()`` to call litellm models the settings name.
    """

    def __init__(self, settings: Settings, world: WorldRef | None = None,
                 policy: Policy | None = None, on_progress: Progress | None = None) -> None:
        self.settings = settings
        self.world = world or WorldRef(settings)
        self.policy = policy
        self.on_progress = on_progress
        self.specs: dict[str, RoleSpec] = role_specs(settings)
        self._router: Any = None
        self._provider: Any = None
        self._provider_started = False

    def litellm_model(self, role: str) -> str | None:
        """The model id ``role`` calls when the ``litellm`` factory builds it, else ``None``."""
        spec = self.specs[role]
        return spec.argument if spec.factory == "litellm" else None

    def litellm_models(self) -> list[str]:
        """Every model the Router needs: the litellm roles' and their fallbacks."""
        names = [m for m in (self.litellm_model("answerer"), self.litellm_model("critic")) if m]
        for source, targets in self.settings.fallbacks.items():
            names += [source, *targets]
        return list(dict.fromkeys(names))

    def provider(self) -> Any:
        """The world's ``LocalProvider`` when a litellm role calls a ``local/`` model, else
        ``None`` (started once: it registers the ``local/`` provider with litellm)."""
        if not self._provider_started:
            self._provider_started = True
            if any(_local_name(m) for m in self.litellm_models()):
                self._provider = self.world.world.serve_models(self.settings, self.on_progress)
        return self._provider

    def router(self) -> Any:
        """The litellm ``Router`` over ``litellm_models()`` (built once)."""
        if self._router is None:
            from knowgate.agents.llm import build_router

            self.provider()  # the local/ provider must be registered before litellm routes to it
            self._router = build_router(self.settings, self.litellm_models())
        return self._router


def _local_name(model: str | None) -> str | None:
    return model.split("/", 1)[1] if model and model.startswith("local/") else None


# -- the stock factories ------------------------------------------------------------------------

def _build_litellm(request: RoleRequest) -> Any:
    from knowgate.agents.answerer import LiteLLMAnswerer, resolve_format
    from knowgate.agents.critic import LiteLLMCritic

    request.refuse_options("litellm")
    model = request.require_argument("MODEL")
    settings, assembly = request.settings, request.assembly
    # Roles time themselves out a little before the graph's bound on a node, so that their own
    # typed error (which keeps the cost of calls already billed) is the one that fires.
    budget = settings.role_timeout_s * 0.95
    if request.role == "answerer":
        return LiteLLMAnswerer(assembly.router(), model,
                               resolve_format(model, settings.answerer_format), budget,
                               **_local_options(assembly.world, model))
    return LiteLLMCritic(assembly.router(), model, resolve_format(model, settings.critic_format),
                         budget, closed_book_bound="critic_query_top_prob"
                         if _critic_prober_source(assembly) == "world" else None,
                         **_local_options(assembly.world, model, critic=True))


def _litellm_price(request: RoleRequest) -> float:
    """Expected dollars of one call: local prices from the world (or the settings' overrides),
    hosted ones from litellm's cost map (0 for a model the map does not know)."""
    from knowgate.agents.answerer import resolve_format

    model = request.require_argument("MODEL")
    settings, world = request.settings, request.assembly.world
    calls = 1
    if request.role == "critic" and resolve_format(model, settings.critic_format) == "logprobs":
        calls = 2  # a logprob-scored critic answers twice with evidence (closed and open book)
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


def _build_chroma(request: RoleRequest) -> Any:
    from knowgate.tools.search_role import PricedSearcher

    request.refuse_options("chroma")
    if request.argument:
        raise UserError("the chroma searcher takes no argument: it reads the `collection` "
                        "setting, else the world's corpus")
    settings, assembly = request.settings, request.assembly
    if settings.collection:
        backend = open_collection(settings)
    else:
        on_progress = assembly.on_progress
        index = None if on_progress is None else (
            lambda done, total: on_progress("index", done, total))
        backend = assembly.world.world.searcher(
            settings.data_dir, lexical_weight=lexical_weight(settings),
            candidates=settings.search_candidates, client=chroma_for(settings),
            on_progress=index)
    return PricedSearcher(backend, search_price(settings, assembly.world),
                          k=settings.evidence_passages, timeout_s=settings.role_timeout_s)


def _chroma_price(request: RoleRequest) -> float:
    return search_price(request.settings, request.assembly.world)


def _build_transformers(request: RoleRequest) -> Any:
    request.refuse_options("transformers")
    policy = request.assembly.policy
    reads = None if request.settings.prober_signals == "all" or policy is None \
        else policy_reads(policy)
    return _prober(request.assembly, request.argument, reads)


def _build_off(request: RoleRequest) -> None:
    request.refuse_options("off")
    if request.argument:
        raise UserError(f"'off' takes no argument (the {request.role} spec is {request.argument!r}"
                        " after 'off:')")
    return None


ROLES = RoleRegistry()
"""The role factories of this process: the stock ones below, then installed plugins'."""
ROLES.register("litellm", RoleFactory(
    {"answerer", "critic"}, _build_litellm, price=_litellm_price,
    description="a litellm model id: hosted (openai/..., anthropic/...) or the world's local/NAME"))
ROLES.register("chroma", RoleFactory(
    {"searcher"}, _build_chroma, price=_chroma_price,
    description="chromadb: the `collection` setting, else the world's corpus"))
ROLES.register("transformers", RoleFactory(
    {"prober"}, _build_transformers,
    description="hidden-state signals of a transformers model (default: the world's fast model)"))
ROLES.register("off", RoleFactory(
    set(ROLE_NAMES), _build_off, description="no such role: graphs that need it skip it"))


def role_specs(settings: Settings) -> dict[str, RoleSpec]:
    """Every role's parsed spec (a bad one fails here, before anything loads).

    Raises:
        UserError: A spec names no factory that builds its role, or a plugin that failed.
    """
    return {role: ROLES.parse(role, getattr(settings, role)) for role in ROLE_NAMES}


def estimate_prices(settings: Settings, world: WorldRef | None = None) -> Prices:
    """Expected dollars of one call per priced role, as its factory estimates them (0 for a
    factory that gives no price); the ``search_price_usd`` setting wins for searches."""
    return _prices(Assembly(settings, world))


def _prices(assembly: Assembly) -> Prices:
    """``estimate_prices`` over an assembly whose specs are already parsed."""
    settings = assembly.settings

    def price(role: str) -> float:
        return ROLES.price(assembly.specs[role], settings, assembly)

    search = settings.search_price_usd
    return Prices(draft=price("answerer"),
                  search=search if search is not None else price("searcher"),
                  refine=price("critic"))


def _local_call_tokens(world: WorldRef, name: str) -> tuple[int, int]:
    """Typical tokens of one call of ``local/<name>``: a short-answer prompt carries its
    instruction and examples."""
    spec = world.world.card.local_models.get(name)
    if spec is not None and spec.prompt == "short-answer":
        return _SHORT_ANSWER_CALL_TOKENS
    return _LOCAL_CALL_TOKENS


def search_price(settings: Settings, world: WorldRef | None = None) -> float:
    """Dollars per chromadb search: the setting, else the world's price when its corpus is
    searched, else the default world's."""
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
    """Build every role the settings name (this loads models and opens the index).

    Args:
        settings: What to build.
        on_progress: ``on_progress(stage, done, total)`` while a first run converts models or
            indexes the corpus (progress bars hook in).

    Raises:
        KnowgateError: A spec names no usable factory, or a model, the world or the index
            could not be loaded.
    """
    policy = Policy.load(policy_path(settings))
    assembly = Assembly(settings, policy=policy, on_progress=on_progress)
    built = {role: ROLES.build(spec, settings, assembly)
             for role, spec in assembly.specs.items()}
    return TriageContext(
        answerer=built["answerer"],
        critic=built["critic"],
        searcher=built["searcher"],
        matcher=_matcher(built["searcher"]),
        prober=built["prober"],
        reader=_reader(assembly),
        policy=policy,
        prices=_prices(assembly),
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


def _matcher(searcher: Any) -> Any:
    """An ``EvidenceMatcher`` on the search backend's own embedder, when it has one."""
    from knowgate.tools.evidence_match import EvidenceMatcher

    embed = getattr(getattr(searcher, "backend", None), "embed", None)
    return EvidenceMatcher(embed) if embed is not None else None


def policy_reads(policy: Policy) -> set[str]:
    """Every signal name a map of ``policy`` (main, fallback or success) weighs."""
    maps = [*policy.maps.values(), *policy.fallback_maps.values(), *policy.success_maps.values()]
    return {name for m in maps for name in m.weights}


def _prober(assembly: Assembly, model: str | None, reads: set[str] | None) -> Any:
    """``model`` (the world's fast model when ``None``) read by a ``TransformersProber`` (with
    its trained probes), joined by a reader of the critic's model when there is one
    (``critic_prober``). A world model the provider already serves is read from the same loaded
    copy (one copy in memory, one lock). The logit-lens consistency signals and the draft's
    token signals are computed only where ``reads`` (the policy) or a combiner it reads needs
    them; ``None``: always."""
    from knowgate.agents.hidden_states import ANSWER_TOKEN_SIGNALS
    from knowgate.agents.local_lm import LocalLM
    from knowgate.agents.prober import JointProber, TransformersProber

    settings, world = assembly.settings, assembly.world

    def other_model(source: str) -> LocalLM:
        return LocalLM(source, settings.device, prefill_cache_mb=settings.local_prefill_cache_mb)

    lm = other_model(model) if model else _world_model(assembly, "fast")
    probes = _probes(settings, world, own_model=model is None)
    wanted = _wanted_signals(reads, probes.combiners if probes else ())
    lens = wanted is None or bool(wanted & {"query_lens_consistency", "answer_lens_consistency"})
    # Without the draft's token signals, its pass runs only as deep as the answer probes read.
    tokens = wanted is None or bool(wanted & ANSWER_TOKEN_SIGNALS)
    main = TransformersProber.with_probes(lm, probes, lens=lens, answer_tokens=tokens) \
        if probes else TransformersProber(lm, lens=lens, answer_tokens=tokens)
    source = _critic_prober_source(assembly)
    if source is None:
        return main
    reader_lm = _world_model(assembly, "slow") if source == "world" else other_model(source)
    return JointProber(main, {"critic": TransformersProber(
        reader_lm, lens=wanted is None or "critic_query_lens_consistency" in wanted)})


def _world_model(assembly: Assembly, name: str) -> Any:
    """The world's local model ``name`` (``fast``, ``slow``): the copy the provider serves when
    it serves it (one copy in memory, one lock, one prefill cache), else a new one."""
    from knowgate.agents.local_lm import LocalLM

    provider = assembly.provider()
    if provider is not None and name in provider.names:
        return provider.model(name)
    settings, world = assembly.settings, assembly.world.world
    spec = world.local_model(name)
    return LocalLM(world.model_dir(name, settings.model_cache), settings.device,
                   prompt_style=spec.prompt, prefill_cache_mb=settings.local_prefill_cache_mb)


READING_PROBES = "probes/reading"  # a world's probes of its critic's readings, if it has some


def _reader(assembly: Assembly) -> Any:
    """An ``EvidenceReader`` of the critic's answers after a search, or ``None``.

    It runs the ``reading_probes`` setting's set, else the world's ``READING_PROBES`` when the
    critic is the world's slow model, on the model the critic's signals are read on
    (``critic_prober``: for ``local/slow``, the very copy the critic calls, whose kept prompt
    pass the reading reuses). ``None`` when there is no such model or set, the setting is
    ``off``, or the policy reads none of the set's signals (``prober_signals: all``: always)."""
    from knowgate.agents.local_lm import LocalLM
    from knowgate.agents.prober import EvidenceReader

    settings = assembly.settings
    source = _critic_prober_source(assembly)
    if source is None or (source != "world" and settings.reading_probes is None):
        return None  # the world's set reads the world's critic only
    probes = _reading_probes(settings, assembly.world)
    if probes is None:
        return None
    names = {p.name for p in probes.probes} | {c.name for c in probes.combiners}
    if settings.prober_signals != "all" and assembly.policy is not None \
            and not names & policy_reads(assembly.policy):
        return None
    lm = _world_model(assembly, "slow") if source == "world" else LocalLM(
        source, settings.device, prefill_cache_mb=settings.local_prefill_cache_mb)
    return EvidenceReader.with_probes(lm, probes)


def _wanted_signals(reads: set[str] | None, combiners: Sequence[Any]) -> set[str] | None:
    """The signals a prober must compute for ``reads``: those, and what every combiner among
    them reads (a combiner may read an earlier one). ``None`` (every signal) stays ``None``."""
    if reads is None:
        return None
    wanted = set(reads)
    for combiner in reversed(combiners):  # a combiner reads only those before it
        if combiner.name in wanted:
            wanted |= set(combiner.spec.features)
    return wanted


def _critic_prober_source(assembly: Assembly) -> str | None:
    """The model the prober reads for the critic's signals: ``"world"`` for the world's slow
    model, which is exactly what a ``local/slow`` critic calls (so its signals describe the
    critic's own closed-book answer), else the ``critic_prober`` setting, or ``None``."""
    settings = assembly.settings
    if assembly.specs["prober"].factory != "transformers" or settings.critic_prober == "off":
        return None
    if settings.critic_prober is None:
        return "world" if assembly.litellm_model("critic") == "local/slow" else None
    return settings.critic_prober


def declared_signals(settings: Settings) -> list[Any]:
    """Every signal declared in this process once the settings' trained probes are read (they
    declare theirs as they load): ``knowgate.signals.SignalSpec`` objects, sorted by name."""
    from knowgate.signals import SIGNALS

    if role_specs(settings)["prober"] == RoleSpec("prober", "transformers"):
        _probes(settings, WorldRef(settings), own_model=True)
    elif settings.probes not in (None, "off"):
        _probes(settings, WorldRef(settings), own_model=False)
    _reading_probes(settings, WorldRef(settings))
    return SIGNALS.all()


def _reading_probes(settings: Settings, world: WorldRef) -> Any:
    """The probes of the critic's readings the settings name (``reading_probes``), else the
    world's, or ``None`` (loading them declares their signals)."""
    from knowgate.agents.probes import MANIFEST, ProbeSet

    if settings.reading_probes == "off":
        return None
    if settings.reading_probes is not None:
        return ProbeSet.load(settings.reading_probes)
    shipped = world.world.path / READING_PROBES
    return ProbeSet.load(shipped) if (shipped / MANIFEST).is_file() else None


def _probes(settings: Settings, world: WorldRef, own_model: bool) -> Any:
    """The trained probes the settings name; the world's own only for the world's fast model
    (``own_model``)."""
    from knowgate.agents.probes import MANIFEST, ProbeSet

    if settings.probes == "off":
        return None
    if settings.probes is not None:
        return ProbeSet.load(settings.probes)
    shipped = world.world.path / "probes"
    if own_model and (shipped / MANIFEST).is_file():
        return ProbeSet.load(shipped)
    return None
