"""The ``evidence_match`` signal: is the answer read from a sentence that answers the question?"""

from __future__ import annotations

from pathlib import Path

import pytest

from knowgate import Knowgate, load_settings
from knowgate.graphs import nodes
from knowgate.graphs.building import pipeline_graph
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Passage
from knowgate.runtime import ComposedGraph
from knowgate.testing import Fail, ScriptedAnswerer, ScriptedCritic, ScriptedSearcher
from knowgate.tools.embeddings import offline_embedding_function
from knowgate.tools.evidence_match import EvidenceMatcher, answer_sentences
from knowgate.worlds.schema import Kind
from knowgate.worlds.world import World

BOTH = Passage(id="p1", text="Ada Vell was born in Kedal. Ada Vell works for Orin Labs.")


@pytest.fixture(scope="module")
def matcher() -> EvidenceMatcher:
    return EvidenceMatcher(offline_embedding_function())


def test_answer_sentences_are_whole_word_matches() -> None:
    assert answer_sentences("kedal", [BOTH]) == ["Ada Vell was born in Kedal."]
    assert answer_sentences("Orin Labs", [BOTH]) == ["Ada Vell works for Orin Labs."]
    assert answer_sentences("Ked", [BOTH]) == []  # part of a word is not the answer
    assert answer_sentences("  ", [BOTH]) == []


def test_the_sentence_that_answers_the_question_matches_best(matcher: EvidenceMatcher) -> None:
    employer = "Which organisation employs Ada Vell?"
    right = matcher.score(employer, "Orin Labs", [BOTH])
    copied_from_the_wrong_fact = matcher.score(employer, "Kedal", [BOTH])
    assert 0.0 < copied_from_the_wrong_fact < right <= 1.0
    assert right - copied_from_the_wrong_fact > 0.1
    born = "Where was Ada Vell born?"
    assert matcher.score(born, "Kedal", [BOTH]) > matcher.score(born, "Orin Labs", [BOTH])
    assert matcher.score(employer, "Tarn Foods", [BOTH]) == 0.0  # not in the evidence at all


async def test_concurrent_matches_are_embedded_together_and_score_as_alone() -> None:
    import asyncio

    embed = offline_embedding_function()
    calls: list[int] = []

    def counting(texts: list[str]):
        calls.append(len(texts))
        return embed(texts)

    matcher = EvidenceMatcher(counting)
    inputs = [("Which organisation employs Ada Vell?", "Orin Labs", [BOTH]),
              ("Where was Ada Vell born?", "Kedal", [BOTH]),
              ("Where was Ada Vell born?", "Tarn Foods", [BOTH])]  # no sentence: no embedding
    alone = [matcher.score(*item) for item in inputs]
    calls.clear()
    together = await asyncio.gather(*(matcher(*item) for item in inputs))
    assert together == pytest.approx(alone, abs=1e-6)
    assert alone[0] > 0.5 and alone[2] == 0.0
    assert calls == [4]  # one call: two questions and their two sentences


async def test_the_world_graph_reads_it_after_a_search(data_dir: Path,
                                                       shipped_world: World) -> None:
    kg = Knowgate(load_settings(data_dir=data_dir))
    searchable = next(q for q in shipped_world.questions("test") if q.kind == Kind.SEARCHABLE)
    result = await kg.ask(searchable.question, graph="always-search")
    draft = next(s for s in result.steps if s.action == "draft")
    assert result.answer == searchable.answers[0]
    assert result.signals["evidence_match"] > 0.5
    assert f"evidence match {result.signals['evidence_match']:.3f}" in draft.reason
    closed = await kg.ask(searchable.question, graph="fast-only")
    assert "evidence_match" not in closed.signals  # nothing was read


async def test_a_failing_matcher_only_costs_the_signal() -> None:
    question = "Where was Ada Vell born?"

    async def broken(question: str, answer: str, passages) -> float:
        raise RuntimeError("embedder gone")

    context = TriageContext(
        answerer=ScriptedAnswerer(closed={question: ("Badal", 0.3)},
                                  opened={question: ("Kedal", 0.99)}),
        searcher=ScriptedSearcher(results={question: ([BOTH], 1.0)}),
        critic=ScriptedCritic(verdicts={question: Fail("critic down")}),
        policy=Policy.load(), matcher=broken,
        prices=Prices(draft=0.000003, search=0.00003, refine=0.0003),
    )
    result = await Knowgate(load_settings(), context=context).ask(question)
    opened = [s for s in result.steps if s.action == "draft"][-1]
    assert "matcher: RuntimeError: embedder gone" in opened.reason
    assert "evidence_match" not in result.signals
    # The open-book map's fallback (no evidence_match) still trusts a sure, supported reading.
    assert (result.outcome, result.answer) == ("answered", "Kedal")


async def test_the_critics_answer_is_matched_against_the_evidence_too(
        matcher: EvidenceMatcher) -> None:
    """After a search the critic's answer gets its own ``critic_evidence_match``: 0 when no
    passage states it (a small critic echoing the question), high when the passage does."""
    echoed, read = "What is the capital of Zarovia?", "Which organisation employs Ada Vell?"
    context = TriageContext(
        answerer=ScriptedAnswerer(opened={echoed: ("Kedal", 0.2), read: ("Kedal", 0.2)}),
        searcher=ScriptedSearcher(results={echoed: ([BOTH], 1.0), read: ([BOTH], 1.0)}),
        critic=ScriptedCritic(verdicts={echoed: ("revise", "Zarovia", 0.9),
                                        read: ("revise", "Orin Labs", 0.9)}),
        policy=Policy.load(), matcher=matcher.__call__,
        prices=Prices(draft=0.000003, search=0.00003, refine=0.0003),
    )
    # Search, read, then the critic reading the same evidence.
    checked = pipeline_graph("search-read-check", [("search", nodes.search),
                                                   ("draft", nodes.draft),
                                                   ("refine", nodes.refine)])
    explore = ComposedGraph("search-read-check", checked, context)
    for question, low in ((echoed, True), (read, False)):
        result = await explore.run(question)
        refine = [s for s in result.steps if s.action == "refine"][-1]
        match = result.signals.values["critic_evidence_match"]
        assert (match == 0.0) if low else (match > 0.5), (question, match)
        assert f"evidence match {match:.3f}" in refine.reason
        # The draft's own match is still the draft's.
        assert result.signals.values["evidence_match"] == pytest.approx(
            matcher.score(question, "Kedal", [BOTH]), abs=1e-6)
