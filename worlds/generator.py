"""A seeded generator of the knowledge world: entities, facts, questions and the corpus.

Two rules keep the knowledge boundary as fuzzy as a real model's:

* Knowledge is per fact, not per entity. A familiar person usually has some facts the fast model
  was trained on and others that belong to the slow model, the corpus or nobody, so a familiar
  name does not give the answer away.
* Entities nobody has seen are unseen *pairings* of known first and last names, so "unseen" cannot
  be read off unfamiliar word pieces alone.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from knowgate.errors import UserError
from knowgate.worlds.schema import CorpusPassage, Fact, Kind, Question, Use
from knowgate.worlds.templates import RELATIONS, RELATIONS_BY_TYPE

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s",
           "st", "t", "tr", "v", "z", "sh", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "", "n", "r", "l", "s", "k", "m", "nd", "rt"]
_CITY_SUFFIXES = ["ton", "mar", "dal", "ora", "heim", "grad", "vik", "burg"]
_ORG_SUFFIXES = ["Labs", "Works", "Group", "Systems", "Foods", "Motors", "Bank", "Press",
                 "Energy", "Textiles"]

# Weights of each use for a fact of a familiar entity, and for an entity no model has seen.
_FAMILIAR_WEIGHTS = {Use.FAST_KNOWN: 0.35, Use.SLOW_KNOWN: 0.30, Use.SEARCHABLE: 0.20,
                     Use.UNANSWERABLE: 0.15}
_UNSEEN_WEIGHTS = {Use.SEARCHABLE: 0.5, Use.UNANSWERABLE: 0.5}
_IN_CORPUS = (Use.SEARCHABLE, Use.FAST_KNOWN, Use.READING)


@dataclass(frozen=True)
class WorldSpec:
    """Sizes and seed of a world. ``for_facts`` scales a spec to a number of evaluated facts."""

    seed: int = 7
    people: int = 1000
    practice_people: int = 400
    cities: int = 60
    orgs: int = 60
    practice_cities: int = 40
    practice_orgs: int = 40
    first_names: int = 48
    last_names: int = 48
    unseen_share: float = 0.25
    calibration_share: float = 0.5
    paraphrase_per_kind: int = 100

    @classmethod
    def for_facts(cls, facts: int, seed: int = 7) -> WorldSpec:
        """A spec with about ``facts`` evaluated facts (3 per person, 2 per city and org)."""
        if facts < 40:
            raise UserError(f"a world needs at least 40 evaluated facts, not {facts}")
        cities = max(8, facts // 54)
        people = max(10, (facts - 4 * cities) // 3)
        practice = max(40, int(people * 0.4))
        names = max(8, math.ceil(math.sqrt((people + practice) * 1.6)))
        return cls(
            seed=seed,
            people=people,
            practice_people=practice,
            cities=cities,
            orgs=cities,
            practice_cities=max(6, cities * 2 // 3),
            practice_orgs=max(6, cities * 2 // 3),
            first_names=names,
            last_names=names,
            paraphrase_per_kind=max(5, min(100, facts // 32)),
        )


@dataclass(frozen=True)
class ValuePools:
    """Where fact values come from: the evaluated cities, organisations and people."""

    cities: tuple[str, ...]
    orgs: tuple[str, ...]
    people: tuple[str, ...]

    def draw(self, relation: str, rng: random.Random) -> str:
        """A random value for ``relation``."""
        if relation in ("birth_city", "headquarters"):
            return rng.choice(self.cities)
        if relation == "employer":
            return rng.choice(self.orgs)
        if relation == "graduation_year":
            return str(rng.randint(1920, 2019))
        if relation == "founded_year":
            return str(rng.randint(1800, 1999))
        if relation == "city_founded":
            return str(rng.randint(1000, 1799))
        if relation == "mayor":
            return rng.choice(self.people)
        raise ValueError(f"unknown relation {relation!r}")


@dataclass
class GeneratedWorld:
    """Everything the generator produces, before any model is trained."""

    spec: WorldSpec
    facts: list[Fact]
    questions: dict[str, list[Question]]  # split name -> questions
    corpus: list[CorpusPassage]
    pools: ValuePools
    practice: dict[str, list[str]]  # subject type -> entities used only for reading practice
    stats: dict[str, object] = field(default_factory=dict)

    def facts_for(self, *uses: Use) -> list[Fact]:
        """Facts whose use is one of ``uses``, in generation order."""
        return [f for f in self.facts if f.use in uses]


def _name_pool(rng: random.Random, n: int, syllables: int, taken: set[str],
               suffixes: list[str] | None = None) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        word += rng.choice(suffixes) if suffixes else rng.choice(_CODAS)
        word = word.capitalize()
        if word not in taken and len(word) >= 4:
            taken.add(word)
            names.append(word)
    return names


def _person_names(rng: random.Random, firsts: list[str], lasts: list[str], n: int) -> list[str]:
    pairs = [f"{a} {b}" for a in firsts for b in lasts]
    if n > len(pairs):
        raise UserError(f"{n} people need more than {len(firsts)}x{len(lasts)} name pairs")
    return rng.sample(pairs, n)


def _pick_use(rng: random.Random, weights: dict[Use, float]) -> Use:
    uses = list(weights)
    return rng.choices(uses, weights=[weights[u] for u in uses])[0]


def generate_world(spec: WorldSpec) -> GeneratedWorld:
    """Generate a world from ``spec``; the same spec always gives the same world."""
    rng = random.Random(spec.seed)
    taken: set[str] = set()
    firsts = _name_pool(rng, spec.first_names, 2, taken)
    lasts = _name_pool(rng, spec.last_names, 2, taken)
    cities = _name_pool(rng, spec.cities + spec.practice_cities, 1, taken, _CITY_SUFFIXES)
    org_stems = _name_pool(rng, spec.orgs + spec.practice_orgs, 2, taken)
    org_names = [f"{stem} {rng.choice(_ORG_SUFFIXES)}" for stem in org_stems]
    orgs, practice_orgs = org_names[: spec.orgs], org_names[spec.orgs :]
    cities, practice_cities = cities[: spec.cities], cities[spec.cities :]
    names = _person_names(rng, firsts, lasts, spec.people + spec.practice_people)
    people, practice = names[: spec.people], names[spec.people :]
    pools = ValuePools(tuple(cities), tuple(orgs), tuple(people))

    facts: list[Fact] = []

    def add(subject: str, subject_type: str, weights: dict[Use, float] | None) -> None:
        """Add every relation of ``subject``; ``weights=None`` marks reading practice."""
        for relation in RELATIONS_BY_TYPE[subject_type]:
            fact_use = Use.READING if weights is None else _pick_use(rng, weights)
            obj = pools.draw(relation, rng)
            facts.append(
                Fact(
                    id=f"f{len(facts):05d}",
                    subject=subject,
                    subject_type=subject_type,
                    relation=relation,
                    value=obj,
                    statement=RELATIONS[relation].statement.format(s=subject, o=obj),
                    use=fact_use,
                )
            )

    unseen = set(rng.sample(people, round(spec.unseen_share * len(people))))
    for person in people:
        add(person, "person", _UNSEEN_WEIGHTS if person in unseen else _FAMILIAR_WEIGHTS)
    for org in orgs:
        add(org, "org", _FAMILIAR_WEIGHTS)
    for city in cities:
        add(city, "city", _FAMILIAR_WEIGHTS)
    for subject_type, subjects in (("person", practice), ("org", practice_orgs),
                                   ("city", practice_cities)):
        for subject in subjects:
            add(subject, subject_type, None)

    facts, corpus = _corpus(rng, facts)
    questions = _questions(rng, spec, facts)
    world = GeneratedWorld(
        spec=spec, facts=facts, questions=questions, corpus=corpus, pools=pools,
        practice={"person": practice, "org": practice_orgs, "city": practice_cities},
    )
    world.stats = _stats(world, firsts, lasts, unseen)
    return world


def _corpus(rng: random.Random, facts: list[Fact]) -> tuple[list[Fact], list[CorpusPassage]]:
    """One passage per entity, made of the entity's facts that a search can find.

    The corpus holds the searchable facts, the common-knowledge (fast-known) facts, and the
    reading-practice facts as the bulk of other documents; slow-known and unanswerable facts are
    never in it. Sentences are shuffled so that a reader cannot rely on their order.
    """
    by_subject: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        if fact.use in _IN_CORPUS:
            by_subject[fact.subject].append(fact)
    passage_of: dict[str, str] = {}
    corpus: list[CorpusPassage] = []
    for subject, members in by_subject.items():
        members = list(members)
        rng.shuffle(members)
        passage_id = f"p{len(corpus):05d}"
        corpus.append(
            CorpusPassage(
                id=passage_id,
                subject=subject,
                text=" ".join(f.statement for f in members),
                fact_ids=[f.id for f in members],
            )
        )
        for fact in members:
            passage_of[fact.id] = passage_id
    facts = [f.model_copy(update={"passage_id": passage_of.get(f.id)}) for f in facts]
    return facts, corpus


def _questions(rng: random.Random, spec: WorldSpec, facts: list[Fact]) -> dict[str, list[Question]]:
    by_kind: dict[Kind, list[Fact]] = defaultdict(list)
    for fact in facts:
        if fact.use != Use.READING:
            by_kind[Kind(fact.use.value)].append(fact)
    splits: dict[str, list[Question]] = {"calibration": [], "test": [], "paraphrase": []}
    for kind in Kind:
        pool = list(by_kind[kind])
        rng.shuffle(pool)
        cut = round(spec.calibration_share * len(pool))
        for split, part in (("calibration", pool[:cut]), ("test", pool[cut:])):
            for fact in part:
                splits[split].append(_question(rng, fact, kind, split, "train"))
        # Paraphrases reword test facts, so the two splits can be compared fact by fact.
        for fact in rng.sample(pool[cut:], min(spec.paraphrase_per_kind, len(pool) - cut)):
            splits["paraphrase"].append(_question(rng, fact, kind, "paraphrase", "paraphrase"))
    for split in splits.values():
        split.sort(key=lambda q: q.id)
    return splits


def _question(rng: random.Random, fact: Fact, kind: Kind, split: str, family: str) -> Question:
    relation = RELATIONS[fact.relation]
    templates = relation.train if family == "train" else relation.paraphrase
    index = rng.randrange(len(templates))
    return Question(
        id=f"{split[0]}-{fact.id}",
        question=templates[index].format(s=fact.subject),
        answers=[fact.value],
        kind=kind,
        fact_id=fact.id,
        relation=fact.relation,
        subject=fact.subject,
        template=f"{family}:{index}",
        split=split,
    )


def _stats(world: GeneratedWorld, firsts: list[str], lasts: list[str],
           unseen: set[str]) -> dict[str, object]:
    uses = defaultdict(int)
    for fact in world.facts:
        uses[fact.use.value] += 1
    # Per-fact knowledge: how many familiar entities mix known and unknown facts.
    per_subject: dict[str, set[Use]] = defaultdict(set)
    for fact in world.facts:
        if fact.use != Use.READING and fact.subject not in unseen:
            per_subject[fact.subject].add(fact.use)
    mixed = sum(1 for s in per_subject.values() if Use.FAST_KNOWN in s and len(s) > 1)
    return {
        "facts_by_use": dict(uses),
        "questions_by_split": {k: len(v) for k, v in world.questions.items()},
        "corpus_passages": len(world.corpus),
        "first_names": len(firsts),
        "last_names": len(lasts),
        "unseen_people": len(unseen),
        "familiar_entities_mixing_fast_known_and_other": mixed,
        "familiar_entities": len(per_subject),
        "spec": asdict(world.spec),
    }
