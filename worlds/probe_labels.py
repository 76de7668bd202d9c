"""Label a world split for probe training: run the answerer, record whether it was right (or,
``label_readings``, search and have the critic read what was found: probes of that reading).

Questions do not say whether their subject is familiar to a model, so it is derived from the
world's facts: a model knows an entity when it was trained on at least one of that entity's facts
(the fast model on fast-known facts, the slow model on fast- and slow-known facts; see
``knowgate.worlds.build``). A wrong answer about a known entity is an attribute-level unknown; one
about an unseen entity is an entity-level unknown. The report keeps them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from knowgate.agents.probe_training import ProbeRecord
from knowgate.errors import UserError
from knowgate.grading import is_correct
from knowgate.roles import Answerer, Critic, Searcher, Signals
from knowgate.worlds.schema import Use
from knowgate.worlds.world import World

# Which facts each world model was trained on (as in ``knowgate.worlds.build``).
TRAINED_ON = {"fast": (Use.FAST_KNOWN,), "slow": (Use.FAST_KNOWN, Use.SLOW_KNOWN)}


def known_subjects(world: World, model: str) -> set[str]:
    """Subjects with at least one fact the world model ``model`` was trained on.

    Raises:
        UserError: ``model`` is not one of the world's models.
    """
    if model not in TRAINED_ON:
        raise UserError(f"unknown world model {model!r}; known: {', '.join(TRAINED_ON)}")
    uses = TRAINED_ON[model]
    return {f.subject for f in world.facts.values() if f.use in uses}


async def label_split(world: World, split: str, answerer: Answerer, model: str | None = "fast",
                      concurrency: int = 64,
                      progress: Callable[[int], None] | None = None,
                      skip: Collection[str] = ()) -> list[ProbeRecord]:
    """Ask ``answerer`` every question of ``split`` closed-book and record if it was right.

    Args:
        world: The world whose questions (and ground truth) are used.
        split: ``calibration``, ``test`` or ``paraphrase``.
        answerer: The answerer whose correctness the probes learn.
        model: The world model that answerer runs, for the ``entity`` field (``None``: the
            answerer is not a world model, e.g. a hosted one, and ``entity`` is left out).
        concurrency: Questions in flight (the local provider batches them).
        progress: Called with 1 per labelled question.
        skip: Ids of questions to leave out (those a policy is calibrated on, so that the
            probes' scores on them are out of sample).

    Raises:
        RoleError: The answerer failed on a question (nothing is returned half-labelled).
    """
    # Who was trained on what is known only for a world that trained its models itself.
    trained = model is not None and world.local_model(model).dir is not None
    known = known_subjects(world, model) if trained and model is not None else None
    mode = world.card.grading
    left_out = set(skip)
    questions = [q for q in world.questions(split) if q.id not in left_out]
    gate = asyncio.Semaphore(concurrency)

    async def one(q) -> ProbeRecord:
        async with gate:
            draft = await answerer(q.question)
        if progress is not None:
            progress(1)
        return ProbeRecord(id=q.id, question=q.question, answer=draft.answer,
                           correct=is_correct(draft.answer, q.answers, mode),
                           group=q.subject, relation=q.relation,
                           kind=q.kind.value if q.kind is not None else None,
                           entity=None if known is None else
                           "known" if q.subject in known else "unseen")

    return list(await asyncio.gather(*(one(q) for q in questions)))


async def label_readings(world: World, split: str, searcher: Searcher, critic: Critic,
                         evidence_passages: int = 1, concurrency: int = 64,
                         progress: Callable[[int], None] | None = None,
                         skip: Collection[str] = ()) -> list[ProbeRecord]:
    """Search every question of ``split``, have ``critic`` read what was found, as the triage
    graph's refine node does after a search, and record its answer, the passages it read and
    whether it was right: the data of a probe of the critic's readings (``reads: evidence``).

    A question whose search finds nothing, or whose critic gives no answer (it abstains), has
    no reading to judge and no record. ``skip``, ``concurrency`` and ``progress`` are as for
    ``label_split``.

    Raises:
        RoleError: The searcher or the critic failed on a question (nothing is returned
            half-labelled).
    """
    mode = world.card.grading
    left_out = set(skip)
    questions = [q for q in world.questions(split) if q.id not in left_out]
    gate = asyncio.Semaphore(concurrency)

    async def one(q) -> ProbeRecord | None:
        async with gate:
            evidence = await searcher(q.question)
            passages = evidence.passages[:evidence_passages]
            verdict = None
            if passages:
                verdict = await critic(q.question, None,
                                       Signals(values={"search_support": evidence.support}),
                                       passages)
        if progress is not None:
            progress(1)
        if verdict is None or verdict.verdict == "abstain" or not verdict.answer.strip():
            return None
        return ProbeRecord(id=q.id, question=q.question, answer=verdict.answer,
                           correct=is_correct(verdict.answer, q.answers, mode),
                           passages=[p.text for p in passages], group=q.subject,
                           relation=q.relation, kind=q.kind.value if q.kind is not None else None)

    return [r for r in await asyncio.gather(*(one(q) for q in questions)) if r is not None]
