"""The batch runner: every item of a dataset through one graph, concurrently, resumable.

``run_eval`` writes a manifest, then appends one record per question as it finishes. Running it
again on the same folder resumes: finished questions are skipped, questions that ended in an
``error`` are retried, and questions that were in flight when a run died are redone; their paid
calls come back from the response cache (``evals/cache.py``), so nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from knowgate.composition import policy_path as resolve_policy_path
from knowgate.errors import UserError
from knowgate.evals.cache import ResponseCache, with_cache
from knowgate.evals.datasets import Dataset, EvalItem
from knowgate.evals.explore import candidates_of, observe
from knowgate.evals.explore import explore as explore_walk
from knowgate.evals.grading import ExactMatch, Grader
from knowgate.evals.records import (
    MANIFEST,
    RECORDS,
    EvalRecord,
    Manifest,
    RecordLog,
    RunLock,
    read_manifest,
    read_records,
)
from knowgate.evals.tape import TAPED, Recorder, Tape
from knowgate.graphs.direct import run_values
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy
from knowgate.graphs.state import TriageState
from knowgate.settings import Settings

OnRecord = Callable[[EvalRecord], None]
# ``--graph explore``: the triage graph explored (what ``calibrate`` has always fitted on).
EXPLORE_ALIAS = "explore"


def default_cache_path(settings: Settings) -> Path:
    """The response cache shared by every run with these settings' data dir."""
    return settings.data_dir / "eval-cache.sqlite"


@dataclass
class RunStats:
    """What one call of ``run_eval`` did."""

    total: int
    skipped: int
    done: int
    seconds: float
    cache_hits: int = 0
    cache_misses: int = 0


async def evaluate_item(graph: Any, context: TriageContext, name: str, item: EvalItem,
                        grader: Grader, explore: bool = False) -> EvalRecord:
    """Run one item through a compiled graph and grade it; failures, a role's included (the
    graph carries on without it, but the record then measures an outage), become ``error``
    records. ``explore``: then walk every choice the graph lets the policy make
    (``knowgate.evals.explore``); the record keeps the tape of role calls and the candidates
    of every branch."""
    started = time.perf_counter()
    base = {"id": item.id, "question": item.question, "answers": item.answers, "kind": item.kind,
            "meta": item.meta, "graph": name}
    snapshots: list[TriageState] = []
    recorder = None
    if explore:
        recorder = Recorder(Tape(roles=[r for r in TAPED if getattr(context, r) is not None],
                                 evidence_passages=context.evidence_passages))
        context = recorder.wrap(context)
    config = {"configurable": {"kind": item.kind}}

    def grade(answer: str) -> bool:
        return grader.match(answer, item.answers)

    try:
        state = TriageState(question=item.question.strip())
        async for snapshot in run_values(graph, state, config=config, context=context):
            snapshots.append(TriageState.model_validate(snapshot))
    except Exception as exc:  # the edge of a batch: one question's failure is its record
        steps = snapshots[-1].steps if snapshots else []
        return EvalRecord(**base, outcome="error", error=f"{type(exc).__name__}: {exc}",
                          steps=steps, cost_usd=round(sum(s.cost_usd for s in steps), 10),
                          latency_s=round(time.perf_counter() - started, 6))
    final = snapshots[-1]
    query, candidates = observe(snapshots, context.policy, grade)
    if recorder is not None and final.outcome is not None and not final.failed:
        try:
            walk = await explore_walk(graph, context, item.question.strip(), config)
        except Exception as exc:  # the walk's failure is this question's, as a run's is
            return EvalRecord(**base, outcome="error", error=f"explore: {type(exc).__name__}: "
                              f"{exc}", latency_s=round(time.perf_counter() - started, 6))
        if walk.failed:
            return EvalRecord(**base, outcome="error", failed_roles=walk.failed,
                              error=f"role(s) failed while exploring: {', '.join(walk.failed)}",
                              latency_s=round(time.perf_counter() - started, 6))
        recorder.tape.policy_reads = walk.policy_reads
        candidates = candidates_of([snapshots, *walk.runs],
                                   lambda run: observe(run, context.policy, grade)[1])
    common = {
        **base, "path": [s.action for s in final.steps], "steps": final.steps,
        "signals": final.signals.values, "query_features": query, "candidates": candidates,
        "cost_usd": round(sum(s.cost_usd for s in final.steps), 10),
        "searches": final.count("search"), "refines": final.count("refine"),
        "tape": None if recorder is None else recorder.tape,
    }
    if final.outcome is None:
        return EvalRecord(**common, outcome="error", error="the graph ended without an outcome",
                          latency_s=round(time.perf_counter() - started, 6))
    if final.failed:
        # An outage measures the provider, not the policy: the question is an error (retried by
        # a resume), whatever the graph made of it without the failed roles.
        reasons = "; ".join(f"{s.role}: {s.reason}" for s in final.steps if s.error)
        return EvalRecord(**common, outcome="error", failed_roles=list(final.failed),
                          error=f"role(s) failed: {reasons}",
                          latency_s=round(time.perf_counter() - started, 6))
    correct = error = None
    if final.outcome.kind == "answered" and not item.answerable:
        correct = False  # no right answer exists: any answer is wrong, no grader asked
    elif final.outcome.kind == "answered":
        grade = await grader(item.question, final.outcome.answer or "", item.answers)
        correct, error = grade.correct, grade.error
    return EvalRecord(**common, outcome=final.outcome.kind, answer=final.outcome.answer,
                      confidence=final.outcome.confidence, correct=correct,
                      grading_error=error, latency_s=round(time.perf_counter() - started, 6))


async def evaluate(items: Sequence[EvalItem], graph_name: str, context: TriageContext,
                   concurrency: int, on_record: OnRecord, grader: Grader | None = None,
                   explore: bool = False) -> None:
    """Every item through ``graph_name``, at most ``concurrency`` at a time; ``on_record`` gets
    each record as soon as it is finished (``explore``: see ``evaluate_item``)."""
    from knowgate.evals.graphs import compile_eval_graph

    if concurrency < 1:
        raise UserError("concurrency must be at least 1")
    graph = compile_eval_graph(graph_name)
    grader = grader or ExactMatch()
    gate = asyncio.Semaphore(concurrency)

    async def one(item: EvalItem) -> None:
        async with gate:
            record = await evaluate_item(graph, context, graph_name, item, grader, explore)
        on_record(record)

    await asyncio.gather(*(one(item) for item in items))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("knowgate", "litellm", "langgraph", "chromadb", "transformers", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


_SECRET_WORDS = ("key", "token", "secret", "password")
# Settings that change what a question's record is: a resumed run must keep them.
_RUN_SETTINGS = ("world", "collection", "answerer", "critic", "prober", "searcher",
                 "role_options", "answerer_format", "critic_format", "evidence_passages",
                 "search_price_usd", "local_prices")


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON, with credentials in ``litellm_params`` and ``role_options``
    masked (manifests are shared with reports; keys must not travel with them)."""
    data = settings.model_dump(mode="json")
    for table in ("litellm_params", "role_options"):
        data[table] = {
            name: {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS)
                       and not str(v).startswith("os.environ/") else v)
                   for k, v in params.items()}
            for name, params in data.get(table, {}).items()}
    return data


def prepare(out: Path, dataset: Dataset, graph: str, settings: Settings,
            backend: str = "local", explore: bool = False) -> list[EvalItem]:
    """Create or check the run folder; return the items still to do.

    A new folder gets a manifest. An existing one must hold a run of the same graph, dataset and
    policy; its ``error`` records are dropped (to be retried) and a torn last line is cut off.

    Raises:
        UserError: ``out`` holds a different run, or is a file.
    """
    from knowgate.evals.graphs import eval_graph_builder

    eval_graph_builder(graph)
    policy_path = resolve_policy_path(settings)
    Policy.load(policy_path)  # a bad policy file fails before any work
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file")
    manifest = Manifest(graph=graph, dataset=dataset.name, dataset_sha256=dataset.digest,
                        items=len(dataset.items), policy=str(policy_path),
                        policy_sha256=_sha256(Path(policy_path)),
                        settings=redacted_settings(settings), versions=_versions(),
                        backend=backend, explore=explore,
                        started=datetime.now(UTC).isoformat(timespec="seconds"))
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        for field in ("graph", "dataset_sha256", "policy_sha256"):
            if getattr(old, field) != getattr(manifest, field):
                raise UserError(f"{out} holds a run with another {field.split('_')[0]} "
                                f"({getattr(old, field)[:16]}); use a new --out")
        if old.explore != explore:
            raise UserError(f"{out} holds a run {'with' if old.explore else 'without'} "
                            "--explore; use a new --out")
        for name in _RUN_SETTINGS:
            if name not in old.settings:  # a manifest older than the setting: its default ran
                continue
            if old.settings.get(name) != manifest.settings.get(name):
                raise UserError(f"{out} holds a run with {name} = {old.settings.get(name)!r}, "
                                f"not {manifest.settings.get(name)!r}; use a new --out")
        records = read_records(out, repair=True) if (out / RECORDS).exists() else []
        kept = [r for r in records if r.outcome != "error"]
        if len(kept) != len(records):  # rewrite without the errors, atomically
            tmp = out / (RECORDS + ".tmp")
            tmp.write_text("".join(r.model_dump_json() + "\n" for r in kept), encoding="utf-8")
            tmp.replace(out / RECORDS)
        done = {r.id for r in kept}
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        (out / RECORDS).touch()
        done = set()
    return [item for item in dataset.items if item.id not in done]


def make_grader(settings: Settings, cache: ResponseCache, judge: str | None) -> Grader:
    """Alias matching (``grading_mode``), or the LLM judge ``judge`` (a litellm model id) with
    cached calls."""
    from knowgate.composition import grading_mode

    if judge is None:
        return ExactMatch(grading_mode(settings))
    from knowgate.agents.llm import build_router
    from knowgate.evals.cache import CachedRouter
    from knowgate.evals.grading import LLMJudge

    # A router with the judge as its only deployment (the roles' models need not be servable).
    router = build_router(settings.model_copy(update={"fallbacks": {}}), [judge])
    return LLMJudge(CachedRouter(router, cache), judge, timeout_s=settings.role_timeout_s,
                    mode=grading_mode(settings))


def build_run_context(settings: Settings, cache: ResponseCache,
                      context: TriageContext | None = None) -> TriageContext:
    """The roles for a run (built from settings unless given), every paid call cached."""
    from knowgate.runtime import Knowgate

    return with_cache(Knowgate(settings, context=context).context, cache)


def _record_declarations(out: Path) -> None:
    """Write every signal declared by now into the manifest (atomically)."""
    from knowgate.signals import SIGNALS

    manifest = read_manifest(out).model_copy(update={"signals": SIGNALS.all()})
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(out / MANIFEST)


async def run_eval(dataset: Dataset, graph: str, out: Path, settings: Settings, *,
                   concurrency: int = 16, cache_path: Path | None = None,
                   context: TriageContext | None = None, judge: str | None = None,
                   backend: str = "local", workers: int = 2, on_record: OnRecord | None = None,
                   on_start: Callable[[int, int], None] | None = None,
                   explore: bool = False) -> RunStats:
    """Run (or resume) ``graph`` over ``dataset`` into the folder ``out``.

    Args:
        dataset: What to run.
        graph: A registered graph name (``oracle`` included); ``explore`` is the triage
            graph with ``explore=True``.
        out: The run folder; an existing one is resumed.
        settings: Roles, prices and policy.
        concurrency: Questions in flight at once.
        cache_path: The response cache (default: ``eval-cache.sqlite`` in the data dir).
        context: Prebuilt roles (fakes in tests); their paid calls are cached when they are
            litellm or priced-search roles. An explore run records the signals its prober
            gives: build a prebuilt prober with ``prober_signals="all"`` (the runner does so
            when it builds the roles) for calibrate to try every signal.
        judge: A litellm model id to grade with (default: normalised exact match).
        backend: ``local`` (this process) or ``ray`` (shards over a Ray cluster).
        workers: Ray actors (``ray`` backend).
        on_record: Called with each record after it is written.
        on_start: Called with (total, skipped) before the first question runs.
        explore: Walk every choice the graph lets the policy make and keep the tape of role
            calls in each record, for ``knowgate calibrate`` (``knowgate.evals.explore``).

    Raises:
        UserError: Bad arguments, ``out`` holds another run, or another process is writing
            to ``out``.
    """
    if backend not in ("local", "ray"):
        raise UserError(f"unknown backend {backend!r}; choose local or ray")
    if backend == "ray" and context is not None:
        raise UserError("prebuilt roles cannot travel to Ray workers; pass settings only")
    started = time.perf_counter()
    if graph == EXPLORE_ALIAS:
        graph, explore = "triage", True
    with RunLock(out):
        return await _run_locked(dataset, graph, out, settings, started, concurrency=concurrency,
                                 cache_path=cache_path, context=context, judge=judge,
                                 backend=backend, workers=workers, on_record=on_record,
                                 on_start=on_start, explore=explore)


async def _run_locked(dataset: Dataset, graph: str, out: Path, settings: Settings,
                      started: float, *, concurrency: int, cache_path: Path | None,
                      context: TriageContext | None, judge: str | None, backend: str,
                      workers: int, on_record: OnRecord | None,
                      on_start: Callable[[int, int], None] | None, explore: bool) -> RunStats:
    todo = prepare(out, dataset, graph, settings, backend, explore)
    if explore:
        # Calibrate may try any signal, not only those the current policy weighs.
        settings = settings.model_copy(update={"prober_signals": "all"})
    skipped = len(dataset.items) - len(todo)
    if on_start is not None:
        on_start(len(dataset.items), skipped)
    cache_path = cache_path or default_cache_path(settings)
    cache = ResponseCache(cache_path)
    log = RecordLog(out)

    def write(record: EvalRecord) -> None:
        log.append(record)
        if on_record is not None:
            on_record(record)

    try:
        if todo and backend == "ray":
            from knowgate.evals.ray_backend import run_on_ray

            await run_on_ray(todo, graph, settings, cache_path, concurrency, write, workers,
                             judge=judge, explore=explore)
        elif todo:
            run_context = build_run_context(settings, cache, context)
            await evaluate(todo, graph, run_context, concurrency, write,
                           make_grader(settings, cache, judge), explore)
    finally:
        log.close()
        cache.close()
        _record_declarations(out)
    return RunStats(total=len(dataset.items), skipped=skipped, done=len(todo),
                    seconds=time.perf_counter() - started, cache_hits=cache.hits,
                    cache_misses=cache.misses)
