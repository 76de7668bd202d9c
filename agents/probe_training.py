"""Train and measure probes of "will the answerer be right" from labelled questions.

The data is a JSONL of ``ProbeRecord`` (a world split labelled by running the answerer, or a
batch-eval log). ``extract`` runs the prober's own batched passes (``run_passes``) over it and
keeps every layer's pooled hidden states and every token signal; ``train_probes`` sweeps layers x
poolings per stage with a logistic regression on standardised features, picks each stage's probe
by AUROC on a validation part (split by subject, so that no entity is on both sides), refits it on
everything, and fits the combiners on out-of-fold probe scores. Every figure can be recomputed on
an untrained copy of the model (``untrained_copy``), the control a probe must beat.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowgate.agents.hidden_states import (
    POOLINGS,
    Pass,
    Stage,
    lens_features,
    run_passes,
    self_evaluation,
)
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.probes import (
    MANIFEST,
    CombinerSpec,
    Family,
    LinearProbeSpec,
    Manifest,
    save_json,
)
from knowgate.errors import UserError
from knowgate.jsonl import read_jsonl
from knowgate.signal_scales import Scale, rescale
from knowgate.signals import SIGNALS

QUERY_SIGNALS = ("query_top_prob", "query_entropy", "query_lens_consistency")
ANSWER_SIGNALS = ("answer_mean_logprob", "answer_min_logprob", "answer_mean_entropy",
                  "answer_lens_consistency")
PROBE_NAMES: dict[Stage, str] = {"query": "query_probe_logit", "answer": "answer_probe_logit"}
COMBINED_NAMES: dict[Stage, str] = {"query": "query_combined_logit", "answer": "combined_logit"}
SWEEP_FILE = "sweep.json"


class ProbeRecord(BaseModel):
    """One labelled question.

    Attributes:
        id: Record id.
        question: The question as the answerer got it.
        answer: The answerer's draft (``None``: only query-level probes can use the record).
        correct: Whether the answerer was right: the probe's label.
        group: What must not straddle train and validation (the subject); defaults to ``id``.
        kind: The question's class, when known (reported, never trained on).
        entity: ``known`` when the answerer's model was trained on some fact of the subject,
            ``unseen`` otherwise; the report splits the wrong answers by it.
        relation: What the question asks (``capital`` ...): on real data the relation alone
            predicts much of a model's correctness, so reports compare against it.
        passages: The evidence in the prompt the answer was given from (empty: closed-book).
            Records with passages train a probe of that reading (``train_reading_probe``).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    question: str
    answer: str | None = None
    correct: bool
    group: str | None = None
    kind: str | None = None
    entity: str | None = None
    relation: str | None = None
    passages: list[str] = Field(default_factory=list)


def read_records(path: Path | str) -> list[ProbeRecord]:
    """Read a labelled JSONL file.

    Raises:
        UserError: The file is missing, a line is not a valid record (file and line named), or
            the labels are all of one class.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    records = [r for _, r in read_jsonl(path, ProbeRecord, "labelled question")]
    if len({r.correct for r in records}) < 2:
        raise UserError(f"{path}: a probe needs both right and wrong answers "
                        f"({len(records)} records)")
    return records


def write_records(path: Path, records: Sequence[ProbeRecord]) -> None:
    """Write records as JSONL (to a temporary name first, so no half-written file remains)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json(exclude_none=True) + "\n")
    tmp.replace(path)


@dataclass
class Features:
    """What the passes gave for a list of records.

    Attributes:
        labels: 1 where the answerer was right.
        groups: One group per record (train/validation never split a group).
        signals: Token and logit-lens signals by name (NaN where a record has no answer).
        pooled: ``pooled[stage][pooling]`` is ``[records, layers + 1, hidden]``.
        lens: ``lens[stage][pooling]`` is ``[records, layers + 1, 3]``: the logit-lens features
            of the same pooled states (empty when the model has no output head).
        self_eval: The training-free self-evaluation per record (``None`` when inexpressible).
    """

    labels: np.ndarray
    groups: np.ndarray
    signals: dict[str, np.ndarray]
    pooled: dict[Stage, dict[str, np.ndarray]]
    lens: dict[Stage, dict[str, np.ndarray]]
    self_eval: np.ndarray | None = None
    records: list[ProbeRecord] = field(default_factory=list)

    def matrix(self, family: Family, stage: Stage, pooling: str) -> np.ndarray:
        """``[records, layers + 1, features]`` of one probe family (NaN rows: unusable)."""
        return (self.pooled if family == "hidden" else self.lens)[stage][pooling]

    def families(self) -> list[Family]:
        """The probe families these features support."""
        return ["hidden", "lens"] if self.lens else ["hidden"]


def untrained_copy(lm: LocalLM, seed: int = 0) -> LocalLM:
    """The same architecture, tokenizer and prompt style with freshly initialised weights: the
    control (it reads the very prompts the model does)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(lm.model.config)
    model.to(device=lm.device, dtype=next(lm.model.parameters()).dtype)
    copy = LocalLM.from_objects(model, lm.tokenizer)
    copy.prompt_style = lm.prompt_style
    return copy


def extract(lm: LocalLM, records: Sequence[ProbeRecord], batch_size: int = 64,
            self_eval: bool = True,
            progress: Callable[[int], None] | None = None) -> Features:
    """Run the prober's passes over ``records`` and keep every layer's pooled states.

    Raises:
        UserError: A record is too long for the model.
    """
    import torch

    signals: dict[str, list[float]] = {n: [] for n in (*QUERY_SIGNALS, *ANSWER_SIGNALS)}
    pooled: dict[Stage, dict[str, list[Any]]] = {s: {p: [] for p in POOLINGS[s]}
                                                 for s in ("query", "answer")}
    lens: dict[Stage, dict[str, list[Any]]] = {s: {p: [] for p in POOLINGS[s]}
                                               for s in ("query", "answer")}
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        results = run_passes(lm, [(r.question, r.answer, r.passages) for r in batch])
        decode = results[0].forward.decode
        for stage, by_pooling in pooled.items():
            for pooling, rows in by_pooling.items():
                # [batch, layers + 1, hidden]; NaN rows for records an answer probe cannot read.
                block = torch.stack([_pooled_layers(r.forward, stage, pooling) for r in results])
                rows.append(block.cpu().numpy())
                if decode is not None:
                    with torch.inference_mode():
                        lens[stage][pooling].append(torch.stack(
                            [lens_features(decode(layer, block[:, layer]))
                             for layer in range(block.shape[1])], dim=1).cpu().numpy())
        for result in results:
            for name, values in signals.items():
                values.append(result.signals.get(name, float("nan")))
        if progress is not None:
            progress(len(batch))
    evaluation = None
    if self_eval:
        scores = []
        for start in range(0, len(records), batch_size):
            scores += self_evaluation(lm, [r.question for r in records[start:start + batch_size]])
        if any(s is not None for s in scores):
            evaluation = np.array([np.nan if s is None else s for s in scores], dtype=float)
    return Features(
        labels=np.array([int(r.correct) for r in records]),
        groups=np.array([r.group or r.id for r in records]),
        signals={n: np.array(v, dtype=float) for n, v in signals.items()},
        pooled={s: {p: np.concatenate(rows) for p, rows in by.items()}
                for s, by in pooled.items()},
        lens={s: {p: np.concatenate(rows) for p, rows in by.items() if rows}
              for s, by in lens.items() if any(by.values())},
        self_eval=evaluation,
        records=list(records),
    )


def _pooled_layers(forward: Pass, stage: Stage, pooling: str) -> Any:
    """``[layers + 1, hidden]`` pooled states of one pass (NaN when the stage cannot read it)."""
    import torch

    first = forward.hidden_states[0]
    if stage == "answer" and first.shape[0] <= forward.prompt_tokens:
        return torch.full((len(forward.hidden_states), first.shape[-1]), float("nan"),
                          device=first.device)
    return torch.stack([forward.pooled(stage, layer, pooling)
                        for layer in range(len(forward.hidden_states))])


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AUROC of ``scores`` for ``labels`` (NaN scores dropped); ``None`` if one class is absent."""
    from sklearn.metrics import roc_auc_score

    keep = ~np.isnan(scores)
    if len(set(labels[keep].tolist())) < 2:
        return None
    return float(roc_auc_score(labels[keep], scores[keep]))


def prr(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Prediction-rejection ratio: the share of the oracle's gain in accuracy that rejecting the
    lowest-scored answers first achieves (1 = oracle order, 0 = random)."""
    keep = ~np.isnan(scores)
    y, s = labels[keep].astype(float), scores[keep]
    if len(set(y.tolist())) < 2:
        return None

    def area(order: np.ndarray) -> float:
        kept = y[order[::-1]]  # keep the highest scores; reject from the lowest
        accuracy = np.cumsum(kept) / np.arange(1, len(kept) + 1)
        return float(accuracy.mean())

    base = float(y.mean())
    oracle = area(np.argsort(y, kind="stable"))
    return (area(np.argsort(s, kind="stable")) - base) / (oracle - base)


def _fit(x: np.ndarray, y: np.ndarray, c: float = 0.1) -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
    return scaler, model


def _score(fitted: tuple[Any, Any], x: np.ndarray) -> np.ndarray:
    scaler, model = fitted
    return model.decision_function(scaler.transform(x))


def _validation_split(features: Features, share: float = 0.25, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit

    split = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    train, val = next(split.split(features.labels, features.labels, features.groups))
    return train, val


@dataclass(frozen=True)
class SweepCell:
    """One (stage, family, layer, pooling) probe's validation AUROC."""

    stage: Stage
    family: Family
    layer: int
    pooling: str
    auroc: float | None


def sweep(features: Features, c: float = 0.1,
          stages: Sequence[Stage] = ("query", "answer")) -> list[SweepCell]:
    """Validation AUROC of a probe at every stage (of ``stages``) x family x layer x pooling."""
    train, val = _validation_split(features)
    y = features.labels
    cells = []
    for stage in stages:
        for family in features.families():
            for pooling in POOLINGS[stage]:
                x = features.matrix(family, stage, pooling)
                usable = ~np.isnan(x[:, 0, 0])
                tr, va = train[usable[train]], val[usable[val]]
                for layer in range(x.shape[1]):
                    score = None
                    if len(set(y[tr].tolist())) == 2:
                        fitted = _fit(x[tr, layer], y[tr], c)
                        score = auroc(y[va], _score(fitted, x[va, layer]))
                    cells.append(SweepCell(stage, family, layer, pooling, score))
    return cells


def fit_probe(features: Features, cell: SweepCell, model: str, c: float = 0.1
              ) -> LinearProbeSpec:
    """Fit the probe at ``cell`` on every usable record."""
    x = features.matrix(cell.family, cell.stage, cell.pooling)[:, cell.layer]
    usable = ~np.isnan(x[:, 0])
    scaler, fitted = _fit(x[usable], features.labels[usable], c)
    return LinearProbeSpec(
        name=PROBE_NAMES[cell.stage], stage=cell.stage, layer=cell.layer, pooling=cell.pooling,
        features=cell.family, model=model,
        mean=[round(float(v), 6) for v in scaler.mean_],
        scale=[round(float(v), 6) for v in scaler.scale_],
        coef=[round(float(v), 6) for v in fitted.coef_[0]],
        intercept=round(float(fitted.intercept_[0]), 6),
        validation_auroc=None if cell.auroc is None else round(cell.auroc, 4),
        train_examples=int(usable.sum()),
    )


def probe_scores(features: Features, spec: LinearProbeSpec) -> np.ndarray:
    """The saved probe's logit on every record (NaN where it cannot read)."""
    x = features.matrix(spec.features, spec.stage, spec.pooling)[:, spec.layer]
    w = np.array(spec.coef) / np.array(spec.scale)
    return x @ w + (spec.intercept - float(w @ np.array(spec.mean)))


def out_of_fold(features: Features, cell: SweepCell, folds: int = 5,
                c: float = 0.1) -> np.ndarray:
    """Probe scores where each record is scored by a probe not trained on its group."""
    from sklearn.model_selection import GroupKFold

    x = features.matrix(cell.family, cell.stage, cell.pooling)[:, cell.layer]
    out = np.full(len(x), np.nan)
    usable = np.flatnonzero(~np.isnan(x[:, 0]))
    y, groups = features.labels[usable], features.groups[usable]
    for tr, te in GroupKFold(n_splits=folds).split(usable, y, groups):
        if len(set(y[tr].tolist())) < 2:
            continue
        out[usable[te]] = _score(_fit(x[usable[tr]], y[tr], c), x[usable[te]])
    return out


# Inverse regularisation strengths a combiner chooses from by grouped cross-validation.
COMBINER_C = (0.1, 1.0, 10.0)


def fit_combiner(name: str, stage: Stage, columns: dict[str, np.ndarray], labels: np.ndarray,
                 groups: np.ndarray) -> CombinerSpec:
    """A logistic map over the named signal columns, each on its declared scale, with
    the regularisation of lowest grouped 5-fold log loss (records missing a feature are left
    out)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = sorted(columns)
    scales: list[Scale] = [SIGNALS.scale(n) for n in names]
    x = np.column_stack([rescale(columns[n], r) for n, r in zip(names, scales, strict=True)])
    usable = ~np.isnan(x).any(axis=1)
    x, y, groups = x[usable], labels[usable], groups[usable]
    folds = min(5, len(set(groups.tolist())))
    c = COMBINER_C[len(COMBINER_C) // 2]
    if folds >= 2 and min(int(y.sum()), int(len(y) - y.sum())) >= folds:
        losses = {value: -cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(C=value, max_iter=5000)),
            x, y, groups=groups, cv=GroupKFold(n_splits=folds), scoring="neg_log_loss").mean()
            for value in COMBINER_C}
        c = min(losses, key=lambda value: losses[value])
    scaler, fitted = _fit(x, y, c)
    return CombinerSpec(
        name=name, stage=stage, features=names, scales=scales,
        mean=[round(float(v), 6) for v in scaler.mean_],
        scale=[round(float(v), 6) for v in scaler.scale_],
        coef=[round(float(v), 6) for v in fitted.coef_[0]],
        intercept=round(float(fitted.intercept_[0]), 6),
        train_examples=int(usable.sum()),
    )


def combiner_scores(spec: CombinerSpec, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The combiner's logit per record (NaN where a feature is missing)."""
    x = np.column_stack([rescale(columns[n], r)
                         for n, r in zip(spec.features, spec.feature_scales(), strict=True)])
    return ((x - np.array(spec.mean)) / np.array(spec.scale)) @ np.array(spec.coef) \
        + spec.intercept


def stage_columns(features: Features, stage: Stage,
                  probes: dict[Stage, np.ndarray]) -> dict[str, np.ndarray]:
    """The signals a combiner of ``stage`` reads: the token and lens signals and probe logits."""
    names = QUERY_SIGNALS if stage == "query" else (*QUERY_SIGNALS, *ANSWER_SIGNALS)
    columns = {n: features.signals[n] for n in names if not np.isnan(features.signals[n]).all()}
    columns[PROBE_NAMES["query"]] = probes["query"]
    if stage == "answer":
        columns[PROBE_NAMES["answer"]] = probes["answer"]
    return columns


@dataclass
class Trained:
    """What ``train_probes`` produced."""

    probes: dict[Stage, LinearProbeSpec]
    combiners: dict[Stage, CombinerSpec]
    sweep: list[SweepCell]


def train_probes(features: Features, model: str, c: float = 0.1) -> Trained:
    """Sweep, pick each stage's probe by validation AUROC, refit it, fit the combiners.

    Records without an answer train the query-level probe only; with no answer at all there is
    no answer-level probe or combiner.

    Raises:
        UserError: Not even a query-level probe can be fitted.
    """
    cells = sweep(features, c)
    probes: dict[Stage, LinearProbeSpec] = {}
    oof: dict[Stage, np.ndarray] = {}
    for stage in ("query", "answer"):
        scored = [cell for cell in cells if cell.stage == stage and cell.auroc is not None]
        if not scored:
            continue
        best = max(scored, key=lambda cell: cell.auroc or 0.0)
        probes[stage] = fit_probe(features, best, model, c)
        oof[stage] = out_of_fold(features, best, c=c)
    if "query" not in probes:
        raise UserError("no query-level probe could be fitted (too few records of one label?)")
    train, val = _validation_split(features)
    combiners = {}
    for stage in oof:
        columns = stage_columns(features, stage, oof)
        # The combiner's own validation figure: fitted on the train part, scored on the rest.
        held = fit_combiner(COMBINED_NAMES[stage], stage, {k: v[train] for k, v in columns.items()},
                            features.labels[train], features.groups[train])
        val_auroc = auroc(features.labels[val],
                          combiner_scores(held, {k: v[val] for k, v in columns.items()}))
        spec = fit_combiner(COMBINED_NAMES[stage], stage, columns, features.labels,
                            features.groups)
        combiners[stage] = spec.model_copy(update={
            "validation_auroc": None if val_auroc is None else round(val_auroc, 4)})
    return Trained(probes=probes, combiners=combiners, sweep=[c for c in cells if c.stage in oof])


READING_PROBE = "critic_reading_probe"  # the signal of the critic's readings' probe
READING_FILE = "reading_probe.json"


def train_reading_probe(features: Features, model: str, name: str = READING_PROBE,
                        c: float = 0.1) -> tuple[LinearProbeSpec, list[SweepCell]]:
    """The probe of a model's readings of evidence (records with ``passages``): of every
    answer-level probe of the sweep (layers x poolings x families, over the answer given
    from the passages), the one with the best validation AUROC, refitted on every record and
    named ``name``; and the answer-level sweep.

    Raises:
        UserError: No answer-level probe could be fitted (no answers, or one label only).
    """
    cells = [cell for cell in sweep(features, c, stages=("answer",)) if cell.auroc is not None]
    if not cells:
        raise UserError("no probe of the readings could be fitted (answers of one label only?)")
    best = max(cells, key=lambda cell: cell.auroc or 0.0)
    return fit_probe(features, best, model, c).model_copy(update={"name": name}), cells


def save_reading(spec: LinearProbeSpec, cells: Sequence[SweepCell], out: Path, model: str,
                 note: dict[str, Any] | None = None,
                 specs: Sequence[LinearProbeSpec] = ()) -> Manifest:
    """Write a probe directory of one reading probe (``reads: evidence``), the sweep's probes
    (``specs``, for the report's layer table) and the manifest, last."""
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / READING_FILE, spec)
    _save_sweep(out, specs)
    manifest = Manifest(model=model, probes=[READING_FILE], reads="evidence",
                        report={"sweep": sweep_json(cells), **(note or {})})
    save_json(out / MANIFEST, manifest)
    return manifest


def sweep_json(cells: Sequence[SweepCell]) -> list[dict[str, Any]]:
    """The sweep as JSON-ready rows."""
    return [{"stage": c.stage, "family": c.family, "layer": c.layer, "pooling": c.pooling,
             "validation_auroc": None if c.auroc is None else round(c.auroc, 4)} for c in cells]


def sweep_specs(features: Features, cells: Sequence[SweepCell], model: str,
                c: float = 0.1) -> list[LinearProbeSpec]:
    """Every sweep cell's probe refitted on all records (the report scores them by layer)."""
    return [fit_probe(features, cell, model, c) for cell in cells if cell.auroc is not None]


def save(trained: Trained, specs: Sequence[LinearProbeSpec], out: Path, model: str,
         note: dict[str, Any] | None = None) -> Manifest:
    """Write a probe directory: the chosen probes, the combiners, the sweep and ``probes.json``.

    The manifest goes last, so a directory without one is recognisably incomplete.
    """
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for stage, spec in trained.probes.items():
        names.append(f"{stage}_probe.json")
        save_json(out / names[-1], spec)
    combiners = []
    for stage, combiner in trained.combiners.items():
        combiners.append(f"{stage}_combined.json")
        save_json(out / combiners[-1], combiner)
    _save_sweep(out, specs)
    manifest = Manifest(model=model, probes=names, combiners=combiners,
                        report={"sweep": sweep_json(trained.sweep), **(note or {})})
    save_json(out / MANIFEST, manifest)
    return manifest


def _save_sweep(out: Path, specs: Sequence[LinearProbeSpec]) -> None:
    (out / SWEEP_FILE).write_text(
        "[\n" + ",\n".join(s.model_dump_json() for s in specs) + "\n]\n", encoding="utf-8")


def load_sweep(directory: Path) -> list[LinearProbeSpec]:
    """The sweep's probes saved by ``save`` (empty when there is none).

    Raises:
        UserError: The sweep file is invalid.
    """
    path = directory / SWEEP_FILE
    if not path.is_file():
        return []
    try:
        return [LinearProbeSpec.model_validate(s) for s in json.loads(path.read_text("utf-8"))]
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: invalid sweep file: {exc}") from exc
