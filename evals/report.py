"""``knowgate eval report``: one self-contained HTML page comparing runs.

The page has the comparison table, the risk-coverage curves, a cost-accuracy plot (each graph a
point, the oracle marked) and each run's per-class decision matrix. Plots are matplotlib figures
inlined as SVG, so the file needs nothing else to render.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowgate.errors import UserError
from knowgate.evals.metrics import summarize
from knowgate.evals.records import EvalRecord, Manifest
from knowgate.graphs.policy import Policy
from knowgate.signals import SIGNALS

COLUMNS = (("accuracy", "accuracy"), ("coverage", "coverage"),
           ("wrong_rate_answered", "wrong among answered"), ("utility", "utility $/q"),
           ("usd_per_q", "cost $/q"), ("searches_per_q", "searches/q"),
           ("refines_per_q", "critic calls/q"), ("aurc", "AURC"), ("ece", "ECE"),
           ("latency_p50_s", "p50 s"), ("latency_p95_s", "p95 s"))
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}thead{background:#f3f3f3}
.plots{display:flex;flex-wrap:wrap;gap:2em}.plots svg{max-width:560px;height:auto}"""


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _label(manifest: Manifest, run: Path) -> str:
    return f"{manifest.graph} ({run.name})" if run.name != manifest.graph else manifest.graph


def _plots(rows: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    curves = Figure(figsize=(6, 4))
    ax = curves.add_subplot()
    for label, s in rows:
        ax.plot(s["risk_coverage"]["coverage"], s["risk_coverage"]["risk"], label=label)
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("risk (wrong among answered)")
    ax.set_title("risk-coverage (answers ranked by confidence)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    points = Figure(figsize=(6, 4))
    bx = points.add_subplot()
    for label, s in rows:
        oracle = label.startswith("oracle")
        bx.scatter([s["usd_per_q"]], [s["accuracy"]], marker="*" if oracle else "o",
                   s=160 if oracle else 40, color="crimson" if oracle else None, zorder=3)
        bx.annotate(label, (s["usd_per_q"], s["accuracy"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    bx.set_xlabel("dollars per question")
    bx.set_ylabel("accuracy (right / all questions)")
    bx.set_title("cost and accuracy (the oracle is the star)")
    return _svg(curves), _svg(points)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(runs: Sequence[tuple[Path, Manifest, list[EvalRecord]]], policy: Policy) -> str:
    """The HTML page for these runs (utility with ``policy``'s reward, penalty, abstain value).

    Raises:
        UserError: No runs, or a run without records.
    """
    if not runs:
        raise UserError("no runs to report")
    rows = []
    for run, manifest, records in runs:
        if not records:
            raise UserError(f"{run} has no records yet")
        rows.append((_label(manifest, run), summarize(records, policy, resamples=200)))
    curves, points = _plots(rows)
    comparison = _table(["graph", "n", *(title for _, title in COLUMNS)],
                        [[label, s["n"], *(s[key] for key, _ in COLUMNS)] for label, s in rows],
                        "comparison (utility = reward x right - penalty x wrong - dollars)")
    matrices = []
    for label, s in rows:
        cols = ["n", "draft", "search", "refine", "answer", "abstain", "right", "wrong",
                "usd_per_q"]
        matrices.append(f"<h3>{html.escape(label)}</h3>" + _table(
            ["class", *cols], [[kind, *(row[c] for c in cols)]
                               for kind, row in s["by_class"].items()]))
    signals = []
    for (label, s), (_, manifest, _) in zip(rows, runs, strict=True):
        # What each recorded signal is: its declaration when the run was made (the manifest),
        # else this process's (knowgate.signals).
        declared = {spec.name: spec for spec in manifest.signals}
        specs = {name: declared.get(name) or SIGNALS.get(name) for name in s["auroc"]}
        signals.append(f"<h3>{html.escape(label)}</h3>" + _table(
            ["signal", "AUROC", "stage", "scale", "producer", "meaning"],
            [[name, auroc, *((spec.stage, spec.scale, spec.producer, spec.meaning)
                             if (spec := specs[name]) is not None else ("", "", "", "undeclared"))]
             for name, auroc in s["auroc"].items()]))
    terms = (f"reward ${policy.reward_usd}, penalty ${policy.penalty_usd}, "
             f"abstain ${policy.abstain_usd}")
    datasets = sorted({m.dataset for _, m, _ in runs})
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>knowgate evaluation"
            f"</title><style>{STYLE}</style></head><body><h1>knowgate evaluation</h1>"
            f"<p>Datasets: {html.escape(', '.join(datasets))}. Utility terms: {terms}.</p>"
            f"<h2>Comparison</h2>{comparison}<h2>Plots</h2><div class='plots'>{curves}{points}"
            "</div><h2>Decisions per class</h2><p>Share of each class's questions that took "
            "each action, and how they ended.</p>" + "".join(matrices) +
            "<h2>Signals</h2><p>How well each recorded signal tells right answers from wrong "
            "ones, and what it is.</p>" + "".join(signals) + "</body></html>")


def write_report(runs: Sequence[tuple[Path, Manifest, list[EvalRecord]]], policy: Policy,
                 out: Path) -> None:
    """Render the page and write it to ``out``."""
    page = render_report(runs, policy)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
