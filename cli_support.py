"""What every ``knowgate`` sub-command module shares: the console, the error exit, the progress
bar and the ``--config`` option. It imports nothing of knowgate's sub-commands, so ``cli.py`` and
the modules it registers (``probe_cli``, ``evals.cli``, ``api.cli``) can all import it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from knowgate.errors import KnowgateError

console = Console(stderr=True)
"""Progress, tables and errors go to stderr, so stdout carries only results (``--json``)."""

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings TOML file.")]
WorldOpt = Annotated[str | None, typer.Option(
    "--world", help="World: a shipped world's name (`knowgate world list`) or a directory.")]


def fail(exc: KnowgateError) -> typer.Exit:
    """Print ``exc`` as an error and return the exit (code 2) to raise."""
    # soft_wrap: a one-line error stays one line (in logs, and for a grep), whatever the width.
    console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
    return typer.Exit(code=2)


def progress() -> Progress:
    """A progress bar with an ``info`` field for running figures."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


def session_with_progress(settings: Any) -> Any:
    """A ``Knowgate`` session whose roles are built now, with a progress bar per first-run
    stage (assembling and converting a packaged model, indexing the corpus): on the factbook
    world a first run takes minutes, and a silent one looks hung. The bars appear only when a
    stage runs, so a warm start prints nothing."""
    from knowgate.composition import build_context
    from knowgate.runtime import Knowgate

    bars: Progress | None = None
    tasks: dict[str, Any] = {}

    def on_progress(stage: str, done: int, total: int) -> None:
        nonlocal bars
        if bars is None:
            bars = progress()
            bars.start()
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total, info="")
        bars.update(tasks[stage], completed=done, total=total)

    try:
        context = build_context(settings, on_progress)
    finally:
        if bars is not None:
            bars.stop()
    return Knowgate(settings, context=context)
