"""The chromadb searcher: real embedded chromadb, offline MiniLM, persistence, re-rank, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowgate.errors import SearchBackendError, UserError
from knowgate.roles import Passage
from knowgate.tools.searcher import ChromaSearcher, chroma_client, word_overlap

DOCS = [
    Passage(id="a", text="Mira Tolven was born in Kudal. Mira Tolven works for Zentek Labs."),
    Passage(id="b", text="Mira Brask graduated in 1961."),
    Passage(id="c", text="Oslan Tolven works for Brightwater Foods."),
    Passage(id="d", text="The city of Kudal was founded in 1204."),
]


def test_add_search_and_reopen(tmp_path: Path) -> None:
    searcher = ChromaSearcher(chroma_client(tmp_path), "docs-test")
    assert searcher.add(DOCS) == 4
    hits = searcher.search_many(["Who does Oslan Tolven work for?"], k=2)[0]
    assert hits[0].id == "c"
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    # A second client on the same directory sees the same collection: it persisted.
    reopened = ChromaSearcher(chroma_client(tmp_path), "docs-test")
    assert reopened.count() == 4
    assert reopened.search_many(["When was the city of Kudal founded?"], k=1)[0][0].id == "d"


def test_upsert_by_id_does_not_duplicate(tmp_path: Path) -> None:
    searcher = ChromaSearcher(chroma_client(tmp_path), "docs-test")
    searcher.add(DOCS)
    searcher.add(DOCS[:2])
    assert searcher.count() == 4


async def test_async_search_matches_sync(tmp_path: Path) -> None:
    searcher = ChromaSearcher(chroma_client(tmp_path), "docs-test", lexical_weight=1.0)
    searcher.add(DOCS)
    query = "When did Mira Brask graduate?"
    assert await searcher.search(query, 3) == searcher.search_many([query], 3)[0]


def test_rerank_adds_word_overlap(tmp_path: Path) -> None:
    plain = ChromaSearcher(chroma_client(tmp_path), "docs-test")
    plain.add(DOCS)
    hybrid = ChromaSearcher(chroma_client(tmp_path), "docs-test", lexical_weight=1.0)
    query = "Where was Mira Tolven born?"
    cosine = {p.id: p.score for p in plain.search_many([query], 4)[0]}
    for p in hybrid.search_many([query], 4)[0]:
        assert p.score == pytest.approx(cosine[p.id] + word_overlap(query, p.text), abs=1e-5)
    assert word_overlap("Where was Mira born?", "Mira was born in Kudal.") == pytest.approx(0.75)


def test_bad_requests_are_typed(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="3 characters"):
        ChromaSearcher(chroma_client(tmp_path), "ab")
    searcher = ChromaSearcher(chroma_client(tmp_path), "docs-test")
    with pytest.raises(UserError):
        searcher.search_many(["anything"], k=0)
    # Asking an empty collection is not an error: it returns nothing.
    assert searcher.search_many(["anything"], k=3) == [[]]


def test_backend_failure_is_a_search_backend_error(tmp_path: Path) -> None:
    client = chroma_client(tmp_path)
    searcher = ChromaSearcher(client, "docs-test")
    searcher.add(DOCS)
    client.delete_collection("docs-test")  # the backend loses the collection under us
    with pytest.raises(SearchBackendError):
        searcher.search_many(["Who is Mira Tolven?"], k=1)


class CountingSearcher(ChromaSearcher):
    """Counts the batched searches that concurrent ``search`` calls become."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[str]] = []

    def search_many(self, queries, k, exclude=None):
        self.batches.append(list(queries))
        return super().search_many(queries, k, exclude)


async def test_concurrent_searches_run_as_one_batch_with_the_results_of_each(
        tmp_path: Path) -> None:
    import asyncio

    searcher = CountingSearcher(chroma_client(tmp_path), "docs-test", lexical_weight=1.0)
    searcher.add(DOCS)
    queries = ["Who does Oslan Tolven work for?", "When was the city of Kudal founded?",
               "When did Mira Brask graduate?", "Where was Mira Tolven born?"]
    alone = [searcher.search_many([q], 2)[0] for q in queries]
    searcher.batches.clear()
    together = await asyncio.gather(*(searcher.search(q, 2) for q in queries))
    assert [[p.id for p in hits] for hits in together] == [[p.id for p in hits] for hits in alone]
    for hits, expected in zip(together, alone, strict=True):
        for got, want in zip(hits, expected, strict=True):
            assert got.score == pytest.approx(want.score, abs=1e-5)
            assert got.support == pytest.approx(want.support, abs=1e-5)
    assert searcher.batches == [queries]  # one embedding and one chromadb query for all four


async def test_a_backend_failure_reaches_every_search_of_the_batch(tmp_path: Path) -> None:
    import asyncio

    client = chroma_client(tmp_path)
    searcher = ChromaSearcher(client, "docs-test")
    searcher.add(DOCS)
    client.delete_collection("docs-test")
    results = await asyncio.gather(*(searcher.search(f"Who is Mira {i}?", 1) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, SearchBackendError) for r in results), results
