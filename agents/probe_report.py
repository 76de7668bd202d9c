"""Measure trained probes and every signal on labelled data, beside the untrained control.

``signal_table`` scores each named signal (token signals, logit lens, self-evaluation, probes,
combiners) with AUROC and PRR on all records, and separately on the right answers against the
wrong answers about known entities (attribute-level unknowns) and about unseen entities.
``layer_table`` scores every probe of the training sweep on the same data, layer by layer, and
``plot_layers`` draws it. Each figure is computed for the trained model and for its untrained
copy: a probe that reads only word pieces scores on the control too, and that is not knowledge.

On real data the question's relation alone predicts much of a model's correctness (a model
knows capitals better than populations), so a probe can score well by recognising the relation.
Two figures control for that: the ``relation_only`` row (each question scored by its relation's
right-rate on the other folds, grouped by subject) and every signal's ``auroc_within_relation``
(its AUROC inside each relation, averaged weighted by the relation's questions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowgate.agents.probe_training import (
    ANSWER_SIGNALS,
    COMBINED_NAMES,
    QUERY_SIGNALS,
    Features,
    auroc,
    combiner_scores,
    probe_scores,
    prr,
    stage_columns,
)
from knowgate.agents.probes import CombinerSpec, LinearProbeSpec
from knowgate.errors import UserError

SELF_EVAL = "self_eval_yes"
RELATION_ONLY = "relation_only"
# Signals where a higher value means "less likely right": AUROC is taken of their negation.
LOWER_IS_SURER = {"query_entropy", "answer_mean_entropy"}


@dataclass(frozen=True)
class Scored:
    """Every signal's values on one set of features (one model)."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray
    entity: np.ndarray
    relation: np.ndarray
    group: np.ndarray


def score_all(features: Features, probes: dict[str, LinearProbeSpec],
              combiners: dict[str, CombinerSpec]) -> Scored:
    """Token signals, self-evaluation, the chosen probes and the combiners on ``features``."""
    columns = {n: features.signals[n] for n in (*QUERY_SIGNALS, *ANSWER_SIGNALS)}
    if features.self_eval is not None:
        columns[SELF_EVAL] = features.self_eval
    logits = {stage: probe_scores(features, spec) for stage, spec in probes.items()}
    for stage, values in logits.items():
        columns[probes[stage].name] = values  # a reading probe has its own name
    for stage, spec in combiners.items():
        columns[COMBINED_NAMES[stage]] = combiner_scores(  # type: ignore[index]
            spec, stage_columns(features, stage, logits))  # type: ignore[arg-type]
    records = features.records
    entity = np.array([r.entity or "" for r in records])
    relation = np.array([r.relation or "" for r in records])
    group = np.array([r.group or r.id for r in records])
    if relation.any():
        columns[RELATION_ONLY] = relation_rates(relation, features.labels, group)
    return Scored(columns=columns, labels=features.labels, entity=entity, relation=relation,
                  group=group)


def relation_rates(relation: np.ndarray, labels: np.ndarray, group: np.ndarray,
                   folds: int = 5) -> np.ndarray:
    """Each question's score from its relation alone: the right-rate of its relation on the
    other folds (folds by subject group, so no subject is scored by itself; add-one smoothed)."""
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(labels), dtype=float)
    splits = min(folds, len(set(group.tolist())))
    if splits < 2:
        return scores + float(labels.mean())
    for train, test in GroupKFold(n_splits=splits).split(labels, labels, group):
        for name in set(relation[test].tolist()):
            seen = labels[train][relation[train] == name]
            rate = (seen.sum() + 1.0) / (len(seen) + 2.0)
            scores[test[relation[test] == name]] = rate
    return scores


def within_relation_auroc(scored: Scored, values: np.ndarray) -> float | None:
    """AUROC inside each relation with both right and wrong answers, averaged weighted by the
    relation's questions (``None`` without relations)."""
    total, weight = 0.0, 0
    for name in set(scored.relation.tolist()) - {""}:
        keep = scored.relation == name
        value = auroc(scored.labels[keep], values[keep])
        if value is not None:
            total += value * int(keep.sum())
            weight += int(keep.sum())
    return total / weight if weight else None


def _oriented(name: str, values: np.ndarray) -> np.ndarray:
    return -values if name in LOWER_IS_SURER else values


def _subset_auroc(scored: Scored, values: np.ndarray, entity: str) -> float | None:
    keep = (scored.labels == 1) | (scored.entity == entity)
    if not (scored.entity == entity).any():
        return None
    return auroc(scored.labels[keep], values[keep])


def signal_table(trained: Scored, control: Scored | None) -> list[dict[str, Any]]:
    """One row per signal: AUROC, PRR, and AUROC on known / unseen entities, trained and control."""
    rows = []
    for name, values in trained.columns.items():
        v = _oriented(name, values)
        row: dict[str, Any] = {
            "signal": name,
            "auroc": _round(auroc(trained.labels, v)),
            "prr": _round(prr(trained.labels, v)),
            "auroc_known_entity": _round(_subset_auroc(trained, v, "known")),
            "auroc_unseen_entity": _round(_subset_auroc(trained, v, "unseen")),
            # Constant inside a relation (but for its folds), the baseline has no within figure.
            "auroc_within_relation": None if name == RELATION_ONLY
            else _round(within_relation_auroc(trained, v)),
        }
        if control is not None and name in control.columns:
            c = _oriented(name, control.columns[name])
            row["control_auroc"] = _round(auroc(control.labels, c))
            row["control_prr"] = _round(prr(control.labels, c))
        rows.append(row)
    return rows


def layer_table(features: Features, sweep: Sequence[LinearProbeSpec],
                control: Features | None = None,
                control_sweep: Sequence[LinearProbeSpec] = ()) -> list[dict[str, Any]]:
    """AUROC of every sweep probe (stage x family x pooling x layer) on ``features``."""
    others = {(s.stage, s.features, s.pooling, s.layer): s for s in control_sweep}
    rows = []
    for spec in sweep:
        row: dict[str, Any] = {
            "stage": spec.stage, "family": spec.features, "pooling": spec.pooling,
            "layer": spec.layer,
            "auroc": _round(auroc(features.labels, probe_scores(features, spec))),
        }
        twin = others.get((spec.stage, spec.features, spec.pooling, spec.layer))
        if control is not None and twin is not None:
            row["control_auroc"] = _round(auroc(control.labels, probe_scores(control, twin)))
        rows.append(row)
    return rows


def plot_layers(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """AUROC by layer, one line per probe (solid: trained model, dashed: untrained control).

    Raises:
        UserError: The file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault((row["stage"], row["family"], row["pooling"]), []).append(row)
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, (key, points) in enumerate(sorted(series.items())):
        points = sorted(points, key=lambda r: r["layer"])
        color = f"C{index % 10}"
        layers = [p["layer"] for p in points]
        ax.plot(layers, [p["auroc"] for p in points], "-o", color=color,
                label=f"{key[0]} {key[1]} {key[2]}")
        if all("control_auroc" in p for p in points):
            ax.plot(layers, [p["control_auroc"] for p in points], "--", color=color, alpha=0.5)
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xticks(sorted({row["layer"] for row in rows}))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("AUROC (test)")
    ax.set_ylim(0.3, 1.15)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", ncol=2, title="solid: trained, dashed: untrained control",
              title_fontsize=7)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:  # an unwritable place, an unknown image suffix
        raise UserError(f"cannot write the plot to {path}: {exc}") from exc
    finally:
        plt.close(fig)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
