"""``knowgate probe``: label a world split, train the prober's probes, report every signal.

Registered in ``knowgate.cli`` as a sub-app. The work is in ``knowgate.agents.probe_training``
(features, sweep, fit), ``knowgate.agents.probe_report`` (tables, plot) and
``knowgate.worlds.probe_labels`` (labels from the answerer); this module parses options, shows
progress and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from knowgate.cli_support import ConfigOpt, WorldOpt, console, fail, progress
from knowgate.errors import KnowgateError, UserError

probe_app = typer.Typer(help="Probes of the prober: label data, train, report.",
                        no_args_is_help=True)
CONTROL_DIR = "control"
WORLD_MODEL = "world:"

ModelOpt = Annotated[str, typer.Option(
    "--model", help="Model the probes read: `fast` or `slow` (the world's), or a path or id.")]


def resolve_model(model: str, settings: Any) -> tuple[Path | str, str, str]:
    """(what ``LocalLM`` loads, the name recorded in the probe files, the prompt style: the
    world's for its own models, so that probes read the prompts the runtime gives them)."""
    from knowgate.worlds.world import World

    name = model.removeprefix(WORLD_MODEL)
    if name in ("fast", "slow"):
        world = World(settings.world)
        return world.model_dir(name), WORLD_MODEL + name, world.local_model(name).prompt
    return model, model, "plain"


def _bar(total: int, label: str) -> tuple[Any, Any]:
    bars = progress()
    task = bars.add_task(label, total=total, info="")
    return bars, lambda n: bars.advance(task, n)


def _question_ids(path: Path) -> set[str]:
    """The question ids of an eval run folder (its records) or of a dataset file (its items)."""
    if path.is_dir():
        from knowgate.evals.records import read_records

        return {r.id for r in read_records(path)}
    from knowgate.evals.datasets import read_items

    return {item.id for item in read_items(path)}


@probe_app.command("label")
def probe_label(
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    split: Annotated[str, typer.Option(help="World split: calibration, test, paraphrase.")] = "calibration",
    model: Annotated[str, typer.Option(help="World model the answerer runs, for the entity "
                                            "field: fast, slow, or none (a hosted answerer).")] = "fast",
    from_run: Annotated[Path | None, typer.Option(
        "--from-run", help="Label from an explore run's closed-book drafts instead (no model "
                           "call).")] = None,
    exclude: Annotated[Path | None, typer.Option(
        "--exclude", help="Leave out the questions of this eval run folder or dataset file (those "
                          "the policy is calibrated on: the probes then score them out of "
                          "sample).")] = None,
    readings: Annotated[bool, typer.Option(
        "--readings", help="Label the critic's readings after a search instead (its answer "
                           "from the passages found): the data of a probe of those readings, "
                           "trained with --model slow.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run the configured answerer on a world split and write each question with its label
    (or take the drafts an explore run recorded, ``--from-run``; or, ``--readings``, the
    critic's answers read from what a search found)."""
    from knowgate.agents.probe_training import write_records
    from knowgate.aio import run_sync
    from knowgate.composition import build_context
    from knowgate.settings import load_settings
    from knowgate.worlds.probe_labels import label_readings, label_split
    from knowgate.worlds.world import World

    try:
        skip = _question_ids(exclude) if exclude is not None else set()
        if from_run is not None:
            from knowgate.evals.probe_labels import labels_from_run, readings_from_run

            found = readings_from_run(from_run) if readings else labels_from_run(from_run)
            records = [r for r in found if r.id not in skip]
            write_records(out, records)
            console.print(f"{len(records)} questions, {sum(r.correct for r in records)} "
                          f"answered right, written to {out}")
            return
        settings = load_settings(config, world=world, prober="off")
        world = World(settings.world)
        context = build_context(settings)
        total = sum(q.id not in skip for q in world.questions(split))
        bars, advance = _bar(total, f"label {split}")
        with bars:
            if readings:
                if context.searcher is None or context.critic is None:
                    raise UserError("--readings needs a searcher and a critic")
                records = run_sync(label_readings(
                    world, split, context.searcher, context.critic,
                    context.evidence_passages, progress=advance, skip=skip))
            else:
                records = run_sync(label_split(world, split, context.answerer,
                                               None if model == "none" else model,
                                               progress=advance, skip=skip))
        write_records(out, records)
    except KnowgateError as exc:
        raise fail(exc) from exc
    right = sum(r.correct for r in records)
    console.print(f"{len(records)} questions, {right} answered right, written to {out}")


@probe_app.command("train")
def probe_train(
    data: Annotated[Path, typer.Option("--data", help="Labelled JSONL (`knowgate probe label`).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the probes to.")],
    model: ModelOpt = "fast",
    control: Annotated[bool, typer.Option(help="Also train on an untrained copy (the control).")] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs per forward pass.")] = 64,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Sweep layers x poolings x families, keep the best probe per stage, fit the combiners.

    Records with passages (``probe label --readings``) train one probe of those readings
    instead (``critic_reading_probe``, a set that ``reads: evidence``)."""
    from knowgate.agents.local_lm import LocalLM
    from knowgate.agents.probe_training import (
        extract,
        read_records,
        save,
        save_reading,
        sweep_specs,
        train_probes,
        train_reading_probe,
        untrained_copy,
    )
    from knowgate.settings import load_settings

    try:
        settings = load_settings(config, world=world)
        records = read_records(data)
        reading = any(r.passages for r in records)
        if reading and not all(r.passages for r in records):
            raise UserError(f"{data}: some records carry passages and some do not: train "
                            "probes of readings and of questions from separate files")
        source, name, style = resolve_model(model, settings)
        lm = LocalLM(source, settings.device, prompt_style=style,
                     prefill_cache_mb=0)  # no pass is reused
        targets = [(out, lm, name)]
        if control:
            targets.append((out / CONTROL_DIR, untrained_copy(lm), f"untrained copy of {name}"))
        for directory, reader, label in targets:
            bars, advance = _bar(len(records), f"passes ({label})")
            with bars:
                features = extract(reader, records, batch_size, self_eval=False, progress=advance)
            note = {"data": data.name, "records": len(records)}
            if reading:
                spec, cells = train_reading_probe(features, label)
                save_reading(spec, cells, directory, label, note,
                             sweep_specs(features, cells, label))
                console.print(f"{label}: reading probe {spec.features} layer {spec.layer} "
                              f"{spec.pooling}, validation AUROC {spec.validation_auroc}")
                continue
            trained = train_probes(features, label)
            save(trained, sweep_specs(features, trained.sweep, label), directory, label, note)
            for stage, spec in trained.probes.items():
                console.print(f"{label}: {stage} probe {spec.features} layer {spec.layer} "
                              f"{spec.pooling}, validation AUROC {spec.validation_auroc}")
            for stage, spec in trained.combiners.items():
                console.print(f"{label}: {stage} combined, validation AUROC "
                              f"{spec.validation_auroc}")
    except KnowgateError as exc:
        raise fail(exc) from exc
    console.print(f"probes written to {out}")


@probe_app.command("report")
def probe_report(
    probes: Annotated[Path, typer.Option("--probes", help="Directory `probe train` wrote.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled JSONL to measure on (held out).")],
    png: Annotated[Path | None, typer.Option("--png", help="Write the AUROC-by-layer plot here.")] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the one the probes name).")] = None,
    self_eval: Annotated[bool, typer.Option(help="Also the training-free self-evaluation.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs per forward pass.")] = 64,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """AUROC and PRR of every signal and of the probes by layer, beside the untrained control."""
    from knowgate.agents.local_lm import LocalLM
    from knowgate.agents.probe_report import layer_table, plot_layers, score_all, signal_table
    from knowgate.agents.probe_training import extract, load_sweep, read_records, untrained_copy
    from knowgate.agents.probes import (
        MANIFEST,
        CombinerSpec,
        LinearProbeSpec,
        Manifest,
        read_spec,
    )
    from knowgate.settings import load_settings

    def chosen(directory: Path) -> tuple[Manifest, dict[str, Any], dict[str, Any]]:
        manifest = read_spec(directory / MANIFEST, Manifest)
        specs = [read_spec(directory / n, LinearProbeSpec) for n in manifest.probes]
        combiners = [read_spec(directory / n, CombinerSpec) for n in manifest.combiners]
        return manifest, {s.stage: s for s in specs}, {c.stage: c for c in combiners}

    try:
        settings = load_settings(config, world=world)
        records = read_records(data)
        manifest, specs, combiners = chosen(probes)
        source, name, style = resolve_model(model or manifest.model, settings)
        lm = LocalLM(source, settings.device, prompt_style=style,
                     prefill_cache_mb=0)  # no pass is reused
        bars, advance = _bar(len(records), f"passes ({name})")
        with bars:
            features = extract(lm, records, batch_size, self_eval=self_eval, progress=advance)
        trained = score_all(features, specs, combiners)
        control_features, control_scored, control_sweep = None, None, []
        if (probes / CONTROL_DIR / MANIFEST).is_file():
            _, c_specs, c_combiners = chosen(probes / CONTROL_DIR)
            bars, advance = _bar(len(records), "passes (untrained control)")
            with bars:
                control_features = extract(untrained_copy(lm), records, batch_size,
                                           self_eval=self_eval, progress=advance)
            control_scored = score_all(control_features, c_specs, c_combiners)
            control_sweep = load_sweep(probes / CONTROL_DIR)
        signals = signal_table(trained, control_scored)
        layers = layer_table(features, load_sweep(probes), control_features, control_sweep)
        if png is not None:
            plot_layers(layers, png, f"probes of {name} on {data.name}: AUROC by layer")
    except KnowgateError as exc:
        raise fail(exc) from exc
    result = {"model": name, "data": data.name, "records": len(records),
              "right": int(features.labels.sum()),
              "chosen": {s: {"family": p.features, "layer": p.layer, "pooling": p.pooling}
                         for s, p in specs.items()},
              "signals": signals, "layers": layers}
    if as_json:
        typer.echo(json.dumps(result, indent=1))
    else:
        _print_report(result)
    if png is not None:
        console.print(f"plot written to {png}")


def _print_report(result: dict[str, Any]) -> None:
    out = Console()
    table = Table(title=f"{result['model']} on {result['data']} ({result['records']} questions, "
                        f"{result['right']} right)",
                  caption="AUROC of 'the answerer is right'; known/unseen: right answers against "
                          "wrong ones about known / unseen entities; within relation: AUROC "
                          "inside each relation, averaged; relation_only: the relation's "
                          "right-rate as the score; control: untrained copy")
    for column in ("signal", "AUROC", "PRR", "known", "unseen", "within relation",
                   "control AUROC", "control PRR"):
        table.add_column(column, justify="left" if column == "signal" else "right")
    for row in result["signals"]:
        table.add_row(row["signal"], *(_cell(row.get(k)) for k in (
            "auroc", "prr", "auroc_known_entity", "auroc_unseen_entity", "auroc_within_relation",
            "control_auroc", "control_prr")))
    out.print(table)
    layers = Table(title="probes by layer (test AUROC; control in brackets)")
    for column in ("stage", "family", "pooling", "layer", "AUROC", "control"):
        layers.add_column(column)
    for row in result["layers"]:
        layers.add_row(row["stage"], row["family"], row["pooling"], str(row["layer"]),
                       _cell(row["auroc"]), _cell(row.get("control_auroc")))
    out.print(layers)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
