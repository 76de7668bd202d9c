"""The run log: ``records.jsonl`` (one record per finished question) and ``manifest.json``.

Records are appended and flushed one by one as questions finish, so a run killed at any moment
keeps every finished question; a line torn by the kill is cut off when the run resumes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knowgate.errors import UserError
from knowgate.evals.tape import Tape
from knowgate.graphs.state import Step
from knowgate.signals import SignalSpec

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"


class CandidateRecord(BaseModel):
    """One candidate answer the graph produced, with what the policy saw when judging it.

    Attributes:
        source: ``closed_book``, ``open_book``, ``critic``, or a developer's node's own
            (``Step.proposes``).
        answer: The candidate (empty when the critic abstained).
        confidence: The role's stated confidence.
        features: ``Policy.features`` of the state at the last decision on this candidate.
        p_correct: The running policy's P(correct) for it.
        searched: Searches done before it.
        cost_usd: What the step that produced it cost.
        path: The actions up to the one that produced it (that one included).
        spent_usd: What the question had cost by then (that step included).
        correct: Whether it is right (normalised exact match).
    """

    model_config = ConfigDict(frozen=True)

    source: str = Field(min_length=1)
    answer: str
    confidence: float
    features: dict[str, float] = Field(default_factory=dict)
    p_correct: float = 0.0
    searched: int = 0
    cost_usd: float = 0.0
    path: list[str] = Field(default_factory=list)
    spent_usd: float = 0.0
    correct: bool = False


class EvalRecord(BaseModel):
    """How one question went.

    Attributes:
        id, question, answers, kind, meta: From the dataset item.
        graph: The graph that ran.
        outcome: ``answered``, ``abstained`` or ``error``.
        answer: The answer given, if any.
        correct: Whether it is right (None when not answered or when grading failed).
        grading_error: Why grading failed (an unparseable judge), never counted as abstention.
        confidence: The graph's P(correct) for its answer.
        path: The actions taken, in order.
        steps: Each action with its reason, cost and latency.
        signals: Every signal gathered, by name.
        query_features: The policy's features before any answer (query-level signals).
        candidates: Every candidate answer, in order.
        cost_usd: Dollars spent.
        searches, refines: Search and critic calls made.
        latency_s: Wall-clock seconds of the question.
        error: What went wrong for ``error`` outcomes.
        failed_roles: The roles that failed (an outage), for ``error`` outcomes.
        tape: In an explore run, every role call of the question's walk
            (``knowgate.evals.tape``), what ``calibrate`` replays the graph over.
    """

    id: str
    question: str
    answers: list[str]
    kind: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    graph: str
    outcome: Literal["answered", "abstained", "error"]
    answer: str | None = None
    correct: bool | None = None
    grading_error: str | None = None
    confidence: float = 0.0
    path: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    query_features: dict[str, float] = Field(default_factory=dict)
    candidates: list[CandidateRecord] = Field(default_factory=list)
    cost_usd: float = 0.0
    searches: int = 0
    refines: int = 0
    latency_s: float = 0.0
    error: str | None = None
    failed_roles: list[str] = Field(default_factory=list)
    tape: Tape | None = None

    @property
    def wrong(self) -> bool:
        """Answered and graded wrong."""
        return self.outcome == "answered" and self.correct is False

    @property
    def right(self) -> bool:
        """Answered and graded right."""
        return self.outcome == "answered" and self.correct is True

    @property
    def answerable(self) -> bool:
        """Whether a right answer exists (``answers: []`` means none does)."""
        return bool(self.answers)

    @property
    def rightly_abstained(self) -> bool:
        """Abstained where no right answer exists: the right decision."""
        return self.outcome == "abstained" and not self.answerable


class Manifest(BaseModel):
    """What a run is: enough to check that a resume continues the same run, and to report it.

    ``signals`` holds the declaration of every signal known when the run last stopped
    (``knowgate.signals``, trained probes' and plugins' included), so a report made where a
    plugin is not installed still says what its signals are.
    """

    graph: str
    dataset: str
    dataset_sha256: str
    items: int
    policy: str
    policy_sha256: str
    settings: dict[str, Any]
    versions: dict[str, str]
    backend: str = "local"
    explore: bool = False
    started: str
    signals: list[SignalSpec] = Field(default_factory=list)


def read_records(out: Path, repair: bool = False) -> list[EvalRecord]:
    """The records of a run, in file order.

    Args:
        out: The run folder.
        repair: Cut off a last line torn by a crash (else it raises).

    Raises:
        UserError: No run there, or a damaged record that is not a torn last line.
    """
    path = out / RECORDS
    if not path.is_file():
        raise UserError(f"no run at {out}: {RECORDS} is missing")
    data = path.read_bytes()
    records: list[EvalRecord] = []
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        last = offset + len(line) == len(data)
        try:
            if line.strip():
                records.append(EvalRecord.model_validate_json(line))
        except ValidationError as exc:
            if last and not line.endswith(b"\n"):
                if repair:
                    with path.open("r+b") as handle:
                        handle.truncate(offset)
                break
            raise UserError(f"{path}:{number}: damaged record: {exc.errors()[0]['msg']}") from exc
        offset += len(line)
    return records


class RecordLog:
    """Appends records to ``records.jsonl``, each flushed to the OS before the next."""

    def __init__(self, out: Path) -> None:
        self._handle = (out / RECORDS).open("a", encoding="utf-8")

    def append(self, record: EvalRecord | dict[str, Any]) -> None:
        """Write one record as one line and flush it."""
        line = record.model_dump_json() if isinstance(record, EvalRecord) else json.dumps(record)
        self._handle.write(line + "\n")
        self._handle.flush()  # in the OS now: a killed process loses no finished record

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


class RunLock:
    """An exclusive lock on a run folder (``flock`` on ``<out>/.lock``), held while one process
    writes to it: a second ``eval run`` on the same folder is refused instead of appending
    duplicate records. The OS drops the lock when its holder dies, so a killed run leaves no
    stale lock behind.

    Raises:
        UserError: On entering, when another process holds the folder.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._handle: Any = None

    def __enter__(self) -> RunLock:
        import fcntl

        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file")
        self.out.mkdir(parents=True, exist_ok=True)
        handle = (self.out / LOCK).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.out} is being written by another eval run ({holder}); "
                            "wait for it to end or use another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def read_manifest(out: Path) -> Manifest:
    """The manifest of the run at ``out``.

    Raises:
        UserError: It is missing or invalid.
    """
    path = out / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"no run at {out}: {MANIFEST} is missing") from exc
    except ValidationError as exc:
        raise UserError(f"{path}: invalid manifest: {exc}") from exc
