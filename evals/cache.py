"""The response cache of batch runs: every paid call (LLM completion, search) is kept in SQLite.

A rerun, a resumed run or a Ray worker asks the cache first, so no paid call repeats. Keys are
sha256 of the call: for completions the model, the messages and every parameter; for searches
the collection, the normalised query and ``k``. A cached response is replayed with the cost it
had when it was paid, so records of a resumed run equal those of an uninterrupted one.

Why a wrapper at the Router and not ``litellm.cache``: litellm's own cache can be backed by a
custom ``BaseCache`` (``litellm.cache = Cache(); litellm.cache.cache = MyCache()``), but in the
pinned litellm (1.106.2) every cache *hit* imports ``litellm.proxy`` pass-through modules that
need ``soundfile``, which is not a dependency of litellm's SDK, so hits raise
``ModuleNotFoundError``; it is also process-global state, which knowgate avoids.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from knowgate.errors import UserError
from knowgate.graphs.nodes import TriageContext
from knowgate.roles import Passage


def cache_key(kind: str, payload: dict[str, Any]) -> str:
    """sha256 of ``kind`` and the JSON of ``payload`` (keys sorted)."""
    text = json.dumps({"kind": kind, **payload}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite table of paid responses, safe for several processes (WAL, busy timeout).

    Args:
        path: The SQLite file (created with its folder).

    Attributes:
        misses: Paid calls made through this object (a hit costs nothing and is not counted).
        hits: Calls answered from the cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit reaches the OS before put() returns, which is what survives a killed
            # process; syncing the disk on every call (FULL) would only guard against power loss.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, "
                             "kind TEXT NOT NULL, value TEXT NOT NULL, cost_usd REAL NOT NULL, "
                             "created REAL NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"cannot open the response cache {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[tuple[str, float]]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[str, float] | None:
        """The stored value and its cost, or None."""
        with self._lock:
            row = self._db.execute("SELECT value, cost_usd FROM responses WHERE key = ?",
                                   (key,)).fetchone()
        return (row[0], float(row[1])) if row else None

    def put(self, key: str, kind: str, value: str, cost_usd: float) -> None:
        """Store a paid response; committed before returning, so a crash right after keeps it."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?)",
                             (key, kind, value, cost_usd, time.time()))
            self._db.commit()

    async def through(self, key: str, kind: str,
                      pay: Callable[[], Awaitable[tuple[str, float]]]) -> tuple[str, float, bool]:
        """The cached ``(value, cost)`` for ``key``, or ``pay()`` once and store it.

        Concurrent callers of one key share a single paid call. Returns ``(value, cost, hit)``.
        """
        found = self.get(key)
        if found is not None:
            self.hits += 1
            return found[0], found[1], True
        pending = self._inflight.get(key)
        if pending is not None:
            value, cost = await asyncio.shield(pending)
            self.hits += 1
            return value, cost, True
        future: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, cost = await pay()
            self.misses += 1
            pending = _PENDING.get()
            if pending is None:
                self.put(key, kind, value, cost)
            else:  # stored once the role has used it (``UsableOnly``)
                pending.append((key, kind, value, cost))
            future.set_result((value, cost))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody awaits does not warn
            raise
        finally:
            del self._inflight[key]
        return value, cost, False

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


# The replies paid during one role call, held back until the role has used them: a reply the
# role could not use (unparseable, schema-invalid) is never stored, so a rerun asks again
# instead of replaying it for ever.
_PENDING: contextvars.ContextVar[list[tuple[str, str, str, float]] | None] = \
    contextvars.ContextVar("knowgate_cache_pending", default=None)


class UsableOnly:
    """A role whose paid replies reach the cache only when the role call succeeds.

    A role raises ``RoleError`` when it cannot use a reply (after its own repair turn); the
    replies of that call are then dropped, not stored. Every other attribute is the role's.
    """

    def __init__(self, role: Any, cache: ResponseCache) -> None:
        self.role = role
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.role, name)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the role; store the replies it paid for once it has returned."""
        pending: list[tuple[str, str, str, float]] = []
        token = _PENDING.set(pending)
        try:
            result = await self.role(*args, **kwargs)
        finally:
            _PENDING.reset(token)
        for entry in pending:
            self.cache.put(*entry)
        return result


class CachedRouter:
    """A litellm Router whose ``acompletion`` goes through a ``ResponseCache``.

    Only successful responses are stored; errors are not (a retry may succeed). Inside a
    ``UsableOnly`` role call, responses are stored only if the role could use them.
    """

    def __init__(self, router: Any, cache: ResponseCache) -> None:
        self.router = router
        self.cache = cache

    def __getattr__(self, name: str) -> Any:  # everything else is the Router's own
        return getattr(self.router, name)

    async def acompletion(self, model: str, messages: list[dict[str, Any]],
                          **params: Any) -> Any:
        """``Router.acompletion``, answered from the cache when this exact call was paid."""
        from knowgate.agents.litellm_setup import import_litellm
        from knowgate.agents.llm import _cost

        litellm = import_litellm()
        key = cache_key("completion", {"model": model, "messages": messages, "params": params})

        async def pay() -> tuple[str, float]:
            response = await self.router.acompletion(model=model, messages=messages, **params)
            return response.model_dump_json(), _cost(response)

        value, cost, _ = await self.cache.through(key, "completion", pay)
        response = litellm.ModelResponse(**json.loads(value))
        # The cost it had when paid: what the question costs, whether or not this run paid it.
        response._hidden_params = {**(response._hidden_params or {}), "response_cost": cost}
        return response


class CachedSearchBackend:
    """A search backend (``SearchBackend`` protocol) whose results are cached by query and k."""

    def __init__(self, backend: Any, cache: ResponseCache) -> None:
        self.backend = backend
        self.cache = cache

    @property
    def accepts_exclude(self) -> bool:
        """Whether the wrapped backend drops excluded passages itself."""
        from knowgate.tools.search_role import _takes_exclude

        return _takes_exclude(self.backend)

    async def search(self, query: str, k: int,
                     exclude: Callable[[Passage], bool] | None = None) -> list[Passage]:
        """The backend's top-``k`` passages for ``query``, from the cache when searched before
        (``exclude`` is passed on when the backend takes it)."""
        from knowgate.tools.search_role import _takes_exclude

        # The collection is part of the key: one cache file serves runs over several indexes,
        # and one index's results must never answer a search of another. So is the exclusion.
        passes = exclude is not None and _takes_exclude(self.backend)
        key = cache_key("search", {"query": " ".join(query.split()), "k": k,
                                   "collection": getattr(self.backend, "name", None),
                                   **({"exclude": getattr(exclude, "__name__", "custom")}
                                      if passes else {})})

        async def pay() -> tuple[str, float]:
            passages = await (self.backend.search(query, k, exclude=exclude) if passes
                              else self.backend.search(query, k))
            return json.dumps([p.model_dump(mode="json") for p in passages]), 0.0

        value, _, _ = await self.cache.through(key, "search", pay)
        return [Passage.model_validate(p) for p in json.loads(value)]


def with_cache(context: TriageContext, cache: ResponseCache) -> TriageContext:
    """The same roles, with every paid call going through ``cache``.

    litellm-backed roles (answerer, critic) get a ``CachedRouter`` and store only the replies
    they could use (``UsableOnly``); a ``PricedSearcher`` gets a
    cached backend (it still charges its price per search, as the search was paid once). Other
    roles (fakes, your own) are used as they are.
    """
    from knowgate.agents.llm import LiteLLMRole
    from knowgate.tools.search_role import PricedSearcher

    changes: dict[str, Any] = {}
    routers: dict[int, CachedRouter] = {}
    for name in ("answerer", "critic"):
        role = getattr(context, name)
        if isinstance(role, LiteLLMRole) and not isinstance(role.router, CachedRouter):
            role = copy.copy(role)
            role.router = routers.setdefault(id(role.router), CachedRouter(role.router, cache))
            changes[name] = UsableOnly(role, cache)
    searcher = context.searcher
    if isinstance(searcher, PricedSearcher) and not isinstance(searcher.backend,
                                                                CachedSearchBackend):
        changes["searcher"] = PricedSearcher(CachedSearchBackend(searcher.backend, cache),
                                             searcher.price_usd, k=searcher.k,
                                             timeout_s=searcher.timeout_s,
                                             quarantine=searcher.quarantine)
    return dataclasses.replace(context, **changes)
