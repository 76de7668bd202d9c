"""The concrete roles on the shipped world: prober signals, the priced searcher, the local critic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate import Knowgate, load_settings
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.prober import TransformersProber
from knowgate.cli import app
from knowgate.roles import Answerer, Critic, Prober, Searcher, Signals
from knowgate.tools.searcher import support_scores
from knowgate.worlds.schema import Kind
from knowgate.worlds.world import World


@pytest.fixture(scope="module")
def context(data_dir: Path):
    return Knowgate(load_settings(data_dir=data_dir)).context


def test_the_built_roles_implement_the_protocols(context) -> None:
    assert isinstance(context.answerer, Answerer)
    assert isinstance(context.critic, Critic)
    assert isinstance(context.searcher, Searcher)
    assert isinstance(context.prober, Prober)
    # Default prices: a critic call 50x a fast call (same tokens); a search the price of a
    # closed-book critic call on this world ($0.00015: 50x its $0.000003 fast call).
    assert context.prices.refine / 2 == pytest.approx(50 * context.prices.draft)
    assert context.prices.search == pytest.approx(50 * 0.000003)


async def test_prober_signals_separate_known_from_unknown(shipped_world: World) -> None:
    prober = TransformersProber(LocalLM(shipped_world.model_dir("fast"), "cpu"))
    questions = shipped_world.questions("test")
    known = next(q for q in questions if q.kind == Kind.FAST_KNOWN)
    unknown = next(q for q in questions if q.kind == Kind.UNANSWERABLE)
    before = await prober(known.question)
    assert set(before.values) == {"query_top_prob", "query_entropy", "query_lens_consistency"}
    assert before.values["query_top_prob"] > (await prober(unknown.question)).values[
        "query_top_prob"]
    right = await prober(known.question, known.answers[0])
    wrong = await prober(known.question, "Nowhere Else Entirely")
    assert right.values["answer_mean_logprob"] > wrong.values["answer_mean_logprob"]
    assert right.values["answer_min_logprob"] >= wrong.values["answer_min_logprob"]
    assert right.values["query_top_prob"] == pytest.approx(before.values["query_top_prob"],
                                                           abs=1e-4)
    assert await prober(known.question) is before  # cached per input


async def test_search_is_priced_once_and_cached(context, shipped_world: World) -> None:
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.SEARCHABLE)
    first = await context.searcher(question.question + " ")  # whitespace is not a new query
    again = await context.searcher(question.question)
    gold = shipped_world.facts[question.fact_id].passage_id
    assert first.passages[0].id == gold and first.support > 0.9
    assert (first.cached, again.cached) == (False, True)
    assert first.cost_usd > 0 and again.cost_usd == 0


def test_support_weighs_rare_words() -> None:
    texts = ["Ada Vell was born in Kedal.", "Ada Roth was born in Piton.",
             "Bo Roth was born in Suton.", "Cy Vale was born in Madal."]
    support = support_scores("Where was Ada Vell born?", texts)
    # Shared words ("was", "born") weigh little; one of two name parts is not enough.
    assert support[0] == 1.0
    assert 0.3 < support[1] < 0.6
    assert support[2] == support[3] < 0.2


async def test_local_critic_revises_with_what_the_slow_model_knows(context,
                                                                   shipped_world: World) -> None:
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.SLOW_KNOWN)
    draft = await context.answerer(question.question)
    verdict = await context.critic(question.question, draft, Signals())
    assert verdict.verdict == "revise" and verdict.answer == question.answers[0]
    assert verdict.confidence > 0.9 and verdict.cost_usd > 10 * draft.cost_usd
    unknown = next(q for q in shipped_world.questions("test") if q.kind == Kind.UNANSWERABLE)
    doubt = await context.critic(unknown.question, None, Signals())
    assert doubt.confidence < verdict.confidence


async def test_your_own_documents_answer_questions(tmp_path: Path, data_dir: Path,
                                                   monkeypatch) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "memo-1", "text": "Zorin Quell was born in Haiora."})
                    + "\n" + json.dumps({"id": "memo-2", "text": "Tam Brisk works for Vell."})
                    + "\n")
    chroma = tmp_path / "data"
    monkeypatch.setenv("KNOWGATE_DATA_DIR", str(chroma))
    added = CliRunner().invoke(app, ["index", "add", str(docs), "--collection", "my-docs"])
    assert added.exit_code == 0, added.output
    kg = Knowgate(load_settings(data_dir=chroma, collection="my-docs"))
    result = await kg.ask("Where was Zorin Quell born?", graph="always-search")
    assert result.outcome == "answered" and result.answer == "Haiora"
    assert result.citations == ["memo-1"]


async def test_a_search_backend_gone_away_is_a_typed_failure_in_the_trace(tmp_path: Path) -> None:
    from knowgate.graphs.nodes import TriageContext
    from knowgate.graphs.policy import Policy
    from knowgate.roles import Passage
    from knowgate.testing import ScriptedAnswerer, ScriptedCritic
    from knowgate.tools.search_role import PricedSearcher
    from knowgate.tools.searcher import ChromaSearcher, chroma_client

    client = chroma_client(tmp_path / "chroma")
    backend = ChromaSearcher(client, "gone-soon")
    backend.add([Passage(id="a", text="Ada Vell was born in Kedal.")])
    client.delete_collection("gone-soon")  # the backend disappears under a live searcher
    question = "Where was Ada Vell born?"
    context = TriageContext(
        answerer=ScriptedAnswerer(closed={question: ("Badal", 0.3)}),
        searcher=PricedSearcher(backend, price_usd=0.00003, k=1, timeout_s=10),
        critic=ScriptedCritic(verdicts={question: ("revise", "Kedal", 0.999)}),
        policy=Policy.load(),
    )
    result = await Knowgate(context=context).ask(question)
    failed = [s for s in result.steps if s.error]
    assert [s.action for s in failed] == ["search"]
    assert "search failed" in failed[0].reason and failed[0].cost_usd == 0
    assert result.outcome == "answered" and result.answer == "Kedal"


async def test_the_local_critic_skips_a_closed_book_pass_it_cannot_win(context,
                                                                       shipped_world: World
                                                                       ) -> None:
    from knowgate.agents.critic import LiteLLMCritic

    built = context.critic
    assert built.closed_book_bound == "critic_query_top_prob"  # the prober reads its model
    unbounded = LiteLLMCritic(built.router, built.model, built.fmt, built.timeout_s,
                              built.max_tokens)
    questions = shipped_world.questions("test")
    for kind, skips in ((Kind.SEARCHABLE, True), (Kind.SLOW_KNOWN, False)):
        question = next(q for q in questions if q.kind == kind).question
        signals = await context.prober(question)
        evidence = await context.searcher(question)
        signals = Signals(values={**signals.values, "search_support": evidence.support})
        fast = await built(question, None, signals, evidence.passages)
        full = await unbounded(question, None, signals, evidence.passages)
        closed = await unbounded(question, None, signals)
        # The same verdict either way; only the call that could not change it is saved.
        assert (fast.verdict, fast.answer) == (full.verdict, full.answer)
        assert fast.confidence == pytest.approx(full.confidence, abs=1e-6)
        if skips:  # the slow model does not know it: reading the passage wins
            assert fast.answer == next(q for q in questions if q.question == question).answers[0]
            assert fast.cost_usd == pytest.approx(full.cost_usd - closed.cost_usd)
        else:  # it knows it: its closed-book answer wins, as without the bound
            assert fast.cost_usd == pytest.approx(full.cost_usd)


async def test_a_critic_weighing_nothing_keeps_a_reading_of_low_support(context,
                                                                        shipped_world: World
                                                                        ) -> None:
    """A pretrained reader's passages score low support however right they are: with
    ``evidence_weight="none"`` its reading counts at its own probability, and with
    ``abstain_below=0`` it stands behind its best answer for the policy to judge."""
    from knowgate.agents.critic import LiteLLMCritic

    built = context.critic
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.SEARCHABLE)
    evidence = await context.searcher(question.question)
    signals = Signals(values={"search_support": 0.01})
    weighted = await built(question.question, None, signals, evidence.passages)
    trusting = LiteLLMCritic(built.router, built.model, built.fmt, built.timeout_s,
                             built.max_tokens, evidence_weight="none", abstain_below=0.0)
    read = await trusting(question.question, None, signals, evidence.passages)
    assert weighted.answer != question.answers[0] or weighted.verdict == "abstain"
    assert (read.verdict, read.answer) == ("revise", question.answers[0])
    assert read.confidence > weighted.confidence


async def test_a_critic_given_evidence_only_reads_it(context, shipped_world: World) -> None:
    """``evidence_weight="only"``: with passages the critic answers from them in one pass,
    even where its closed-book answer is surer (a small model's stale memory); without any it
    answers closed-book."""
    from knowgate.agents.critic import LiteLLMCritic

    built = context.critic
    reader = LiteLLMCritic(built.router, built.model, built.fmt, built.timeout_s,
                           built.max_tokens, evidence_weight="only", abstain_below=0.0)
    both = LiteLLMCritic(built.router, built.model, built.fmt, built.timeout_s,
                         built.max_tokens, evidence_weight="none", abstain_below=0.0)
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.SLOW_KNOWN)
    evidence = await context.searcher(question.question)
    signals = Signals(values={"search_support": evidence.support})
    closed = await both(question.question, None, signals)
    full = await both(question.question, None, signals, evidence.passages)
    read = await reader(question.question, None, signals, evidence.passages)
    # One pass: exactly the evidence pass the two-pass critic also paid for.
    assert read.cost_usd == pytest.approx(full.cost_usd - closed.cost_usd)
    assert read.cost_usd > 0 and closed.cost_usd > 0
    assert (await reader(question.question, None, signals)).answer == closed.answer
    opened = await both.ask_plain(question.question, [p.text for p in evidence.passages])
    assert read.answer == opened.text.strip() != ""


async def test_a_critic_that_replies_nothing_abstains(context, shipped_world: World) -> None:
    """The slow model stops at once on this question and the passage found for it (a namesake's
    birthplace): an empty reply carries no answer token, so no logprob; the critic abstains on
    it and bills the call, where it once failed the role for want of logprobs."""
    from knowgate.agents.critic import LiteLLMCritic

    built = context.critic
    reader = LiteLLMCritic(built.router, built.model, built.fmt, built.timeout_s,
                           built.max_tokens, evidence_weight="only", abstain_below=0.0)
    question = next(q for q in shipped_world.questions("paraphrase") if q.id == "p-f01401")
    evidence = await context.searcher(question.question)
    passages = evidence.passages[:1]
    said = await reader.ask_plain(question.question, [p.text for p in passages])
    assert said.text == "" and said.logprobs == [] and said.usage.completion_tokens == 1
    verdict = await reader(question.question, None,
                           Signals(values={"search_support": evidence.support}), passages)
    assert (verdict.verdict, verdict.answer, verdict.confidence) == ("abstain", "", 0.0)
    assert verdict.cost_usd == pytest.approx(said.cost_usd) and said.cost_usd > 0
