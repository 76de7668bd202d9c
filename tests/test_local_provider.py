"""The world's models served through litellm as ``local/fast`` and ``local/slow``."""

from __future__ import annotations

import asyncio

import litellm
import pytest

from knowgate.agents.local_provider import LocalProvider, register_local_provider
from knowgate.grading import is_correct
from knowgate.worlds.schema import Kind


@pytest.fixture(scope="module")
def provider(shipped_world):
    served = LocalProvider({n: shipped_world.model_dir(n) for n in ("fast", "slow")},
                           device="cpu", batch_size=16, batch_wait_ms=5)
    register_local_provider(served, prices={"fast": (1e-7, 2e-7)})
    return served


@pytest.fixture(scope="module")
def known(shipped_world):
    return [q for q in shipped_world.questions("test") if q.kind == Kind.FAST_KNOWN][:24]


def ask(question: str, **kw):
    params = {"max_tokens": 12, "temperature": 0, **kw}
    return litellm.completion(model="local/fast", messages=[{"role": "user", "content": question}],
                              **params)


def test_sync_completion_answers_with_logprobs_and_usage(provider, known) -> None:
    q = known[0]
    response = ask(q.question, logprobs=True, top_logprobs=3)
    choice = response.choices[0]
    assert is_correct(choice.message.content, q.answers)
    assert choice.finish_reason == "stop"
    tokens = choice.logprobs.content
    assert tokens and all(t.logprob <= 0 for t in tokens)
    assert "".join(t.token for t in tokens).strip() == choice.message.content
    assert all(len(t.top_logprobs) == 3 for t in tokens)
    # The chosen greedy token is the most likely one.
    assert tokens[0].top_logprobs[0].token == tokens[0].token
    assert response.usage.prompt_tokens > 5 and response.usage.completion_tokens >= 2
    assert response.model == "local/fast"
    cost = litellm.completion_cost(completion_response=response)
    assert cost == pytest.approx(
        1e-7 * response.usage.prompt_tokens + 2e-7 * response.usage.completion_tokens
    )


async def test_concurrent_async_calls_batch_to_the_same_answers(provider, known) -> None:
    sync = [ask(q.question).choices[0].message.content for q in known]
    responses = await asyncio.gather(*(
        litellm.acompletion(model="local/fast", messages=[{"role": "user", "content": q.question}],
                            max_tokens=12, temperature=0)
        for q in known
    ))
    assert [r.choices[0].message.content for r in responses] == sync
    assert sum(is_correct(a, q.answers) for a, q in zip(sync, known, strict=True)) >= 22


async def test_streaming_yields_the_same_text(provider, known) -> None:
    q = known[1]
    whole = ask(q.question).choices[0].message.content
    stream = litellm.completion(model="local/fast",
                                messages=[{"role": "user", "content": q.question}],
                                max_tokens=12, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == whole

    parts = []
    response = await litellm.acompletion(
        model="local/slow", messages=[{"role": "user", "content": q.question}],
        max_tokens=12, stream=True)
    async for chunk in response:
        parts.append(chunk.choices[0].delta.content or "")
    assert "".join(parts) == litellm.completion(
        model="local/slow", messages=[{"role": "user", "content": q.question}], max_tokens=12
    ).choices[0].message.content


def test_max_tokens_truncates_with_reason_length(provider, known) -> None:
    response = ask(known[2].question, max_tokens=1)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 1


def test_misuse_is_a_400_and_the_provider_keeps_serving(provider) -> None:
    with pytest.raises(litellm.BadRequestError, match="unknown local model 'nope'"):
        litellm.completion(model="local/nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(litellm.BadRequestError, match="exceeds the model's context"):
        ask("Where was Lina Lemas born? " * 200)
    with pytest.raises(litellm.BadRequestError, match="one choice"):
        litellm.completion(model="local/fast", messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(litellm.BadRequestError, match="max_tokens must be"):
        ask("When did Lina Lemas graduate?", max_tokens=-3)
    with pytest.raises(litellm.BadRequestError, match="top_logprobs must be"):
        ask("When did Lina Lemas graduate?", logprobs=True, top_logprobs=50)
    with pytest.raises(litellm.BadRequestError, match="at least one message"):
        litellm.completion(model="local/fast", messages=[])
    with pytest.raises(litellm.BadRequestError, match="not 'tool'"):
        litellm.completion(model="local/fast",
                           messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}])
    assert ask("When did Lina Lemas graduate?").choices[0].message.content


def test_a_broken_model_directory_is_a_500(provider, tmp_path) -> None:
    provider.add("broken", tmp_path)
    try:
        with pytest.raises(litellm.InternalServerError, match="cannot load a causal LM"):
            litellm.completion(model="local/broken", messages=[{"role": "user", "content": "hi"}])
    finally:
        provider.remove("broken")


def test_sampling_with_a_seed_is_repeatable(provider, known) -> None:
    q = known[3].question
    first = ask(q, temperature=1.5, seed=123, logprobs=True)
    again = ask(q, temperature=1.5, seed=123, logprobs=True)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert [t.logprob for t in first.choices[0].logprobs.content] == [
        t.logprob for t in again.choices[0].logprobs.content
    ]
