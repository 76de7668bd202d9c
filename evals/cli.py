"""``knowgate eval run | summary | report`` and ``knowgate calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from knowgate.cli_support import ConfigOpt, WorldOpt, console, fail
from knowgate.errors import KnowgateError

eval_app = typer.Typer(help="Batch evaluation: run graphs over datasets, summarise, report.",
                       no_args_is_help=True)

PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Policy file (default: the settings' policy, else the shipped one).")]


@eval_app.command("run")
def eval_run(
    dataset: Annotated[str, typer.Option(help="JSONL file, or a world split (test, calibration, "
                                              "paraphrase).")],
    graph: Annotated[str, typer.Option(help="Registered graph (triage, baselines, oracle; "
                                            "explore: triage with --explore).")],
    out: Annotated[Path, typer.Option(help="Run folder; an existing one is resumed.")],
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="Questions in flight.")] = 16,
    limit: Annotated[int | None, typer.Option(min=1, help="First N items only.")] = None,
    sample: Annotated[int | None, typer.Option(min=1, help="A seeded random N of the items "
                                                           "(the same N for every graph).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 5,
    policy: PolicyOpt = None,
    cache: Annotated[Path | None, typer.Option(help="Response cache (SQLite); default in the "
                                                    "data dir.")] = None,
    judge: Annotated[str | None, typer.Option(help="Grade with this litellm model "
                                                   "(CORRECT / INCORRECT / NOT_ATTEMPTED).")] = None,
    backend: Annotated[str, typer.Option(help="local, or ray (shards over a Ray cluster).")] = "local",
    workers: Annotated[int, typer.Option(min=1, max=256, help="Ray actors.")] = 2,
    explore: Annotated[bool, typer.Option(
        "--explore", help="Also walk every choice the graph lets the policy make and keep the "
                          "role calls, for knowgate calibrate and eval oracle.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run GRAPH over DATASET into OUT: one JSON record per question, resumable."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from knowgate.aio import run_sync
    from knowgate.evals.datasets import load_dataset
    from knowgate.evals.records import EvalRecord
    from knowgate.evals.runner import run_eval
    from knowgate.settings import load_settings

    progress = Progress(TextColumn(f"[bold]{graph}[/bold]"), BarColumn(), MofNCompleteColumn(),
                        TaskProgressColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    tally = {"usd": 0.0, "answered": 0, "abstained": 0, "error": 0}
    task = progress.add_task("run", total=None, info="")

    def info() -> str:
        return (f"${tally['usd']:.5f}  answered {tally['answered']}  abstained "
                f"{tally['abstained']}  errors {tally['error']}")

    def on_start(total: int, skipped: int) -> None:
        progress.update(task, total=total, completed=skipped,
                        info=f"(resumed: {skipped} done) " + info() if skipped else info())

    def on_record(record: EvalRecord) -> None:
        tally["usd"] += record.cost_usd
        tally[record.outcome] += 1
        speed = progress.tasks[0].speed
        rate = f"  {speed:.1f} q/s" if speed else ""
        progress.update(task, advance=1, info=info() + rate)

    try:
        settings = load_settings(config, world=world, policy=policy)
        data = load_dataset(dataset, settings, limit, sample=sample, seed=seed)
        with progress:
            stats = run_sync(run_eval(data, graph, out, settings, concurrency=concurrency,
                                      cache_path=cache, judge=judge, backend=backend,
                                      workers=workers, on_record=on_record, on_start=on_start,
                                      explore=explore))
    except KnowgateError as exc:
        raise fail(exc) from None
    console.print(f"{stats.done} question(s) run, {stats.skipped} already done, in "
                  f"{stats.seconds:.1f} s; response cache: {stats.cache_hits} hit(s), "
                  f"{stats.cache_misses} paid call(s); records in {out}")


def _load(runs: list[Path], policy: Path | None, config: Path | None,
          world: str | None = None) -> tuple[Any, list[Any]]:
    from knowgate.composition import policy_path
    from knowgate.evals.records import read_manifest, read_records
    from knowgate.graphs.policy import Policy
    from knowgate.settings import load_settings

    settings = load_settings(config, world=world, policy=policy)
    return Policy.load(policy_path(settings)), [(run, read_manifest(run), read_records(run))
                                          for run in runs]


@eval_app.command("oracle")
def eval_oracle(
    explore: Annotated[Path, typer.Argument(help="A run folder made with --explore.")],
    out: Annotated[Path, typer.Option(help="Folder for the empirical oracle's records.")],
) -> None:
    """The empirical oracle of an explore run (the cheapest path that produced a right answer,
    else abstain, at the prices the run paid), each record classed by measurement: a run folder
    that `eval summary` and `eval report` read like any other."""
    from knowgate.errors import UserError
    from knowgate.evals.oracle import ORACLE_GRAPH, oracle_records
    from knowgate.evals.records import MANIFEST, RECORDS, read_manifest, read_records

    try:
        manifest = read_manifest(explore)
        if not manifest.explore:
            raise UserError(f"{explore} is a run of {manifest.graph!r} without --explore")
        records = oracle_records(read_records(explore))
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text(manifest.model_copy(update={"graph": ORACLE_GRAPH,
                                                                  "explore": False})
                                    .model_dump_json(indent=2), encoding="utf-8")
        (out / RECORDS).write_text("".join(r.model_dump_json() + "\n" for r in records),
                                   encoding="utf-8")
    except KnowgateError as exc:
        raise fail(exc) from None
    classes = {k: sum(r.kind == k for r in records) for k in sorted({r.kind or "" for r in records})}
    console.print(f"{len(records)} oracle record(s) in {out}; measured classes: {classes}")


@eval_app.command("summary")
def eval_summary(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    alpha: Annotated[float | None, typer.Option(help="Also check a risk guarantee: the share "
                                                     "of bootstrap resamples whose wrong-answer "
                                                     "rate among answered is <= ALPHA.")] = None,
    policy: PolicyOpt = None,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Metrics of a run (the utility uses the policy's reward, penalty and abstain value)."""
    from knowgate.evals.metrics import summarize

    try:
        pol, [(_, manifest, records)] = _load([run], policy, config, world)
    except KnowgateError as exc:
        raise fail(exc) from None
    summary = {"graph": manifest.graph, "dataset": manifest.dataset,
               **summarize(records, pol, alpha=alpha)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    out = Console()
    table = Table(title=f"{manifest.graph} on {manifest.dataset} ({summary['n']} questions)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    ci = summary.get("ci95", {})
    for key in ("accuracy", "coverage", "accuracy_answered", "wrong_rate_answered", "wrong_rate",
                "utility", "usd_per_q", "searches_per_q", "refines_per_q", "latency_p50_s",
                "latency_p95_s", "aurc", "ece", "brier", "errors", "grading_errors"):
        table.add_row(key, str(summary[key]), str(ci.get(key, "")))
    out.print(table)
    if "guarantee" in summary:
        g = summary["guarantee"]
        out.print(f"wrong-answer rate among answered <= {g['alpha']} in "
                  f"{g['share_of_resamples_within']:.1%} of {g['resamples']} bootstrap resamples")
    out.print("AUROC: " + ", ".join(f"{k} {v}" for k, v in summary["auroc"].items()))
    by_class = Table(title="per class: share of questions taking each action, and results")
    columns = ["n", "draft", "search", "refine", "answer", "abstain", "right", "wrong", "usd_per_q"]
    by_class.add_column("class")
    for c in columns:
        by_class.add_column(c, justify="right")
    for kind, row in summary["by_class"].items():
        by_class.add_row(kind, *(str(row[c]) for c in columns))
    out.print(by_class)


@eval_app.command("report")
def eval_report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to compare.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")],
    policy: PolicyOpt = None,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """One self-contained HTML page comparing runs: table, curves, cost-accuracy, decisions."""
    from knowgate.evals.report import write_report

    try:
        pol, loaded = _load(runs, policy, config, world)
        write_report(loaded, pol, out)
    except KnowgateError as exc:
        raise fail(exc) from None
    console.print(f"wrote {out}")


def calibrate_command(
    run: Annotated[Path, typer.Argument(help="A run made with --explore on a calibration "
                                              "split, of the graph to calibrate for.")],
    out: Annotated[Path, typer.Option(help="Policy file to write.")],
    mode: Annotated[str, typer.Option(help="utility (max expected utility) or risk "
                                           "(wrong-answer rate among answered <= alpha "
                                           "with probability >= 1 - delta).")] = "utility",
    alpha: Annotated[float, typer.Option(help="Risk mode: the error rate bound.")] = 0.05,
    delta: Annotated[float, typer.Option(help="Risk mode: the allowed failure chance.")] = 0.1,
    base: Annotated[Path | None, typer.Option(help="Policy whose features, rewards and bounds "
                                                   "are kept (default: the shipped one).")] = None,
    other_roles: Annotated[bool, typer.Option(
        "--allow-other-roles", help="Fit even when the run was made with other roles or "
                                    "another world than the settings name.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fit a policy (P(correct) maps and their fallbacks, success rates, search-first routing,
    answer threshold) from an explore run of any graph that uses the policy, made with the
    roles the settings name; every policy tried is replayed through that graph."""
    from knowgate.composition import declared_signals, estimate_prices, policy_path
    from knowgate.errors import UserError
    from knowgate.evals.calibrate import calibrate, roles_changed
    from knowgate.evals.records import read_manifest
    from knowgate.graphs.policy import Policy
    from knowgate.settings import load_settings

    try:
        if mode not in ("utility", "risk"):
            raise UserError(f"unknown mode {mode!r}; choose utility or risk")
        settings = load_settings(config, world=world)
        manifest = read_manifest(run)
        changed = roles_changed(manifest, settings)
        if changed and not other_roles:
            # The maps weigh what these roles' signals mean; another role's mean something else.
            raise UserError(
                f"{run} was made with other roles than the settings name ({'; '.join(changed)})"
                ": a policy fitted on it would misjudge the roles you run. Make an explore run "
                f"with these settings first: knowgate eval run --graph {manifest.graph} "
                f"--explore --dataset {manifest.dataset} --out NEW_RUN, then knowgate "
                "calibrate NEW_RUN (--allow-other-roles fits this run anyway)")
        # The settings' trained probes declare their signals as they load: calibrate tries a
        # declared signal in the maps it is declared for, so they must be read first.
        declared_signals(settings)
        policy, report = calibrate(run, mode, Policy.load(base or policy_path(settings)),
                                   estimate_prices(settings),  # type: ignore[arg-type]
                                   alpha=alpha, delta=delta)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except KnowgateError as exc:
        raise fail(exc) from None
    typer.echo(json.dumps(report, indent=2))
    console.print(f"wrote {out}")
