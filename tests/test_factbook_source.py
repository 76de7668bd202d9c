"""The builder of the ``factbook`` world's text data: deterministic, split by entity, every gold
answer stated in the corpus, no unanswerable question answerable from it."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from knowgate.grading import normalize, states
from knowgate.worlds import factbook_source as fs

WORLD_DIR = Path(fs.__file__).resolve().parent / "factbook"


@pytest.fixture(scope="module")
def world() -> fs.FactbookWorld:
    return fs.build()


@pytest.fixture(scope="module")
def passages_of(world: fs.FactbookWorld) -> dict[str, list[fs.Passage]]:
    out: dict[str, list[fs.Passage]] = defaultdict(list)
    for p in world.corpus:
        out[p.subject].append(p)
    return out


def _answerable(world: fs.FactbookWorld) -> list[fs.Question]:
    return [q for q in world.questions if q.kind is None]


def test_two_builds_are_equal(world: fs.FactbookWorld) -> None:
    assert fs.build().model_dump() == world.model_dump()


def test_the_shipped_files_are_the_build(world: fs.FactbookWorld, tmp_path: Path) -> None:
    if not (WORLD_DIR / "source.json").exists():
        pytest.skip("worlds/factbook not generated")
    fs.write(world, tmp_path)
    for name in ("corpus.jsonl", "facts.jsonl", "questions/calibration.jsonl",
                 "questions/test.jsonl", "source.json"):
        assert (tmp_path / name).read_bytes() == (WORLD_DIR / name).read_bytes(), name


def test_split_by_entity(world: fs.FactbookWorld) -> None:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for q in world.questions:
        splits_of[q.subject].add(q.split)
    assert all(len(s) == 1 for s in splits_of.values())
    sizes = Counter(next(iter(s)) for s in splits_of.values())
    assert set(sizes) == {"calibration", "test"}
    assert abs(sizes["calibration"] - sizes["test"]) <= 2
    per_split = Counter(q.split for q in world.questions)
    assert 0.4 < per_split["calibration"] / len(world.questions) < 0.6


def test_every_gold_answer_is_stated_in_a_passage_of_its_entity(
    world: fs.FactbookWorld, passages_of: dict[str, list[fs.Passage]]
) -> None:
    facts = {f.id: f for f in world.facts}
    passages = {p.id: p for p in world.corpus}
    for q in _answerable(world):
        assert q.answers and all(a.strip() for a in q.answers), q.id
        texts = [p.text for p in passages_of[q.subject]]
        assert any(states(t, a) for t in texts for a in q.answers), q.id
        fact = facts[q.fact_id]
        assert fact.use == "searchable" and fact.passage_id is not None
        home = passages[fact.passage_id]
        assert home.subject == q.subject and q.fact_id in home.fact_ids
        assert any(states(home.text, a) for a in q.answers), q.id
        assert normalize(fact.value) == normalize(q.answers[0])


def test_no_unanswerable_question_is_answerable_from_the_corpus(
    world: fs.FactbookWorld, passages_of: dict[str, list[fs.Passage]]
) -> None:
    facts = {f.id: f for f in world.facts}
    corpus = [normalize(p.text) for p in world.corpus]
    for q in world.questions:
        if q.kind is None:
            continue
        assert q.kind == "unanswerable" and q.answers == []
        fact = facts[q.fact_id]
        assert fact.use == "unanswerable" and fact.passage_id is None and fact.value == ""
        if q.meta["unanswerable"] == "fictional":
            assert q.meta["entity_real"] is False
            assert q.subject not in passages_of
            core = normalize(q.subject.split(" of ")[-1])
            assert not any(f" {core} " in f" {t} " for t in corpus), q.subject
        else:
            assert q.meta["unanswerable"] == "missing-fact" and q.meta["entity_real"] is True
            keys = fs.MISSING[q.relation][1]
            texts = [p.text for p in passages_of[q.subject]]
            assert texts and not fs.mentions_any(texts, keys), q.id


def test_fictional_names_are_not_real(world: fs.FactbookWorld) -> None:
    real = {normalize(p.subject) for p in world.corpus}
    for info in fs.load_countryinfo():
        real.add(normalize(info.get("name", "")))
        real |= {normalize(t) for t in (info.get("translations") or {}).values()}
    for name in fs.FICTIONAL_NAMES:
        assert normalize(name) not in real
        assert normalize(name.split(" of ")[-1]) not in real
    assert len(set(fs.FICTIONAL_NAMES)) == len(fs.FICTIONAL_NAMES) >= 55


def test_counts(world: fs.FactbookWorld) -> None:
    qs = world.questions
    assert len(qs) >= 1500
    by_relation = Counter(q.relation for q in _answerable(world))
    assert sum(n >= 100 for n in by_relation.values()) >= 8
    kinds = Counter(q.meta["unanswerable"] for q in qs)
    unanswerable = kinds["fictional"] + kinds["missing-fact"]
    assert kinds["fictional"] >= 150 and kinds["missing-fact"] >= 150
    assert 0.15 <= unanswerable / len(qs) <= 0.20
    assert len({q.relation for q in qs if q.meta["unanswerable"] == "missing-fact"}) >= 3
    assert len({q.id for q in qs}) == len(qs)
    assert world.source["by_relation"] == dict(sorted(Counter(q.relation for q in qs).items()))


def test_templates_and_meta(world: fs.FactbookWorld) -> None:
    used: dict[str, set[str]] = defaultdict(set)
    for q in world.questions:
        used[q.relation].add(q.template)
        assert q.template.startswith(f"{q.relation}/")
        assert {"time_sensitive", "since", "unanswerable", "entity_real"} <= set(q.meta)
        assert q.question.endswith("?") and "{" not in q.question
        if q.kind is None and q.relation in fs.TIME_SENSITIVE:
            assert q.meta["time_sensitive"] is True
    assert all(len(t) == 2 for t in used.values())
    timed = [q for q in _answerable(world) if q.meta["time_sensitive"]]
    assert len(timed) >= 300
    assert sum(isinstance(q.meta["since"], int) for q in timed) / len(timed) > 0.95


def test_corpus_shape(world: fs.FactbookWorld) -> None:
    ids = [p.id for p in world.corpus]
    assert len(ids) == len(set(ids)) and len(ids) < 12_000
    assert world.source["corpus_bytes"] < 8_000_000
    for p in world.corpus:
        assert len(p.text) <= fs.MAX_PASSAGE
        assert p.text.startswith(f"{p.subject}. ")
        assert not re.search(r"</?[a-z]+[ >/]|&[a-z]+;", p.text), p.id
    fields = Counter(p.subject for p in world.corpus if p.id.count("/") == 2)
    assert min(fields.values()) >= 5 and sum(fields.values()) / len(fields) >= 20


@pytest.mark.parametrize(
    ("fact_id", "wanted"),
    [
        ("uv/capital", "Ouagadougou"),
        ("us/capital", "Washington"),
        ("uv/currency", "CFA franc"),
        ("uv/chief_of_state", "Ibrahim Traore"),
        ("uv/chief_of_state", "Traore"),
        ("us/chief_of_state", "Donald Trump"),
        ("uk/chief_of_state", "King Charles III"),
        ("uv/language", "French"),
        ("uv/continent", "Africa"),
        ("jm/continent", "North America"),
        ("uv/independence_year", "1960"),
        ("np/highest_point", "Everest"),
        ("uv/internet_tld", ".bf"),
        ("fr/national_holiday_date", "July 14"),
        ("uv/demonym", "Burkinabe"),
    ],
)
def test_gold_answers_and_aliases(world: fs.FactbookWorld, fact_id: str, wanted: str) -> None:
    q = next(q for q in world.questions if q.fact_id == fact_id)
    assert normalize(wanted) in {normalize(a) for a in q.answers}, q.answers


def test_office_holders_carry_since(world: fs.FactbookWorld) -> None:
    q = next(q for q in world.questions if q.fact_id == "uv/chief_of_state")
    assert q.answers[0] == "Ibrahim Traore" and q.meta["since"] == 2022
    assert q.question in {t.format(name="Burkina Faso", poss="Burkina Faso's")
                          for t in fs.TEMPLATES["chief_of_state"]}


def test_written_files(world: fs.FactbookWorld, tmp_path: Path) -> None:
    fs.write(world, tmp_path)
    rows = [json.loads(line) for line in
            (tmp_path / "questions" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["split"] == "test" for r in rows)
    assert set(rows[0]) == {"id", "question", "answers", "kind", "fact_id", "relation",
                            "subject", "template", "split", "meta"}
    source = json.loads((tmp_path / "source.json").read_text(encoding="utf-8"))
    assert source["package_versions"] == fs.package_versions()
