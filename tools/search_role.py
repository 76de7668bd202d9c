"""The ``Searcher`` role: a search backend with a price per call and a cache by query.

LangGraph re-runs an interrupted node when a thread resumes, and a conversation asks the same
thing twice often enough, so results are cached by query: a repeat is free and says so
(``Evidence.cached``). The cache is bounded and per process; batch runs add a persistent one.
Passages that address the reader are not evidence (``knowgate.tools.passage_guard``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from knowgate.roles import Evidence, Passage, RoleError
from knowgate.tools.passage_guard import addresses_the_reader

_SPARE = 4  # extra candidates fetched per search when a quarantine may set some aside
_MAX_FETCH = 128  # the widest search the quarantine asks the backend for


class SearchBackend(Protocol):
    """What the role needs from a backend (``ChromaSearcher`` is one)."""

    async def search(self, query: str, k: int) -> list[Passage]:
        """Top-``k`` passages for ``query``, best first."""
        ...


def _takes_exclude(backend: object) -> bool:
    """Whether ``backend.search`` takes ``exclude`` (``ChromaSearcher`` and the eval cache's
    wrapper do; a backend written to the bare protocol need not). A wrapper says so for the
    backend it wraps with ``accepts_exclude``."""
    declared = getattr(backend, "accepts_exclude", None)
    if declared is not None:
        return bool(declared)
    try:
        return "exclude" in inspect.signature(backend.search).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


class PricedSearcher:
    """A search backend as the ``Searcher`` role.

    Args:
        backend: Where passages come from.
        price_usd: Dollars per (uncached) call.
        k: Passages per search.
        timeout_s: Bound on one search.
        cache_size: Queries remembered.
        quarantine: Which passages are not evidence (by default, those that address the
            reader: ``knowgate.tools.passage_guard``); ``None`` keeps every passage.
    """

    role = "searcher"

    def __init__(self, backend: SearchBackend, price_usd: float, k: int, timeout_s: float,
                 cache_size: int = 4096,
                 quarantine: Callable[[Passage], bool] | None = addresses_the_reader) -> None:
        self.backend = backend
        self.price_usd = price_usd
        self.k = k
        self.timeout_s = timeout_s
        self.cache_size = cache_size
        self.quarantine = quarantine
        self._cache: OrderedDict[str, list[Passage]] = OrderedDict()

    async def __call__(self, query: str) -> Evidence:
        """Search ``query`` (see ``knowgate.roles.Searcher``)."""
        key = " ".join(query.split())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._evidence(query, self._cache[key], cached=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                passages = await self._search(key)
        except TimeoutError as exc:
            raise RoleError(self.role, f"search timed out after {self.timeout_s:g} s") from exc
        except Exception as exc:  # any backend failure becomes one typed error
            raise RoleError(self.role, f"search failed: {type(exc).__name__}: {exc}") from exc
        self._cache[key] = passages
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return self._evidence(query, passages, cached=False)

    async def _search(self, query: str) -> list[Passage]:
        """The top ``k`` passages that are not quarantined. A backend that takes ``exclude``
        drops them from its candidates itself; with any other, quarantined ones leave their
        slots to the next candidates: the search widens (``_SPARE`` more, then four times as many, up
        to ``_MAX_FETCH``) while too few are left and the backend has more, so a flood of
        injected passages outranking the answer's does not push it out."""
        if self.quarantine is None:
            return await self.backend.search(query, self.k)
        if _takes_exclude(self.backend):  # the backend drops them before ranking (and support)
            return await self.backend.search(query, self.k, exclude=self.quarantine)
        fetch = self.k + _SPARE
        while True:
            found = await self.backend.search(query, fetch)
            kept = [p for p in found if not self.quarantine(p)]
            if len(kept) >= self.k or len(found) < fetch or fetch >= _MAX_FETCH:
                return kept[:self.k]
            fetch = min(fetch * 4, _MAX_FETCH)

    def _evidence(self, query: str, passages: list[Passage], cached: bool) -> Evidence:
        support = passages[0].support if passages and passages[0].support is not None else 0.0
        return Evidence(query=query, passages=passages, support=min(1.0, max(0.0, support)),
                        cached=cached, cost_usd=0.0 if cached else self.price_usd)
