"""Honest eval accounting: role outages are ``error`` records (not abstentions) that a resume
retries, the response cache keeps only replies a role could use, and a run folder has one
writer. Real litellm calls against the loopback provider; scripted roles where the point is
the runner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowgate.errors import UserError
from knowgate.evals.datasets import Dataset, EvalItem
from knowgate.evals.metrics import summarize
from knowgate.evals.records import read_records
from knowgate.evals.runner import run_eval
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Passage
from knowgate.settings import Settings, load_settings
from knowgate.testing import Fail, Hang, ScriptedAnswerer, ScriptedCritic, ScriptedSearcher
from knowgate.tests.loopback_openai import Error, LoopbackLLM, Seen
from knowgate.tools.searcher import ChromaSearcher, chroma_client

FAST, SLOW = "openai/gpt-4o-mini", "openai/gpt-4o"


def _answer(text: str) -> str:
    return json.dumps({"answer": text, "confidence": 0.95, "label": "sure"})


def _healthy(seen: Seen) -> str:
    """A healthy provider: the answerer's JSON answer, the critic's JSON verdict."""
    if seen.model == "gpt-4o":
        return json.dumps({"verdict": "revise", "answer": "Kedal", "confidence": 0.95})
    return _answer("Kedal")


@pytest.fixture
def provider() -> Iterator[LoopbackLLM]:
    with LoopbackLLM(default=_healthy) as srv:
        yield srv


def _items(n: int) -> list[EvalItem]:
    return [EvalItem(id=f"q{i}", question=f"Where was Person{i} born?", answers=["Kedal"],
                     kind="fast-known") for i in range(n)]


def _hosted(srv: LoopbackLLM, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    if not (data / "chroma").exists():  # a small collection for the searcher
        ChromaSearcher(chroma_client(data / "chroma"), "outage-docs").add(
            Passage(id=f"p{i}", text=f"Person{i} was born in Kedal.") for i in range(4))
    endpoint = {"api_base": srv.api_base, "api_key": "test-key"}
    return load_settings(data_dir=data, answerer=FAST, critic=SLOW, prober="off",
                         collection="outage-docs", llm_retries=0, llm_timeout_s=5.0,
                         role_timeout_s=10.0,
                         litellm_params={FAST: endpoint, SLOW: endpoint})


async def test_a_provider_500_storm_is_40_errors_and_a_resume_answers_them(
        provider: LoopbackLLM, tmp_path: Path) -> None:
    settings = _hosted(provider, tmp_path)
    dataset, out = Dataset("storm", _items(40)), tmp_path / "run"
    provider.default = lambda seen: Error(500, "provider down")
    await run_eval(dataset, "triage", out, settings, concurrency=8,
                   cache_path=tmp_path / "cache.sqlite")
    stormed = read_records(out)
    summary = summarize(stormed, Policy.load())
    assert [r.outcome for r in stormed].count("error") == 40 and summary["errors"] == 40
    assert all(r.failed_roles and "provider down" in (r.error or "") for r in stormed)

    provider.default = _healthy
    stats = await run_eval(dataset, "triage", out, settings, concurrency=8,
                           cache_path=tmp_path / "cache.sqlite")
    healed = read_records(out)
    assert stats.done == 40 and len(healed) == 40
    assert [r.outcome for r in healed].count("answered") == 40
    assert summarize(healed, Policy.load())["errors"] == 0


async def test_a_search_outage_is_an_error_not_an_abstention(tmp_path: Path) -> None:
    items = _items(6)
    context = TriageContext(
        answerer=ScriptedAnswerer(closed={i.question: ("Badal", 0.2) for i in items}),
        searcher=ScriptedSearcher(results={i.question: Fail("backend gone") for i in items}),
        critic=ScriptedCritic(verdicts={i.question: Fail("critic gone") for i in items}),
        policy=Policy.load(), prices=Prices(draft=3e-6, search=3e-5, refine=1.5e-4),
        role_timeout_s=5.0)
    await run_eval(Dataset("down", items), "always-search", tmp_path / "run",
                   load_settings(data_dir=tmp_path / "data"), context=context,
                   cache_path=tmp_path / "cache.sqlite")
    records = read_records(tmp_path / "run")
    assert [r.outcome for r in records] == ["error"] * 6
    assert all(r.failed_roles == ["searcher"] for r in records)
    assert summarize(records, Policy.load())["abstained"] == 0 and summarize(records, Policy.load())["errors"] == 6


async def test_the_cache_keeps_no_reply_the_role_could_not_use(provider: LoopbackLLM,
                                                               tmp_path: Path) -> None:
    settings = _hosted(provider, tmp_path)
    dataset, cache = Dataset("bad-episode", _items(10)), tmp_path / "cache.sqlite"
    provider.default = lambda seen: "I'd rather not say in JSON."  # unparseable, twice
    await run_eval(dataset, "fast-only", tmp_path / "bad", settings, cache_path=cache)
    assert {r.outcome for r in read_records(tmp_path / "bad")} == {"error"}
    bad_calls = len(provider.requests)

    provider.default = _healthy
    stats = await run_eval(dataset, "fast-only", tmp_path / "again", settings,
                           cache_path=cache)
    again = read_records(tmp_path / "again")
    assert len(provider.requests) - bad_calls == 10  # asked again: nothing bad was cached
    assert stats.cache_hits == 0
    assert [r.outcome for r in again].count("answered") == 10

    # A usable reply is cached as before: a third run pays nothing.
    before = len(provider.requests)
    third = await run_eval(dataset, "fast-only", tmp_path / "third", settings,
                           cache_path=cache)
    assert len(provider.requests) == before and third.cache_hits == 10


async def test_a_second_writer_on_a_run_folder_is_refused(tmp_path: Path) -> None:
    items = _items(20)
    slow = ScriptedAnswerer(closed={i.question: Hang(0.05) for i in items})
    context = TriageContext(answerer=slow, searcher=None, critic=None, policy=Policy.load(),
                            prices=Prices(draft=3e-6, search=0.0, refine=0.0),
                            role_timeout_s=5.0)
    settings = load_settings(data_dir=tmp_path / "data")
    out = tmp_path / "run"

    def start() -> Any:
        return run_eval(Dataset("locked", items), "fast-only", out, settings, context=context,
                        cache_path=tmp_path / "cache.sqlite", concurrency=2)

    first = asyncio.ensure_future(start())
    await asyncio.sleep(0.1)  # the first run holds the folder
    with pytest.raises(UserError, match="another eval run"):
        await start()
    await first
    records = read_records(out)
    assert len(records) == 20 and len({r.id for r in records}) == 20
    assert summarize(records, Policy.load())["n"] == 20


async def test_one_cache_never_answers_a_search_of_one_index_with_another(tmp_path: Path
                                                                         ) -> None:
    from knowgate.tests.test_poisoning import Reader
    from knowgate.tools.search_role import PricedSearcher

    client = chroma_client(tmp_path / "chroma")
    item = EvalItem(id="q", question="Where was Ada Vell born?", answers=["Kedal"])
    answers = []
    for name, city in (("index-one", "Kedal"), ("index-two", "Oslo")):
        backend = ChromaSearcher(client, name)
        backend.add([Passage(id="p", text=f"Ada Vell was born in {city}.")])
        context = TriageContext(answerer=Reader(), critic=None, policy=Policy.load(),
                                searcher=PricedSearcher(backend, 3e-5, k=1, timeout_s=10),
                                prices=Prices(draft=3e-6, search=3e-5, refine=0.0))
        await run_eval(Dataset(name, [item]), "always-search", tmp_path / name,
                       load_settings(data_dir=tmp_path / "data"), context=context,
                       cache_path=tmp_path / "shared-cache.sqlite")
        answers.append(read_records(tmp_path / name)[0].answer)
    assert answers == ["Kedal", "Oslo"]
