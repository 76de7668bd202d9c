"""The ``knowgate`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from knowgate.api.cli import serve_command
from knowgate.cli_support import (
    ConfigOpt,
    WorldOpt,
    console,
    fail,
    progress,
    session_with_progress,
)
from knowgate.errors import KnowgateError
from knowgate.evals.cli import calibrate_command, eval_app
from knowgate.probe_cli import probe_app

app = typer.Typer(help="knowgate: answer, search, refine or abstain.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
world_app = typer.Typer(help="The embedded knowledge world: build and check it.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")
index_app = typer.Typer(help="Your own documents in a chromadb collection: add and count them.",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")
graph_app = typer.Typer(help="The registered graphs: show their shape.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
role_app = typer.Typer(help="The role factories a role setting can name.", no_args_is_help=True)
app.add_typer(role_app, name="role")
signal_app = typer.Typer(help="The declared signals: stage, scale, producer, meaning.",
                         no_args_is_help=True)
app.add_typer(signal_app, name="signal")
app.add_typer(probe_app, name="probe")
app.add_typer(eval_app, name="eval")
app.command("calibrate")(calibrate_command)
app.command("serve")(serve_command)


@app.callback()
def _quiet_libraries() -> None:
    """Keep the console for knowgate's own progress bars and tables."""
    # transformers draws a bar per model load; knowgate's own rich bars already show progress.
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # litellm's Router logs every failed request itself; knowgate already reports a failure as
    # a step of the trace (and as the exit code), so the CLI keeps its output to that.
    logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)




@world_app.command("build")
def world_build(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the world to.")],
    seed: Annotated[int, typer.Option(help="Generator and training seed.")] = 7,
    facts: Annotated[int | None, typer.Option(help="Evaluated facts (default: the shipped size).")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Cap training epochs (quick worlds).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing world at OUT.")] = False,
    check: Annotated[bool, typer.Option(help="Run `world check` and record it in world.json.")] = True,
    config: ConfigOpt = None,
) -> None:
    """Generate a world, train its two models, index its corpus and check it."""
    from knowgate.settings import load_settings
    from knowgate.worlds.build import BuildPlan, build_world

    try:
        settings = load_settings(config)
        plan = BuildPlan.create(seed=seed, facts=facts, max_epochs=max_epochs)
        with progress() as bars:
            tasks: dict[str, Any] = {}

            def on_progress(name: str, done: int, total: int, figures: dict[str, float]) -> None:
                if name not in tasks:
                    tasks[name] = bars.add_task(f"train {name}", total=total, info="")
                info = f"loss {figures.get('loss', 0):.3f}"
                if "closed_em" in figures:
                    info += f" EM {figures['closed_em']:.3f} read {figures['reading_em']:.3f}"
                bars.update(tasks[name], completed=done, info=info)

            world = build_world(out, plan, progress=on_progress, overwrite=overwrite)
            for name in tasks:  # early stopping leaves bars short of their epoch cap
                bars.update(tasks[name], total=bars.tasks[tasks[name]].completed)
        if check:
            result = _run_check(world, settings)
            world.update_card(check=result)
            _print_check(result)
        console.print(f"world written to {out}")
    except KnowgateError as exc:
        raise fail(exc) from exc


def _run_check(world: Any, settings: Any) -> dict[str, Any]:
    from knowgate.aio import run_sync
    from knowgate.worlds.check import check_world

    with progress() as bars:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "index corpus" if stage == "index" else "measure"
                tasks[stage] = bars.add_task(label, total=total, info="")
            bars.update(tasks[stage], completed=done)

        return run_sync(check_world(world, settings, on_progress=on_progress))


_SHORT_KIND = {"fast-known": "fast", "slow-known": "slow", "searchable": "search",
               "unanswerable": "none"}


def _print_check(result: dict[str, Any]) -> None:
    out = Console()
    for split, figures in result["splits"].items():
        table = Table(
            title=f"{result['world']} / {split} ({figures['questions']} questions)",
            caption="closed book: exact match per class; open book: exact match on searchable "
                    "questions with the gold passage or the searcher's top-k passages",
        )
        table.add_column("model")
        models = figures["models"]
        kinds = list(next(iter(models.values()))["closed_book"])
        ks = list(next(iter(models.values()))["open_book_search"])
        for kind in kinds:
            table.add_column(f"closed\n{_SHORT_KIND.get(kind, kind)}", justify="right")
        table.add_column("open\ngold", justify="right")
        for k in ks:
            table.add_column(f"open\ntop-{k.removeprefix('k=')}", justify="right")
        for name, m in models.items():
            table.add_row(
                name,
                *(f"{m['closed_book'][k]:.3f}" for k in kinds),
                f"{m['open_book_gold']:.3f}",
                *(f"{m['open_book_search'][k]:.3f}" for k in ks),
            )
        out.print(table)
        out.print("retrieval: " + ", ".join(f"{k} {v:.3f}" for k, v in figures["retrieval"].items()))
    bounds = Table(title="bounds (test split)")
    for column in ("requirement", "value", "limit", "ok"):
        bounds.add_column(column)
    for b in result["bounds"]:
        bounds.add_row(b["name"], f"{b['value']:.3f}", f"{b['op']} {b['limit']}",
                       "[green]yes[/green]" if b["passed"] else "[red]NO[/red]")
    out.print(bounds)
    out.print(f"all bounds met: {result['passed']} ({result['seconds']} s)")


@world_app.command("list")
def world_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the worlds as JSON.")] = False,
) -> None:
    """The shipped worlds and those installed packages add: their models (with licences),
    corpus and question splits. A plugin world that failed to load is reported on stderr."""
    from knowgate.worlds.world import DEFAULT_WORLD, World, plugin_worlds, world_names

    installed, failures = plugin_worlds()
    for failure in failures:
        typer.echo(f"error: {failure.message()}", err=True)
    rows = []
    for name in world_names():
        world = World(name)
        rows.append({
            "name": name, "default": name == DEFAULT_WORLD, "plugin": name in installed,
            "path": str(world.path),
            "models": {m: {"source": spec.gguf.name if spec.gguf else spec.dir,
                           "prompt": spec.prompt, "licence": spec.licence,
                           "prices_per_mtok": list(spec.prices)}
                       for m, spec in world.card.local_models.items()},
            "passages": sum(1 for _ in (world.path / "corpus.jsonl").open(encoding="utf-8")),
            "questions": {split: len(world.questions(split)) for split in world.splits},
            "licence": world.card.licence,
        })
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="worlds (`--world NAME`)")
    for column in ("name", "models", "passages", "questions", "licence"):
        table.add_column(column)
    for row in rows:
        models = "\n".join(f"{m}: {v['source']} ({v['licence'] or 'n/a'})"
                           for m, v in row["models"].items())
        questions = ", ".join(f"{k} {v}" for k, v in row["questions"].items())
        table.add_row(row["name"] + (" (default)" if row["default"] else ""), models,
                      str(row["passages"]), questions, row["licence"])
    console.print(table)


@world_app.command("check")
def world_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 when a bound is not met.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Measure the world's models and corpus on the test and paraphrase splits."""
    from knowgate.settings import load_settings
    from knowgate.worlds.world import World

    try:
        settings = load_settings(config, world=world)
        result = _run_check(World(settings.world), settings)
    except KnowgateError as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_check(result)
    if strict and not result["passed"]:
        raise typer.Exit(code=1)


CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", help="chromadb collection (default: KNOWGATE_COLLECTION)."),
]


@index_app.command("add")
def index_add(
    path: Annotated[Path, typer.Argument(help="A .jsonl, .txt or .md file, or a directory of them.")],
    collection: CollectionOpt = None,
    chunk_chars: Annotated[int, typer.Option(help="Most characters in one text chunk.")] = 1000,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add (or update, by id) your documents in a collection the searcher can read."""
    from knowgate.composition import open_collection
    from knowgate.errors import UserError
    from knowgate.settings import load_settings
    from knowgate.tools.ingest import read_documents

    try:
        settings = load_settings(config, world=world, collection=collection)
        # Read and check everything first, so a bad line leaves the collection untouched.
        passages = list(read_documents(path, chunk_chars=chunk_chars))
        if not passages:
            raise UserError(f"no documents found in {path} (.jsonl, .txt, .md or .markdown)")
        searcher = open_collection(settings, create=True)
        with progress() as bars:
            task = bars.add_task(f"index {searcher.name}", total=len(passages), info="")
            added = searcher.add(passages, on_batch=lambda n: bars.advance(task, n))
        total = searcher.count()
    except KnowgateError as exc:
        raise fail(exc) from exc
    typer.echo(f"added {added} passages to {searcher.name!r}; it now holds {total}")
    typer.echo(f"search it with KNOWGATE_COLLECTION={searcher.name}")


@index_app.command("count")
def index_count(collection: CollectionOpt = None, config: ConfigOpt = None,
                world: WorldOpt = None) -> None:
    """Print how many passages a collection holds."""
    from knowgate.composition import open_collection
    from knowgate.settings import load_settings

    try:
        count = open_collection(load_settings(config, world=world, collection=collection)).count()
    except KnowgateError as exc:
        raise fail(exc) from exc
    typer.echo(count)


GraphOpt = Annotated[str, typer.Option("--graph", help="A registered graph name.")]


def _print_result(result: Any) -> None:
    """A human-readable trace of one ``AskResult`` on stdout."""
    out = Console()
    if result.outcome == "answered":
        out.print(f"[bold]{result.answer}[/bold]  (confidence {result.confidence:.3f})")
    elif result.outcome == "abstained":
        out.print(f"[bold]I don't know.[/bold]  (best guess confidence {result.confidence:.3f})")
    else:
        out.print(f"[red]error:[/red] {result.error}")
    out.print(f"path: {' -> '.join(result.path)}")
    out.print(f"cost: ${result.cost_usd:.6f}   latency: {result.latency_s:.3f} s   "
              f"citations: {', '.join(result.citations) or '-'}")
    table = Table("action", "reason", "$", "s", box=None)
    for step in result.steps:
        reason = f"[red]{step.reason}[/red]" if step.error else step.reason
        table.add_row(step.action, reason, f"{step.cost_usd:.6f}", f"{step.latency_s:.3f}")
    out.print(table)


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="The question.")],
    graph: GraphOpt = "triage",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Answer QUESTION or abstain, and show the path taken, confidence, cost and citations."""
    from knowgate.aio import run_sync
    from knowgate.settings import load_settings

    try:
        session = session_with_progress(load_settings(config, world=world))
        result = run_sync(session.ask(question, graph=graph))
    except KnowgateError as exc:
        if as_json:
            typer.echo(json.dumps({"outcome": "error", "error": str(exc), "answer": None,
                                   "confidence": 0.0, "steps": [], "cost_usd": 0.0,
                                   "citations": []}))
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json") | {"path": result.path}))
    else:
        _print_result(result)
    if result.outcome == "error":
        raise typer.Exit(code=1)


@app.command("demo")
def demo(
    per_class: Annotated[int, typer.Option("--per-class", min=1, max=20)] = 1,
    graph: GraphOpt = "triage",
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ask a few of the world's test questions, PER_CLASS of each class (of each relation and
    kind of unanswerable question, in a world whose classes are measured), with their traces."""
    from knowgate.aio import run_sync
    from knowgate.composition import grading_mode
    from knowgate.grading import is_correct
    from knowgate.settings import load_settings
    from knowgate.worlds.world import World

    def group(q: Any) -> str:
        if q.kind is not None:
            return q.kind.value
        return q.relation if q.answers else f"unanswerable ({q.meta.get('unanswerable')})"

    try:
        settings = load_settings(config, world=world)
        questions = World(settings.world).questions("test")
        picked = [q for name in dict.fromkeys(group(q) for q in questions)
                  for q in [x for x in questions if group(x) == name][:per_class]]
        session = session_with_progress(settings)
        mode = grading_mode(settings)
        out = Console()
        for q in picked:
            result = run_sync(session.ask(q.question, graph=graph))
            answered = result.outcome == "answered"
            verdict = ("right" if answered and is_correct(result.answer or "", q.answers, mode)
                       else "wrong" if answered else result.outcome)
            gold = q.answers[0] if q.answers else "none exists"
            out.rule(f"{group(q)}: {q.question}  (gold: {gold}; {verdict})")
            _print_result(result)
    except KnowgateError as exc:
        raise fail(exc) from None


@graph_app.command("show")
def graph_show(name: Annotated[str, typer.Argument(help="A registered graph name.")]) -> None:
    """Print the Mermaid drawing of graph NAME (evaluation graphs included)."""
    from knowgate.evals.graphs import compile_eval_graph

    try:
        typer.echo(compile_eval_graph(name).get_graph().draw_mermaid())
    except KnowgateError as exc:
        raise fail(exc) from None


@graph_app.command("list")
def graph_list() -> None:
    """Print the registered graph names (installed plugins' and the evaluation-only ones
    included); a plugin that failed to load is reported on stderr, naming the package."""
    from knowgate.evals.graphs import eval_graph_names
    from knowgate.graphs.compose import load_plugin_graphs

    for name in eval_graph_names():
        typer.echo(name)
    for failure in load_plugin_graphs():
        typer.echo(f"error: {failure.message()}", err=True)


@role_app.command("list")
def role_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the factories as JSON.")] = False,
) -> None:
    """The role factories (installed plugins' included), the roles each builds, and what its
    argument is; a plugin that failed to load is reported on stderr, naming the package."""
    from knowgate.composition import ROLES

    rows = [{"name": name, "roles": sorted(ROLES.factories[name].roles),
             "description": ROLES.factories[name].description} for name in ROLES.names()]
    for failure in ROLES.load_plugins():
        typer.echo(f"error: {failure.message()}", err=True)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']:<14} {','.join(row['roles']):<34} {row['description']}")


@signal_app.command("list")
def signal_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the signals as JSON.")] = False,
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The declared signals (the settings' trained probes' and installed plugins' included).
    Policy map features no signal declares, and plugins that failed to load, go to stderr."""
    from knowgate.composition import declared_signals, policy_path
    from knowgate.graphs.policy import Policy
    from knowgate.settings import load_settings
    from knowgate.signals import SIGNALS

    try:
        settings = load_settings(config, world=world)
        specs = declared_signals(settings)
        unknown = Policy.load(policy_path(settings)).undeclared()
    except KnowgateError as exc:
        raise fail(exc) from None
    for failure in SIGNALS.load_plugins():
        typer.echo(f"error: {failure.message()}", err=True)
    if unknown:
        typer.echo(f"warning: the policy's maps weigh signals nothing declares: "
                   f"{', '.join(unknown)} (a typo, or a plugin that is not installed)", err=True)
    if as_json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs], indent=2))
        return
    for spec in specs:
        typer.echo(f"{spec.name:<30} {spec.stage:<9} {spec.scale:<7} {spec.producer:<24} "
                   f"{spec.meaning}")


def main() -> None:  # pragma: no cover - console-script shim
    """Entry point for ``python -m knowgate``."""
    app()
