"""Metrics of a run: accuracy, coverage, selective risk, utility, calibration, cost, latency.

Everything is computed from the records alone (and the policy's reward, penalty and abstain
value for the utility), so any two runs compare on the same footing. Confidence intervals are
percentile bootstraps over questions with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from knowgate.evals.records import EvalRecord
from knowgate.graphs.policy import Policy

ACTIONS = ("draft", "search", "refine", "answer", "abstain")
BOOTSTRAP = 1000


def utilities(records: Sequence[EvalRecord], policy: Policy) -> np.ndarray:
    """Per question, in dollars: ``reward`` if right, ``-penalty`` if wrong, ``abstain_usd`` if
    abstained (or failed), minus what it spent."""
    out = []
    for r in records:
        value = (policy.reward_usd if r.right else -policy.penalty_usd if r.wrong
                 else policy.abstain_usd)
        out.append(value - r.cost_usd)
    return np.array(out, dtype=float)


def selective_risk(records: Sequence[EvalRecord]) -> float:
    """Wrong answers among answered (graded) questions; 0 when nothing was answered."""
    graded = [r for r in records if r.outcome == "answered" and r.correct is not None]
    return sum(r.wrong for r in graded) / len(graded) if graded else 0.0


def risk_coverage(records: Sequence[EvalRecord]) -> tuple[list[float], list[float], float]:
    """The risk-coverage curve of the answered questions ranked by confidence, and its area.

    Coverage is the share of all questions answered when only the k most confident answers are
    kept; risk is the wrong share among those k. AURC is the mean risk over k (lower is better).
    """
    n = len(records)
    answered = sorted((r for r in records if r.outcome == "answered" and r.correct is not None),
                      key=lambda r: -r.confidence)
    coverage, risk, wrong = [], [], 0
    for k, r in enumerate(answered, start=1):
        wrong += r.wrong
        coverage.append(k / n)
        risk.append(wrong / k)
    return coverage, risk, float(np.mean(risk)) if risk else 0.0


def calibration_errors(records: Sequence[EvalRecord], bins: int = 10) -> tuple[float, float]:
    """ECE (equal-width bins) and Brier score of the confidence of answered questions."""
    graded = [r for r in records if r.outcome == "answered" and r.correct is not None]
    if not graded:
        return 0.0, 0.0
    p = np.array([r.confidence for r in graded])
    y = np.array([float(r.right) for r in graded])
    index = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(p[index == b].mean() - y[index == b].mean()) * (index == b).sum()
              for b in range(bins) if (index == b).any()) / len(p)
    return float(ece), float(np.mean((p - y) ** 2))


def signal_auroc(records: Sequence[EvalRecord]) -> dict[str, float]:
    """AUROC of each recorded signal (and of the confidence) for telling right answers from
    wrong ones, among answered questions that carry it. Signals named ``*entropy`` count as
    uncertainty, so their AUROC is of the negated value."""
    from sklearn.metrics import roc_auc_score

    graded = [r for r in records if r.outcome == "answered" and r.correct is not None]
    names = sorted({name for r in graded for name in r.signals})
    out = {}
    for name in ["confidence", *names]:
        rows = [(r.confidence if name == "confidence" else r.signals[name], r.right)
                for r in graded if name == "confidence" or name in r.signals]
        labels = {y for _, y in rows}
        if len(labels) < 2:
            continue
        sign = -1.0 if name.endswith("entropy") else 1.0
        out[name] = round(float(roc_auc_score([y for _, y in rows],
                                              [sign * x for x, _ in rows])), 4)
    return out


def bootstrap_indices(n: int, resamples: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``resamples`` rows of ``n`` question indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_risk(records: Sequence[EvalRecord], resamples: int = BOOTSTRAP,
                   seed: int = 1) -> np.ndarray:
    """The selective risk (wrong among answered) in each bootstrap resample."""
    wrong = np.array([float(r.wrong) for r in records])
    graded = np.array([float(r.outcome == "answered" and r.correct is not None)
                       for r in records])
    idx = bootstrap_indices(len(records), resamples, seed)
    return wrong[idx].sum(axis=1) / np.maximum(graded[idx].sum(axis=1), 1.0)


def _ci(values: np.ndarray) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 6), round(float(np.percentile(values, 97.5)), 6)]


def decision_matrix(records: Sequence[EvalRecord]) -> dict[str, dict[str, float]]:
    """Per class: questions, the share that took each action, and how they ended."""
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({r.kind or "unlabelled" for r in records}):
        rows = [r for r in records if (r.kind or "unlabelled") == kind]
        n = len(rows)
        entry: dict[str, float] = {"n": n}
        for action in ACTIONS:
            entry[action] = round(sum(action in r.path for r in rows) / n, 4)
        entry["right"] = round(sum(r.right for r in rows) / n, 4)
        entry["wrong"] = round(sum(r.wrong for r in rows) / n, 4)
        entry["right_decision"] = round(sum(r.right or r.rightly_abstained for r in rows) / n, 4)
        entry["usd_per_q"] = round(sum(r.cost_usd for r in rows) / n, 8)
        out[kind] = entry
    return out


def _no_answer(records: Sequence[EvalRecord]) -> dict[str, float]:
    """Questions with no right answer: how many, and the share abstained (right) and answered
    (always graded wrong)."""
    rows = [r for r in records if not r.answerable]
    if not rows:
        return {"n": 0}
    return {"n": len(rows),
            "abstained": round(sum(r.rightly_abstained for r in rows) / len(rows), 4),
            "answered_wrong": round(sum(r.wrong for r in rows) / len(rows), 4)}


def summarize(records: Sequence[EvalRecord], policy: Policy, alpha: float | None = None,
              resamples: int = BOOTSTRAP) -> dict[str, Any]:
    """Every metric of a run, as a JSON-ready dict.

    Args:
        records: The run's records.
        policy: Its reward, penalty and abstain value define the utility.
        alpha: When given, also the share of bootstrap resamples whose selective risk is at
            most ``alpha`` (the check of a risk guarantee).
        resamples: Bootstrap resamples for the confidence intervals.
    """
    n = len(records)
    if n == 0:
        return {"n": 0}
    answered = [r for r in records if r.outcome == "answered"]
    latencies = np.array([r.latency_s for r in records])
    util = utilities(records, policy)
    coverage, risk, aurc = risk_coverage(records)
    ece, brier = calibration_errors(records)
    accuracy = sum(r.right for r in records) / n
    summary: dict[str, Any] = {
        "n": n,
        "accuracy": round(accuracy, 4),
        "right_decisions": round(sum(r.right or r.rightly_abstained for r in records) / n, 4),
        "coverage": round(len(answered) / n, 4),
        "accuracy_answered": round(1.0 - selective_risk(records), 4) if answered else 0.0,
        "wrong_rate_answered": round(selective_risk(records), 4),
        "wrong_rate": round(sum(r.wrong for r in records) / n, 4),
        "abstained": round(sum(r.outcome == "abstained" for r in records) / n, 4),
        "errors": sum(r.outcome == "error" for r in records),
        "grading_errors": sum(r.grading_error is not None for r in records),
        "utility": round(float(util.mean()), 8),
        "usd_per_q": round(sum(r.cost_usd for r in records) / n, 8),
        "searches_per_q": round(sum(r.searches for r in records) / n, 4),
        "refines_per_q": round(sum(r.refines for r in records) / n, 4),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
        "aurc": round(aurc, 4),
        "ece": round(ece, 4),
        "brier": round(brier, 4),
        "auroc": signal_auroc(records),
        "risk_coverage": {"coverage": [round(c, 4) for c in coverage],
                          "risk": [round(x, 4) for x in risk]},
        "by_class": decision_matrix(records),
        "no_answer": _no_answer(records),
        "utility_terms": {"reward_usd": policy.reward_usd, "penalty_usd": policy.penalty_usd,
                          "abstain_usd": policy.abstain_usd},
    }
    if resamples:
        idx = bootstrap_indices(n, resamples)
        right = np.array([float(r.right) for r in records])
        summary["ci95"] = {
            "accuracy": _ci(right[idx].mean(axis=1)),
            "utility": _ci(util[idx].mean(axis=1)),
            "wrong_rate_answered": _ci(bootstrap_risk(records, resamples, seed=0)),
        }
    if alpha is not None:
        risks = bootstrap_risk(records, resamples or BOOTSTRAP)
        summary["guarantee"] = {"alpha": alpha,
                                "share_of_resamples_within": round(float(np.mean(risks <= alpha)), 4),
                                "resamples": int(len(risks))}
    return summary
