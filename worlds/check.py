"""``knowgate world check``: measure what a world's models and corpus can answer.

Every model call goes through litellm (``local/fast``, ``local/slow``) and every retrieval through
the chromadb searcher, as the triage graph will use them, so the figures describe the real path.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from knowgate.agents.litellm_setup import import_litellm
from knowgate.agents.prompting import question_with_evidence
from knowgate.errors import WorldError
from knowgate.grading import is_correct
from knowgate.settings import Settings
from knowgate.worlds.schema import Kind, Question
from knowgate.worlds.world import MODELS, World

RETRIEVAL_KS = (1, 2, 3)


@dataclass(frozen=True)
class Bound:
    """One requirement on a measured figure."""

    name: str
    value: float
    op: str  # ">=" or "<="
    limit: float

    @property
    def passed(self) -> bool:
        """Whether the figure meets the limit."""
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "value": self.value, "op": self.op, "limit": self.limit,
                "passed": self.passed}


async def _answers(model: str, prompts: Sequence[str], concurrency: int = 128) -> list[str]:
    litellm = import_litellm()
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str:
        async with gate:
            response = await litellm.acompletion(
                model=model, messages=[{"role": "user", "content": prompt}],
                max_tokens=12, temperature=0,
            )
            return response.choices[0].message.content or ""

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def _share(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def _accuracy(questions: Sequence[Question], answers: Sequence[str]) -> float:
    return _share([is_correct(a, q.answers) for q, a in zip(questions, answers, strict=True)])


async def _measure_split(world: World, questions: list[Question], searcher: Any,
                         evidence_k: int, tick: Callable[[], None]) -> dict[str, Any]:
    searchable = [q for q in questions if q.kind == Kind.SEARCHABLE]
    hits = await asyncio.to_thread(
        searcher.search_many, [q.question for q in searchable], max(*RETRIEVAL_KS, evidence_k)
    )
    gold_ids = [world.facts[q.fact_id].passage_id for q in searchable]
    retrieval = {
        f"recall@{k}": _share([g in [p.id for p in h[:k]] for g, h in zip(gold_ids, hits, strict=True)])
        for k in sorted({*RETRIEVAL_KS, evidence_k})
    }
    result: dict[str, Any] = {"questions": len(questions), "searchable": len(searchable),
                              "retrieval": retrieval, "models": {}}
    for name in MODELS:
        model = f"local/{name}"
        closed = await _answers(model, [q.question for q in questions])
        tick()
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for q, answer in zip(questions, closed, strict=True):
            by_kind[q.kind.value].append(is_correct(answer, q.answers))
        gold_prompts = [
            question_with_evidence(q.question, [world.gold_passage(q).text]) for q in searchable
        ]
        gold = await _answers(model, gold_prompts)
        tick()
        searched: dict[str, float] = {}
        for k in sorted({*RETRIEVAL_KS, evidence_k}):
            prompts = [question_with_evidence(q.question, [p.text for p in h[:k]])
                       for q, h in zip(searchable, hits, strict=True)]
            searched[f"k={k}"] = _accuracy(searchable, await _answers(model, prompts))
        tick()
        result["models"][name] = {
            "closed_book": {kind.value: _share(by_kind[kind.value]) for kind in Kind},
            "open_book_gold": _accuracy(searchable, gold),
            "open_book_search": searched,
        }
    return result


def bounds_for(test: dict[str, Any], evidence_k: int) -> list[Bound]:
    """The requirements a world must meet on its test split."""
    fast, slow = test["models"]["fast"], test["models"]["slow"]
    out = [Bound("fast closed-book fast-known", fast["closed_book"]["fast-known"], ">=", 0.95)]
    for kind in ("slow-known", "searchable", "unanswerable"):
        out.append(Bound(f"fast closed-book {kind}", fast["closed_book"][kind], "<=", 0.05))
    for kind in ("fast-known", "slow-known"):
        out.append(Bound(f"slow closed-book {kind}", slow["closed_book"][kind], ">=", 0.95))
    for kind in ("searchable", "unanswerable"):
        out.append(Bound(f"slow closed-book {kind}", slow["closed_book"][kind], "<=", 0.05))
    for name, figures in (("fast", fast), ("slow", slow)):
        out.append(Bound(f"{name} open-book gold passage", figures["open_book_gold"], ">=", 0.90))
        out.append(Bound(f"{name} open-book searched (k={evidence_k})",
                         figures["open_book_search"][f"k={evidence_k}"], ">=", 0.85))
    out.append(Bound("retrieval recall@3", test["retrieval"]["recall@3"], ">=", 0.95))
    return out


async def check_world(world: World, settings: Settings,
                      on_progress: Callable[[str, int, int], None] | None = None
                      ) -> dict[str, Any]:
    """Measure the world on its test and paraphrase splits; bounds apply to the test split.

    ``on_progress(stage, done, total)`` reports indexing and model passes. Synchronous callers
    use ``knowgate.aio.run_sync(check_world(...))``.

    Raises:
        WorldError: The world's classes are measured, not constructed (``factbook``): an
            explore run measures them instead.
    """
    if any(q.kind is None for q in world.questions("test")):
        raise WorldError(f"`world check` measures a generated world's constructed classes; the "
                         f"{world.name} world's classes are measured: run `knowgate eval run "
                         f"--world {world.name} --dataset test --graph explore --out RUN`")
    started = time.perf_counter()
    world.serve_models(settings)
    searcher = await asyncio.to_thread(
        world.searcher, settings.data_dir, lexical_weight=world.card.search_lexical_weight
        if settings.search_lexical_weight is None else settings.search_lexical_weight,
        candidates=settings.search_candidates,
        on_progress=(lambda d, t: on_progress("index", d, t)) if on_progress else None,
    )
    evidence_k = settings.evidence_passages
    splits = {"test": world.questions("test"), "paraphrase": world.questions("paraphrase")}
    total = len(splits) * len(MODELS) * 3
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress("measure", done, total)

    measured = {name: await _measure_split(world, qs, searcher, evidence_k, tick)
                for name, qs in splits.items()}
    bounds = bounds_for(measured["test"], evidence_k)
    return {
        "world": world.name,
        "evidence_passages": evidence_k,
        "splits": measured,
        "bounds": [b.as_dict() for b in bounds],
        "passed": all(b.passed for b in bounds),
        "seconds": round(time.perf_counter() - started, 1),
    }
