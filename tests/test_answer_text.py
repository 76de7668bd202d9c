"""Signals read from answers' words: ``answer_echo``, ``critic_echo``, ``critic_agreement``,
``earlier_agreement``, the clause overlaps."""

from __future__ import annotations

from knowgate.answer_text import agreement, clause_overlap, earlier_agreement, echo
from knowgate.graphs.kinds import DRAFT, REFINE, SEARCH
from knowgate.graphs.policy import Policy
from knowgate.graphs.state import Candidate, TriageState
from knowgate.roles import Draft, Evidence, Passage, Verdict
from knowgate.signals import SIGNALS

CONTINENT = "North Korea is located on which continent?"
MOLDOVA = ("Moldova. Government, executive branch: chief of state: President Maia SANDU (since 24 "
           "December 2020); head of government: Prime Minister Alexandru MUNTEANU (since 2025); "
           "cabinet: Cabinet proposed by the prime minister.")


def test_echo_is_the_share_of_the_answer_the_question_holds() -> None:
    assert echo(CONTINENT, "North Korea") == 1.0
    assert echo(CONTINENT, "the North Korea.") == 1.0  # articles and punctuation dropped
    assert echo(CONTINENT, "Asia") == 0.0
    assert echo(CONTINENT, "North Asia") == 0.5
    assert echo(CONTINENT, "  ") == 0.0


def test_agreement_is_either_answer_stating_the_other() -> None:
    assert agreement("Ouagadougou", "The capital is Ouagadougou.") == 1.0
    assert agreement("The capital is Ouagadougou.", "ouagadougou") == 1.0
    assert agreement("Ouagadougou", "Bobo-Dioulasso") == 0.0
    assert agreement("Ouaga", "Ouagadougou") == 0.0  # part of a word is another answer
    assert agreement("", "Ouagadougou") == 0.0


def test_the_policy_reads_them_off_the_state() -> None:
    """``Policy.features`` gives the draft's ``answer_echo``, and with a verdict
    ``critic_echo`` and ``critic_agreement`` against the draft it checked; they are declared for
    the maps calibrate fits them in, and kept out of the signals the critic is shown."""
    policy = Policy.load()
    state = TriageState(question=CONTINENT, draft=Draft(answer="Asia", confidence=0.6,
                                                        label="sure"))
    assert policy.features(state)["answer_echo"] == 0.0
    assert "critic_agreement" not in policy.features(state)
    checked = state.model_copy(update={"verdict": Verdict(verdict="revise", answer="North Korea",
                                                          confidence=0.9, model="m")})
    features = policy.features(checked)
    assert (features["critic_echo"], features["critic_agreement"]) == (1.0, 0.0)
    agreed = checked.model_copy(update={"verdict": Verdict(verdict="accept", answer="asia.",
                                                           confidence=0.9, model="m")})
    assert policy.features(agreed)["critic_agreement"] == 1.0
    assert not {"answer_echo", "critic_echo", "critic_agreement"} & set(checked.signals.values)
    # A critic asked first (no draft) has nothing to agree with.
    alone = TriageState(question=CONTINENT, verdict=checked.verdict)
    assert "critic_agreement" not in policy.features(alone)
    maps = {name: SIGNALS.get(name).maps for name in ("answer_echo", "critic_echo",
                                                      "critic_agreement")}
    assert maps == {"answer_echo": ("closed_book", "open_book"), "critic_echo": ("critic",),
                    "critic_agreement": ("critic",)}


def test_earlier_agreement_counts_the_earlier_proposals_an_answer_agrees_with() -> None:
    """Every answer proposed before the current candidate's own step counts once when the two
    state each other; the candidate's own step and failed steps do not count."""
    assert earlier_agreement("Asia", ["asia.", "Africa", "South Asia", ""]) == 2.0
    policy = Policy.load()
    steps = [DRAFT.step("closed book", proposes="closed_book", answer="Asia"),
             REFINE.step("critic first", proposes="critic", answer="Africa"),
             SEARCH.step("search"),
             DRAFT.step("failed", error=True),
             DRAFT.step("read", proposes="open_book", answer="Asia")]
    state = TriageState(question=CONTINENT, steps=steps,
                        candidate=Candidate(answer="Asia", source="open_book"))
    assert policy.features(state)["earlier_agreement"] == 1.0  # the closed-book draft
    critic = state.model_copy(update={
        "steps": [*steps, REFINE.step("read", proposes="critic", answer="the Asia")],
        "candidate": Candidate(answer="the Asia", source="critic")})
    assert policy.features(critic)["earlier_agreement"] == 2.0  # both drafts
    assert "earlier_agreement" not in policy.features(TriageState(question=CONTINENT))
    assert SIGNALS.get("earlier_agreement").maps == ("open_book", "critic")


def test_clause_overlap_tells_the_asked_field_from_its_neighbour() -> None:
    """The clause stating the right answer shares the question's words; a neighbouring
    field's value, from the same passage and sentence, does not."""
    asked = "Who is Moldova's chief of state?"
    right = clause_overlap(asked, "Maia SANDU", [MOLDOVA])
    neighbour = clause_overlap(asked, "Alexandru MUNTEANU", [MOLDOVA])
    # Of the question's words "Moldova's", "chief", "state" the right clause holds two.
    assert right == 2 / 3 and neighbour == 0.0
    assert clause_overlap(asked, "Chisinau", [MOLDOVA]) == 0.0  # stated nowhere
    assert clause_overlap("Who?", "Maia SANDU", [MOLDOVA]) == 0.0  # nothing asked
    policy = Policy.load()
    state = TriageState(question=asked,
                        evidence=Evidence(query=asked, passages=[Passage(id="md", text=MOLDOVA)]),
                        draft=Draft(answer="Maia SANDU", confidence=0.5, label="unsure"),
                        verdict=Verdict(verdict="revise", answer="Alexandru MUNTEANU",
                                        confidence=0.9, model="m"))
    features = policy.features(state)
    assert (features["answer_clause_overlap"], features["critic_clause_overlap"]) == (2 / 3, 0.0)
    closed = state.model_copy(update={"evidence": None})
    assert "critic_clause_overlap" not in policy.features(closed)
