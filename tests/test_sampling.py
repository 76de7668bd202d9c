"""The answerer samples when asked: n answers at a temperature, from any provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from knowgate import Knowgate, load_settings
from knowgate.roles import RoleError, Sampling
from knowgate.testing import ScriptedAnswerer
from knowgate.tests.loopback_openai import Error, LoopbackLLM

MINI = "openai/gpt-4o-mini"
KNOWN = "In which city was Sebrurt Shenom born?"


def _reply(answer: str) -> str:
    return json.dumps({"answer": answer, "confidence": 0.6, "label": "unsure"})


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM(default=lambda seen: _reply("Kudal")) as srv:
        yield srv


def _hosted_answerer(srv: LoopbackLLM):
    settings = load_settings(answerer=MINI, critic="off", prober="off", searcher="off",
                             llm_retries=0, llm_timeout_s=5.0,
                             litellm_params={MINI: {"api_base": srv.api_base, "api_key": "k"}})
    return Knowgate(settings).context.answerer


async def test_a_hosted_answerer_samples_n_answers_with_seeds(server: LoopbackLLM) -> None:
    server.script(_reply("Kudal"), _reply("Haiora"), _reply("Kudal"))
    draft = await _hosted_answerer(server)(KNOWN, sampling=Sampling(temperature=0.7, n=3,
                                                                    seed=11))
    assert sorted(draft.samples) == ["Haiora", "Kudal", "Kudal"]
    assert draft.answer == draft.samples[0]
    bodies = [seen.body for seen in server.requests]
    assert sorted(b["seed"] for b in bodies) == [11, 12, 13]
    assert {b["temperature"] for b in bodies} == {0.7}
    # Every sample is billed: three calls' tokens.
    assert draft.usage.completion_tokens == sum(b.completion_tokens for b in server.billed)
    assert len(server.billed) == 3 and draft.cost_usd > 0


async def test_greedy_stays_one_call_at_temperature_zero(server: LoopbackLLM) -> None:
    draft = await _hosted_answerer(server)(KNOWN)
    assert draft.samples == [] and draft.answer == "Kudal"
    [seen] = server.requests
    assert seen.body["temperature"] == 0 and "seed" not in seen.body


async def test_a_failed_sample_fails_the_call_billed_for_the_others(
        server: LoopbackLLM) -> None:
    server.script(_reply("Kudal"), Error(500, "sampler down"), _reply("Kudal"))
    answerer = _hosted_answerer(server)
    with pytest.raises(RoleError, match="1 of 3 samples failed") as caught:
        await answerer(KNOWN, sampling=Sampling(temperature=1.0, n=3))
    assert caught.value.cost_usd > 0  # the two good samples were paid for


def test_sampling_options_are_bounded() -> None:
    for bad in ({"n": 0}, {"n": 17}, {"temperature": -0.1}, {"temperature": 2.5}):
        with pytest.raises(pydantic.ValidationError):
            Sampling(**bad)


async def test_a_local_model_samples_repeatably_with_a_seed(tmp_path: Path) -> None:
    settings = load_settings(world="synthetic", data_dir=tmp_path, device="cpu", critic="off",
                             prober="off", searcher="off")
    answerer = Knowgate(settings).context.answerer
    greedy = await answerer(KNOWN)
    seeded = Sampling(temperature=1.0, n=4, seed=3)
    first, again = await answerer(KNOWN, sampling=seeded), await answerer(KNOWN, sampling=seeded)
    assert len(first.samples) == 4 and first.samples == again.samples
    assert greedy.samples == [] and greedy.answer == (await answerer(KNOWN)).answer
    hot = await answerer("Who wrote the novel Quiet Ledger of Vamsi?",
                         sampling=Sampling(temperature=2.0, n=8))
    assert len(hot.samples) == 8 and len(set(hot.samples)) > 1  # a guess spreads when hot


async def test_the_scripted_answerer_takes_its_samples_in_turn() -> None:
    fake = ScriptedAnswerer(closed={"Q?": ("A", 0.9)}, sampled={"Q?": ["A", "B", "C"]})
    first = await fake("Q?", sampling=Sampling(temperature=1.0, n=2))
    second = await fake("Q?", sampling=Sampling(temperature=1.0, n=2))
    assert (first.samples, second.samples) == (["A", "B"], ["C", "A"])
    assert first.cost_usd == pytest.approx(2 * fake.price_usd)
    assert (await fake("Q?")).samples == []
