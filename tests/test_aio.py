"""run_sync: the one sync-to-async bridge works with and without a running event loop."""

from __future__ import annotations

import asyncio
import threading

from knowgate.aio import run_sync


async def _where() -> tuple[str, int]:
    await asyncio.sleep(0)
    return threading.current_thread().name, 42


def test_outside_a_loop_runs_in_this_thread() -> None:
    name, value = run_sync(_where())
    assert value == 42 and name == threading.current_thread().name


async def test_inside_a_loop_runs_on_a_worker_thread() -> None:
    name, value = run_sync(_where())
    assert value == 42 and name != threading.current_thread().name
