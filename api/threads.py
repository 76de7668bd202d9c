"""Conversation threads stored by a LangGraph checkpointer.

A thread id maps to a LangGraph thread. Each turn is one graph run checkpointed under it; the
run's state holds the history it was given, the question and the outcome, so the next turn's
history is read back from the latest checkpoint (``history``). SQLite by default, PostgreSQL
when ``KNOWGATE_CHECKPOINT_URL`` is set.

Threads belong to the API key that made them (``owned_thread``): the checkpointer stores each
under the key's digest and the client's id, so no history crosses keys.

The concurrency rule: one request per thread at a time. A second request on a thread that is
still running is refused with 409 (``thread_busy``) rather than queued, so two turns never
interleave and a client never waits on a turn it cannot see. The rule holds per server process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from knowgate.api.errors import ApiError
from knowgate.api.schemas import ABSTAIN_TEXT
from knowgate.graphs.state import TriageState
from knowgate.roles import Turn
from knowgate.runtime import checkpoint_serde
from knowgate.settings import Settings

THREAD_HEADER = "X-Knowgate-Thread"
_THREAD_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def owned_thread(key: str, thread_id: str) -> str:
    """The id ``thread_id`` is stored under for the API key ``key``: a digest of the key, then
    the client's id. Threads are namespaced by key, so another key naming the same id reaches
    another thread (an empty one), never the first key's turns, and cannot hold it busy."""
    owner = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{owner}/{thread_id}"


def check_thread_id(value: str) -> str:
    """A valid thread id (1-128 of ``A-Z a-z 0-9 _ . : -``).

    Raises:
        ApiError: 400 for anything else.
    """
    if not _THREAD_ID.fullmatch(value):
        raise ApiError(400, "a thread id has 1-128 characters from A-Z a-z 0-9 _ . : -",
                       code="invalid_thread_id", param="metadata.thread_id")
    return value


@asynccontextmanager
async def open_checkpointer(settings: Settings) -> AsyncIterator[Any]:
    """The server's checkpointer, open for the server's lifetime.

    PostgreSQL (a connection pool) when ``settings.checkpoint_url`` is set, else SQLite at
    ``settings.checkpoint_db`` or ``<data_dir>/threads.sqlite``.
    """
    if settings.checkpoint_url:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        # The settings AsyncPostgresSaver.from_conn_string uses, on a pool so that concurrent
        # turns of different threads do not wait on one connection.
        # A short wait for a connection turns a database outage into a prompt 503.
        async with AsyncConnectionPool(
            settings.checkpoint_url, min_size=1, max_size=10, open=False, timeout=5.0,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        ) as pool:
            saver = AsyncPostgresSaver(pool, serde=checkpoint_serde())
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.checkpoint_db or settings.data_dir / "threads.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        yield AsyncSqliteSaver(conn, serde=checkpoint_serde())


class Threads:
    """Per-thread locks and stored history over one checkpointer."""

    def __init__(self, checkpointer: Any) -> None:
        self.checkpointer = checkpointer
        self._busy: set[str] = set()

    def hold(self, thread_id: str) -> None:
        """Hold ``thread_id`` for one turn (``release`` it when the turn ends).

        Raises:
            ApiError: 409 when another turn on the thread is running.
        """
        if thread_id in self._busy:
            raise ApiError(409, f"thread {thread_id!r} is answering another request; retry "
                                "when it has finished", type="invalid_request_error",
                           code="thread_busy", param="metadata.thread_id")
        self._busy.add(thread_id)

    def release(self, thread_id: str) -> None:
        """Let the next turn of ``thread_id`` in."""
        self._busy.discard(thread_id)

    async def history(self, thread_id: str) -> list[Turn]:
        """The thread's turns so far, oldest first (empty for a new thread).

        A turn that was cut off before it ended (a timeout, a client gone) left no answer, so its
        question is left out.
        """
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        saved = await self.checkpointer.aget_tuple(config)
        if saved is None:
            return []
        values = saved.checkpoint.get("channel_values", {})
        if "question" not in values:
            return []
        state = TriageState.model_validate(
            {name: values[name] for name in TriageState.model_fields if name in values})
        turns = list(state.history)
        if state.outcome is not None:
            answer = state.outcome.answer if state.outcome.kind == "answered" else None
            turns += [Turn(role="user", content=state.question),
                      Turn(role="assistant", content=answer or ABSTAIN_TEXT)]
        return turns


def merge_history(stored: Sequence[Turn], sent: Sequence[Turn]) -> list[Turn]:
    """The history a turn sees: the thread's stored turns, then what the request sent before
    its question, unless the request simply repeats the stored conversation (clients that send
    the whole conversation every time)."""
    stored, sent = list(stored), list(sent)
    if sent[:len(stored)] == stored:
        return sent
    if stored[:len(sent)] == sent:
        return stored
    return stored + sent
