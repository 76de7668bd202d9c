"""Shared pieces of the chat-server tests: fake roles, a served app, and system tools that must
exist under CI."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from knowgate.api.app import create_app
from knowgate.api.serve import ServerThread
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Draft, Passage, Turn
from knowgate.settings import Settings, load_settings
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedSearcher

Q = "Where was Ada Vell born?"
GOLD = Passage(id="p1", text="Ada Vell was born in Kedal.", score=1.5, support=1.0)
PRICES = Prices(draft=0.000003, search=0.00003, refine=0.0003)


def require_tool(found: bool, what: str) -> None:
    """Skip with a visible reason when ``what`` is missing, but fail under CI (``CI=true``),
    where ``.ci/run`` installs it."""
    if found:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required under CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed here")


def which(name: str) -> str | None:
    """Path of an executable on PATH."""
    return shutil.which(name)


# Flags for Debian's chromium on a machine with no outside network: without the background
# networking ones it keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium, for Playwright's ``executable_path`` (see ``require_tool``)."""
    path = which("chromium") or which("chromium-browser")
    require_tool(path is not None, "Debian's chromium")
    assert path is not None
    return path


@dataclass
class EchoAnswerer:
    """An ``Answerer`` that answers with the history it was given, so a test can read what
    the graph saw; ``delay_s`` holds every answer back (concurrency tests)."""

    delay_s: float = 0.0
    calls: list[tuple[str, list[Turn]]] = field(default_factory=list)

    async def __call__(self, question: str, evidence: Sequence[Passage] = (),
                       history: Sequence[Turn] = ()) -> Draft:
        self.calls.append((question, list(history)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        heard = " | ".join(f"{t.role}: {t.content}" for t in history) or "nothing"
        return Draft(answer=f"heard {heard}", confidence=0.99, label="sure",
                     cost_usd=0.000003)


def triage_context(answerer: Any = None, searcher: Any = None, critic: Any = None,
                   timeout_s: float = 5.0) -> TriageContext:
    """Scripted roles where ``Q`` is searched and answered from ``GOLD`` by default."""
    return TriageContext(
        answerer=answerer or ScriptedAnswerer(closed={Q: ("Badal", 0.4)},
                                              opened={Q: ("Kedal", 0.99)}),
        searcher=searcher or ScriptedSearcher(results={Q: ([GOLD], 1.0)}),
        critic=critic or ScriptedCritic(), policy=Policy.load(), prices=PRICES,
        role_timeout_s=timeout_s)


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test server: its own data dir (threads go to SQLite there)."""
    return load_settings(data_dir=tmp_path, **overrides)


@contextmanager
def serving(settings: Settings, context: TriageContext | None = None,
            **kwargs: Any) -> Iterator[ServerThread]:
    """``create_app(settings, context=...)`` on uvicorn at 127.0.0.1, an ephemeral port."""
    with ServerThread(create_app(settings, context=context, **kwargs)) as server:
        yield server


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries out of PATH, one directory per major version.
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@dataclass
class Postgres:
    """A running test server: its URL, and ``stop()`` to take it down early (an outage)."""

    url: str
    stop: Any


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throw-away PostgreSQL server on 127.0.0.1 (an ephemeral port).

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` OS user, in a
    fresh directory that user owns. Skips (fails under CI) when PostgreSQL is not installed.
    """
    import subprocess
    import tempfile

    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    require_tool(bool(initdb and pg_ctl), "PostgreSQL (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="knowgate-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    try:
        run(str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync")
        run(str(pg_ctl), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "30",
            "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off", "start")
        stopped = []

        def stop() -> None:
            if not stopped:
                stopped.append(True)
                run(str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")

        try:
            yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", stop)
        finally:
            stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
