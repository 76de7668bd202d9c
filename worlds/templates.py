"""How each relation is said: one statement, training question templates, held-out paraphrases.

The models are trained on ``train`` templates only; ``paraphrase`` templates form their own split
so that an evaluation can ask whether knowledge survives rewording.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """A relation of one entity type, with every way the world phrases it."""

    name: str
    subject_type: str
    statement: str
    train: tuple[str, ...]
    paraphrase: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "birth_city",
            "person",
            "{s} was born in {o}.",
            ("Where was {s} born?", "In which city was {s} born?"),
            ("What is the birthplace of {s}?", "{s} was born in which city?"),
        ),
        Relation(
            "employer",
            "person",
            "{s} works for {o}.",
            ("Who does {s} work for?", "Which organisation employs {s}?"),
            ("What company is {s} employed by?", "{s} works for which organisation?"),
        ),
        Relation(
            "graduation_year",
            "person",
            "{s} graduated in {o}.",
            ("When did {s} graduate?", "In what year did {s} graduate?"),
            ("What is the graduation year of {s}?", "{s} finished their studies in which year?"),
        ),
        Relation(
            "founded_year",
            "org",
            "{s} was founded in {o}.",
            ("When was {s} founded?", "In what year was {s} founded?"),
            ("What is the founding year of {s}?", "{s} was established in which year?"),
        ),
        Relation(
            "headquarters",
            "org",
            "{s} is based in {o}.",
            ("Where is {s} based?", "In which city is {s} headquartered?"),
            ("What city is home to {s}?", "{s} has its head office in which city?"),
        ),
        Relation(
            "city_founded",
            "city",
            "The city of {s} was founded in {o}.",
            ("When was the city of {s} founded?", "In what year was {s} founded as a city?"),
            ("What is the founding year of the city of {s}?", "The city of {s} dates from which year?"),
        ),
        Relation(
            "mayor",
            "city",
            "The mayor of {s} is {o}.",
            ("Who is the mayor of {s}?", "Who leads {s} as mayor?"),
            ("Which person is mayor of {s}?", "{s} has whom as its mayor?"),
        ),
    )
}

RELATIONS_BY_TYPE: dict[str, tuple[str, ...]] = {
    t: tuple(name for name, r in RELATIONS.items() if r.subject_type == t)
    for t in ("person", "org", "city")
}
