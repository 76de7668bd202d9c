"""Explore mode: walk every choice a graph lets the policy make, so that calibrate can replay it.

``knowgate eval run --graph G --explore`` runs each question through ``G`` as usual (the record
is that run), then walks it again and again with the policy replaced by one that forces a
sequence of choices: at the first ``Policy.decide`` beyond the sequence it stops and notes the
state and every action the policy could choose there (``Policy.options``); each of those
extends the sequence, depth first, until every reachable sequence has run to its end. The
roles go through a recorder (``knowgate.evals.tape``), so a call reached by many paths is made
once, and the record keeps the tape and the candidate answers of every branch.

``knowgate calibrate`` rebuilds the same walk over roles that read only the tape (``explore``
with a ``Player``'s roles): the result is a ``Tree`` of the states the graph itself presented
to ``Policy.decide``, and ``walk`` replays any policy on it by calling ``Policy.decide`` on those
states. That is the graph's own behaviour, question by question, for every policy with the
explored bounds and budget, whatever the graph's shape, as long as the graph makes its
policy-dependent choices through ``Policy.decide`` (a node that reads the maps itself, as the
``probe-gated`` baseline's gate does, is noted on the tape and refused by ``calibrate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from knowgate.errors import UserError
from knowgate.evals.records import CandidateRecord, EvalRecord
from knowgate.graphs.direct import run_values
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.graphs.state import Decision, TriageState

# The most decision points and ends one question's walk may reach (the stock triage graph with
# one search and one critic round has 28 or 29).
MAX_POINTS = 512
# Policy methods that read the maps: a graph calling them outside ``decide`` chooses by the
# policy where the walk does not look (``p_correct`` only reports the answer's confidence).
MAP_READS = frozenset({"query_probability", "success_of", "map_for"})
TERMINAL = ("answer", "abstain")


@dataclass(frozen=True)
class Point:
    """A decision the graph asked ``Policy.decide`` for, with what ``decide`` was given."""

    state: TriageState
    can_search: bool
    can_refine: bool
    options: tuple[str, ...]


@dataclass(frozen=True)
class End:
    """How one sequence of choices ended."""

    outcome: str  # answered, abstained, or none (the graph ended without an outcome)
    answer: str
    cost_usd: float
    path: tuple[str, ...]


Tree = dict[tuple[str, ...], Point | End]


class _Stop(Exception):
    def __init__(self, point: Point) -> None:
        super().__init__("explore: the forced choices ran out")
        self.point = point


class _Forcing:
    """Stands in for the policy: ``decide`` follows ``prefix``, then stops the run at the next
    decision; everything else is the policy's own (map reads outside ``decide`` are noted)."""

    def __init__(self, policy: Policy, prefix: tuple[str, ...], reads: set[str]) -> None:
        self._policy, self._prefix, self._reads, self._made = policy, prefix, reads, 0

    def decide(self, state: TriageState, prices: Prices, can_search: bool = True,
               can_refine: bool = True) -> Decision:
        if self._made < len(self._prefix):
            self._made += 1
            return Decision(action=self._prefix[self._made - 1], reason="explore: forced")
        options = self._policy.options(state, prices, can_search, can_refine)
        raise _Stop(Point(state, can_search, can_refine, tuple(options)))

    def __getattr__(self, name: str) -> Any:
        if name in MAP_READS:
            self._reads.add(name)
        return getattr(self._policy, name)


@dataclass
class Walk:
    """One question's explore walk: the tree, every run's states, the roles that failed."""

    tree: Tree
    runs: list[list[TriageState]]
    failed: list[str]
    policy_reads: list[str]


async def explore(graph: Any, context: TriageContext, question: str,
                  config: dict[str, Any] | None = None, max_points: int = MAX_POINTS) -> Walk:
    """Walk every sequence of choices ``graph`` lets ``context.policy`` make on ``question``.

    Raises:
        UserError: The walk reached more than ``max_points`` decisions and ends.
    """
    tree: Tree = {}
    runs: list[list[TriageState]] = []
    failed: set[str] = set()
    reads: set[str] = set()
    todo: list[tuple[str, ...]] = [()]
    while todo:
        prefix = todo.pop()
        forced = replace(context, policy=_Forcing(context.policy, prefix, reads))  # type: ignore[arg-type]
        snapshots: list[TriageState] = []
        try:
            async for snapshot in run_values(graph, TriageState(question=question),
                                             config=config, context=forced):
                snapshots.append(TriageState.model_validate(snapshot))
        except _Stop as stop:
            tree[prefix] = stop.point
            failed |= set(stop.point.state.failed)
            todo.extend(prefix + (o,) for o in reversed(stop.point.options))
        else:
            final = snapshots[-1]
            failed |= set(final.failed)
            tree[prefix] = End(outcome=final.outcome.kind if final.outcome else "none",
                               answer=(final.outcome.answer or "") if final.outcome else "",
                               cost_usd=final.spent_usd,
                               path=tuple(s.action for s in final.steps))
        runs.append(snapshots)
        if len(tree) > max_points:
            raise UserError(f"exploring {question!r} reached more than {max_points} decisions: "
                            "the graph's choices are not bounded by the policy's rounds")
    return Walk(tree, runs, sorted(failed), sorted(reads))


def bounds(policy: Policy) -> tuple[Any, ...]:
    """What the explore walk depends on besides the roles: rounds and budget."""
    return (policy.max_searches, policy.max_refines, policy.budget_usd,
            tuple(sorted(policy.rounds.items())))


@dataclass(frozen=True)
class Replayed:
    """How a graph ended one calibration question under a policy (``ExploredQuestion.replay``)."""

    answered: bool
    correct: bool
    cost_usd: float
    path: tuple[str, ...] = ()

    @property
    def right_without_help(self) -> bool:
        """Answered right with neither search nor critic."""
        return self.answered and self.correct and not {"search", "refine"} & set(self.path)

    def utility(self, terms: Policy) -> float:
        """Reward, penalty or abstain value under ``terms``, less the dollars spent."""
        value = (terms.reward_usd if self.correct else -terms.penalty_usd) if self.answered \
            else terms.abstain_usd
        return value - self.cost_usd


@dataclass(frozen=True)
class ExploredQuestion:
    """One explored question: its record, the tree of its graph's decisions, and the
    candidates and query-level features of that tree (``replay_trees``: what the graph computes
    now from the recorded calls, so a signal a node started writing after the explore run is
    there; the same as the record's when nothing changed)."""

    record: EvalRecord
    tree: Tree
    bounds: tuple[Any, ...]
    candidates: tuple[CandidateRecord, ...] = ()
    query: dict[str, float] = field(default_factory=dict)

    def candidate(self, source: str, searched: bool, drafted: bool | None = None
                  ) -> CandidateRecord | None:
        """The first candidate of ``source`` made after a search (or before any), and
        (``drafted``) after a draft or with none before it."""
        return next((c for c in self.candidates
                     if c.source == source and (c.searched > 0) == searched
                     and (drafted is None or ("draft" in c.path[:-1]) == drafted)), None)

    def replay(self, policy: Policy, prices: Prices) -> Replayed:
        """What the graph does with ``policy``: ``Policy.decide`` on the states the graph
        presented, from the first decision to the end.

        Raises:
            UserError: ``policy`` has other bounds than the walk, or chose an action the walk
                did not explore.
        """
        if bounds(policy) != self.bounds:
            raise UserError("the policy replayed has other rounds or budget than the explore "
                            f"walk ({bounds(policy)} vs {self.bounds})")
        prefix: tuple[str, ...] = ()
        while True:
            node = self.tree[prefix]
            if isinstance(node, End):
                answered = node.outcome == "answered"
                return Replayed(answered, answered and self._correct(node.answer),
                                node.cost_usd, node.path)
            action = policy.decide(node.state, prices, node.can_search, node.can_refine).action
            if action not in node.options:
                raise UserError(f"question {self.record.id}: the policy chose {action!r}, which "
                                f"the explore walk did not offer ({', '.join(node.options)})")
            prefix = (*prefix, action)

    def _correct(self, answer: str) -> bool:
        # Every answer the graph can give is a recorded candidate, graded when recorded.
        return any(c.correct for c in self.record.candidates if c.answer == answer)


def observe(snapshots: Sequence[TriageState], policy: Policy, grade: Callable[[str], bool]
             ) -> tuple[dict[str, float], list[CandidateRecord]]:
    """The query-level features and every candidate answer, from the states after each node:
    one per step that proposed one (``Step.proposes``, any node's), with the features the
    policy judged it on (until a later step replaces it or a search makes it stale)."""
    query: dict[str, float] = {}
    candidates: list[dict[str, Any]] = []
    open_candidate = False
    seen = 0
    for state in snapshots:
        for at, step in enumerate(state.steps[seen:], start=seen):
            if step.error:
                continue
            if step.counts_as == "search":
                open_candidate = False
            if step.proposes is None:
                continue
            proposed = state.candidate if (state.candidate is not None
                                           and state.candidate.source == step.proposes) else None
            # A critic that abstained proposed no answer, with the confidence it stated.
            stated = proposed.confidence if proposed is not None else (
                state.verdict.confidence if step.role == "critic" and state.verdict else None)
            candidates.append({"source": step.proposes,
                               "answer": proposed.answer if proposed is not None else "",
                               "confidence": stated or 0.0, "searched": state.count("search"),
                               "cost_usd": step.cost_usd,
                               "path": [s.action for s in state.steps[:at + 1]],
                               "spent_usd": round(sum(s.cost_usd
                                                      for s in state.steps[:at + 1]), 10)})
            open_candidate = True
        seen = len(state.steps)
        if not candidates and state.draft is None:
            query = policy.features(state)
        if open_candidate:
            # Later probes add signals of this candidate: keep the last view before it changes.
            candidates[-1]["features"] = policy.features(state)
            candidates[-1]["p_correct"] = round(policy.p_correct(state), 6)
    return query, [CandidateRecord(**c, correct=bool(c["answer"]) and grade(c["answer"]))
                   for c in candidates]


def candidates_of(runs: Sequence[Any], observe: Callable[[Any], Sequence[CandidateRecord]]
                  ) -> list[CandidateRecord]:
    """The candidates of every run (``observe(run)``: a run's snapshots, or what was already
    observed of them), each distinct one once: the same answer of the same source on the same
    features, reached by several paths, is kept with its cheapest path (the first found on a
    tie)."""
    seen: dict[tuple[Any, ...], CandidateRecord] = {}
    for run in runs:
        for c in observe(run):
            key = (c.source, c.answer, c.searched, tuple(sorted(c.features.items())))
            if key not in seen or c.spent_usd < seen[key].spent_usd:
                seen[key] = c
    return list(seen.values())


async def replay_trees(graph: Any, records: Sequence[EvalRecord], base: Policy, prices: Prices
                       ) -> list[ExploredQuestion]:
    """The explore walk of each record rebuilt over its tape: the graph run again on roles that
    only read what the explore run recorded.

    Raises:
        UserError: A record has no tape (not an explore run), the graph chose by the policy's
            maps outside ``Policy.decide``, or the walk made a call the tape does not hold
            (other roles, bounds or graph than the explore run's).
    """
    from knowgate.evals.tape import Player

    out = []
    for record in records:
        if record.tape is None:
            raise UserError(f"question {record.id} has no tape of role calls: calibrate on a "
                            "run made with --explore (knowgate eval run --explore ...)")
        if record.tape.policy_reads:
            raise UserError(f"graph {record.graph!r} chooses by the policy's maps outside "
                            f"Policy.decide ({', '.join(record.tape.policy_reads)}): calibrate "
                            "replays only the choices a graph makes through Policy.decide")
        player = Player(record.tape)
        context = player.wrap(TriageContext(answerer=None, policy=base, prices=prices))
        walk = await explore(graph, context, record.question.strip(),
                             {"configurable": {"kind": record.kind}})
        if player.misses:
            raise UserError(f"question {record.id}: the graph {record.graph!r} made a call "
                            f"its explore run did not record ({player.misses[0]}): explore "
                            "again with the roles, bounds and graph you calibrate for")
        grade = _recorded_grades(record)
        # Each run observed once: its candidates, and the first run's query-level features.
        observed = [observe(run, base, grade) for run in walk.runs]
        candidates = candidates_of(observed, lambda seen: seen[1])
        query = observed[0][0] if observed else {}
        out.append(ExploredQuestion(record, walk.tree, bounds(base), tuple(candidates), query))
    return out


def _recorded_grades(record: EvalRecord) -> Callable[[str], bool]:
    """Grades of the answers ``record``'s explore run graded: a replay over its tape gives no
    other (the roles' answers are the tape's).

    Raises:
        UserError: (when called) an answer the run never graded.
    """
    graded = {c.answer: c.correct for c in record.candidates if c.answer}

    def grade(answer: str) -> bool:
        if answer not in graded:
            raise UserError(f"question {record.id}: the replay proposed {answer!r}, which its "
                            "explore run never graded: explore again with this graph")
        return graded[answer]

    return grade
