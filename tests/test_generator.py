"""The world generator: determinism, per-fact knowledge, unseen pairings, disjoint splits."""

from __future__ import annotations

from collections import defaultdict

import pytest

from knowgate.errors import UserError
from knowgate.worlds.generator import WorldSpec, generate_world
from knowgate.worlds.schema import Kind, Use
from knowgate.worlds.templates import RELATIONS

SPEC = WorldSpec.for_facts(600, seed=3)


@pytest.fixture(scope="module")
def world():
    return generate_world(SPEC)


def test_same_spec_same_world(world) -> None:
    again = generate_world(SPEC)
    assert [f.model_dump() for f in again.facts] == [f.model_dump() for f in world.facts]
    assert again.questions == world.questions
    other = generate_world(WorldSpec.for_facts(600, seed=4))
    assert [f.value for f in other.facts] != [f.value for f in world.facts]


def test_knowledge_is_per_fact_not_per_entity(world) -> None:
    uses = defaultdict(set)
    for fact in world.facts:
        if fact.subject_type == "person" and fact.use != Use.READING:
            uses[fact.subject].add(fact.use)
    with_fast = [u for u in uses.values() if Use.FAST_KNOWN in u]
    mixed = [u for u in with_fast if len(u) > 1]
    # Most people the fast model knows something about also have facts it was not trained on.
    assert len(mixed) / len(with_fast) > 0.6


def test_unseen_people_are_pairings_of_known_name_parts(world) -> None:
    seen = {f.subject for f in world.facts
            if f.subject_type == "person" and f.use in (Use.FAST_KNOWN, Use.SLOW_KNOWN)}
    people = {f.subject for f in world.facts if f.subject_type == "person" and f.use != Use.READING}
    unseen = people - seen
    assert len(unseen) >= 0.15 * len(people)
    firsts = {s.split()[0] for s in seen}
    lasts = {s.split()[1] for s in seen}
    for name in unseen:
        first, last = name.split()
        assert first in firsts and last in lasts, name


def test_splits_are_disjoint_and_cover_every_class(world) -> None:
    calibration, test = world.questions["calibration"], world.questions["test"]
    assert not {q.fact_id for q in calibration} & {q.fact_id for q in test}
    for split in (calibration, test, world.questions["paraphrase"]):
        assert {q.kind for q in split} == set(Kind)
    # Paraphrases use held-out templates only.
    for q in world.questions["paraphrase"]:
        relation = RELATIONS[q.relation]
        assert q.template.startswith("paraphrase:")
        assert q.question in {t.format(s=q.subject) for t in relation.paraphrase}
        assert q.question not in {t.format(s=q.subject) for t in relation.train}


def test_corpus_holds_searchable_facts_and_never_model_only_facts(world) -> None:
    in_corpus = {fid for p in world.corpus for fid in p.fact_ids}
    by_id = {f.id: f for f in world.facts}
    assert all(by_id[f].use in (Use.SEARCHABLE, Use.FAST_KNOWN, Use.READING) for f in in_corpus)
    searchable = [f for f in world.facts if f.use == Use.SEARCHABLE]
    assert all(f.id in in_corpus for f in searchable)
    for passage in world.corpus:
        for fid in passage.fact_ids:
            assert by_id[fid].statement in passage.text
            assert by_id[fid].subject == passage.subject


def test_question_answers_are_the_fact_values(world) -> None:
    by_id = {f.id: f for f in world.facts}
    for q in world.questions["test"]:
        assert q.answers == [by_id[q.fact_id].value]
        assert q.kind.value == by_id[q.fact_id].use.value


def test_impossible_specs_are_user_errors() -> None:
    with pytest.raises(UserError, match="at least 40"):
        WorldSpec.for_facts(10)
    with pytest.raises(UserError, match="name pairs"):
        generate_world(WorldSpec(people=90, practice_people=20, first_names=10, last_names=10))
