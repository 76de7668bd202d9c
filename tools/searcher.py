"""Retrieval over a persistent, embedded chromadb collection.

chromadb does the vector search; this module names the collection, embeds offline, batches inserts,
turns backend failures into ``SearchBackendError``, and optionally re-ranks chromadb's candidates
by word overlap with the query. The re-rank is there because a small sentence embedder confuses
rare names that share word pieces: on the default world, top-1 recall of the gold passage was 0.92
by cosine alone and 0.998 with cosine + 1.0 x word overlap over 20 candidates.

Each returned passage also carries a ``support`` figure: the share of the query's distinguishing
words it contains, each word weighted by its rarity among the candidates (an IDF computed over
what chromadb returned, so it needs no corpus statistics). Words every candidate shares ("born")
weigh little; a name part only some candidates share weighs a lot. A passage about a different
entity that merely shares one name part gets low support, which is what tells a reader's confident
copy from the wrong passage apart from a real answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from knowgate.agents.batching import MicroBatcher
from knowgate.errors import SearchBackendError, UserError
from knowgate.roles import Passage

_ADD_BATCH = 256
# Most concurrent searches embedded and queried together.
_SEARCH_BATCH = 32
_MAX_EXCLUDING_FETCH = 512  # the most candidates a search with exclusions asks chromadb for
_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def word_overlap(query: str, text: str) -> float:
    """Share of the query's distinct words that occur in ``text`` (0 to 1)."""
    wanted = _words(query)
    return len(wanted & _words(text)) / len(wanted) if wanted else 0.0


def support_scores(query: str, candidates: Sequence[str]) -> list[float]:
    """Rarity-weighted share of the query's words found in each candidate (0 to 1).

    Query words that no candidate contains are left out: they say nothing about which
    candidate is the right one.
    """
    bags = [_words(text) for text in candidates]
    weights = {}
    for word in _words(query):
        found = sum(word in bag for bag in bags)
        if found:
            weights[word] = math.log((len(bags) + 1) / found)
    total = sum(weights.values())
    if total <= 0:
        return [0.0 for _ in bags]
    return [round(sum(w for word, w in weights.items() if word in bag) / total, 6)
            for bag in bags]


def chroma_client(path: Path) -> Any:
    """A persistent chromadb client at ``path`` with telemetry off."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )


def chroma_http_client(url: str) -> Any:
    """A client of the chromadb server at ``url`` (``http://host:port``), telemetry off.

    Raises:
        UserError: The URL has no host.
        SearchBackendError: The server cannot be reached.
    """
    from urllib.parse import urlsplit

    import chromadb
    from chromadb.config import Settings as ChromaSettings

    parts = urlsplit(url)
    if not parts.hostname:
        raise UserError(f"not a chromadb server URL: {url!r} (expected http://host:port)")
    ssl = parts.scheme == "https"
    try:
        return chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if ssl else 8000),
                                   ssl=ssl, settings=ChromaSettings(anonymized_telemetry=False))
    except Exception as exc:  # connection refused, DNS, version mismatch ...
        raise SearchBackendError(f"cannot reach the chromadb server at {url}: {exc}") from exc


def _require_collection(client: Any, name: str) -> None:
    """Raise ``UserError`` naming ``name`` (and the collections there are) when it is missing."""
    try:
        names = sorted(c if isinstance(c, str) else c.name for c in client.list_collections())
    except Exception as exc:  # chromadb raises many unrelated types; one typed error out
        raise SearchBackendError(f"cannot list collections: {exc}") from exc
    if name not in names:
        shown = ", ".join(names) if names else "none"
        raise UserError(f"no collection named {name!r} (collections: {shown}); check "
                        "KNOWGATE_COLLECTION or create it with `knowgate ingest`")


class ChromaSearcher:
    """Top-k passage search over one chromadb collection.

    Args:
        client: A chromadb client (``chroma_client(path)`` for an embedded one).
        collection: Collection name (3+ characters); created on first use.
        device: Device for the embedding model.
        lexical_weight: Weight of word overlap added to cosine similarity when re-ranking;
            0 keeps chromadb's order.
        candidates: How many chromadb results the re-rank considers (at least ``k``).
        create: Create the collection when it does not exist (ingestion); ``False`` (search)
            refuses a name no collection has, so a misspelt one is not searched, empty, and
            paid for.

    Raises:
        UserError: ``create`` is false and no collection has that name.
        SearchBackendError: chromadb cannot open it.
    """

    def __init__(self, client: Any, collection: str, device: str = "cpu",
                 lexical_weight: float = 0.0, candidates: int = 20, create: bool = True) -> None:
        from knowgate.tools.embeddings import offline_embedding_function

        if len(collection) < 3:
            raise UserError("collection names need at least 3 characters")
        self.name = collection
        self.lexical_weight = lexical_weight
        self.candidates = candidates
        # Kept so that other parts (the evidence matcher) embed the same way without loading
        # the model twice.
        if not create:
            _require_collection(client, collection)
        self.embed = offline_embedding_function(device)
        self._batcher: MicroBatcher[str, list[Passage]] = MicroBatcher(
            self._search_batch, size=_SEARCH_BATCH)
        try:
            self._collection = client.get_or_create_collection(
                name=collection,
                embedding_function=self.embed,
                configuration={"hnsw": {"space": "cosine"}},
            )
        except Exception as exc:  # chromadb raises many unrelated types; one typed error out
            raise SearchBackendError(f"cannot open collection {collection!r}: {exc}") from exc

    def count(self) -> int:
        """Number of passages stored."""
        try:
            return int(self._collection.count())
        except Exception as exc:
            raise SearchBackendError(f"cannot count collection {self.name!r}: {exc}") from exc

    def add(self, passages: Iterable[Passage], on_batch: Any = None) -> int:
        """Insert or update passages by id; ``on_batch(n)`` is called after each batch."""
        batch: list[Passage] = []
        added = 0
        for passage in passages:
            batch.append(passage)
            if len(batch) == _ADD_BATCH:
                added += self._upsert(batch, on_batch)
                batch = []
        if batch:
            added += self._upsert(batch, on_batch)
        return added

    def _upsert(self, batch: list[Passage], on_batch: Any) -> int:
        try:
            self._collection.upsert(ids=[p.id for p in batch], documents=[p.text for p in batch])
        except Exception as exc:
            raise SearchBackendError(f"cannot add to collection {self.name!r}: {exc}") from exc
        if on_batch is not None:
            on_batch(len(batch))
        return len(batch)

    def search_many(self, queries: Sequence[str], k: int,
                    exclude: Callable[[Passage], bool] | None = None) -> list[list[Passage]]:
        """Top-``k`` passages for each query, best first.

        ``score`` is cosine similarity, plus ``lexical_weight`` x word overlap when re-ranking;
        ``support`` is computed over all candidates (see the module docstring). ``exclude``
        drops candidates before both, so passages set aside (``passage_guard``) neither take a
        slot nor dilute the support of the passages that remain.
        """
        if not queries:
            return []
        if k < 1:
            raise UserError("k must be at least 1")
        fetch = max(k, self.candidates) if self.lexical_weight else k
        asked = fetch
        while True:
            pools = self._pools(queries, asked, exclude)
            # With exclusions, widen until every pool is as large as it would be without
            # (so support is computed over as many candidates), or the collection runs out.
            if exclude is None or asked >= _MAX_EXCLUDING_FETCH or all(
                    len(pool) >= fetch or returned < asked for pool, returned in pools):
                break
            asked = min(asked * 4, _MAX_EXCLUDING_FETCH)
        out: list[list[Passage]] = []
        for query, (pool, _) in zip(queries, pools, strict=True):
            scored = pool[:fetch]
            support = support_scores(query, [d for _, _, d in scored])
            out.append([Passage(id=i, text=d, score=round(s, 6), support=support[n])
                        for n, (s, i, d) in enumerate(scored[:k])])
        return out

    def _pools(self, queries: Sequence[str], n: int, exclude: Callable[[Passage], bool] | None
               ) -> list[tuple[list[tuple[float, str, str]], int]]:
        """Per query: the re-ranked candidates ``(score, id, text)`` left after ``exclude``,
        and how many chromadb returned."""
        try:
            result = self._collection.query(query_texts=list(queries), n_results=n)
        except Exception as exc:
            raise SearchBackendError(f"search failed on {self.name!r}: {exc}") from exc
        pools = []
        for query, ids, docs, dists in zip(
            queries, result["ids"], result["documents"], result["distances"], strict=True
        ):
            scored = [
                (1.0 - float(x) + self.lexical_weight * word_overlap(query, d), i, d)
                for i, d, x in zip(ids, docs, dists, strict=True)
            ]
            scored.sort(key=lambda item: -item[0])  # stable: ties keep chromadb's order
            returned = len(scored)
            if exclude is not None:
                scored = [c for c in scored if not exclude(Passage(id=c[1], text=c[2]))]
            pools.append((scored, returned))
        return pools

    async def search(self, query: str, k: int,
                     exclude: Callable[[Passage], bool] | None = None) -> list[Passage]:
        """Async top-``k`` search (``exclude``: see ``search_many``).

        chromadb is synchronous, so searches run in a worker thread, and concurrent ones (the
        questions of an eval run, a server's requests) with the same ``k`` and ``exclude`` go
        in one ``search_many``: embedding 16 queries at once costs 3.4 ms a query on 2 CPU
        cores against 20 ms for one alone (MiniLM).
        """
        return await self._batcher.submit((k, exclude), query)

    def _search_batch(self, key: tuple[int, Callable[[Passage], bool] | None],
                      queries: Sequence[str]) -> list[list[Passage]]:
        k, exclude = key
        return self.search_many(list(queries), k, exclude)
