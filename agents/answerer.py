"""The fast answerer: any litellm model, answering with a confidence.

Two ways to get the confidence, chosen by ``Settings.answerer_format``:

* ``logprobs`` (the default for ``local/`` models): the model answers in plain text, in its
  prompt style (``knowgate.agents.prompting``: as the synthetic world's models were trained, or
  a short-answer prompt for pretrained models, the reply cut to its answer), and the confidence
  is the probability of the answer under the model (the product of its tokens' probabilities).
* ``json`` (hosted chat models): the model is asked for ``{"answer", "confidence", "label"}``,
  validated by pydantic, with one repair turn (``knowgate.agents.structured``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from knowgate.agents.llm import Format, LiteLLMRole, bill
from knowgate.agents.prompting import listed_passages
from knowgate.agents.structured import complete_json
from knowgate.roles import GREEDY, Draft, Label, Passage, RoleError, Sampling, Turn, Usage

SURE_AT = 0.5  # a logprob-scored answer is labelled "sure" from this probability up

JSON_INSTRUCTIONS = (
    "Answer the user's question with a short answer (a name, a place, a year). "
    "If passages are given, use them when they answer the question. "
    "Reply with only a JSON object: "
    '{"answer": "<short answer>", "confidence": <probability from 0 to 1 that the answer is '
    'right>, "label": "sure" or "unsure"}.'
)


class _JsonAnswer(BaseModel):
    answer: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)
    label: Label


def resolve_format(model: str, setting: str) -> Format:
    """``auto`` means ``logprobs`` for ``local/`` models and ``json`` for everything else."""
    if setting == "auto":
        return "logprobs" if model.startswith("local/") else "json"
    if setting not in ("json", "logprobs"):
        raise ValueError(f"unknown format {setting!r}")
    return setting  # type: ignore[return-value]


def _json_prompt(question: str, evidence: Sequence[Passage]) -> str:
    if not evidence:
        return f"Question: {question}"
    return f"Passages:\n{listed_passages(evidence)}\n\nQuestion: {question}"


class LiteLLMAnswerer(LiteLLMRole):
    """The ``Answerer`` role over a litellm Router (arguments: ``LiteLLMRole``)."""

    role = "answerer"

    async def __call__(self, question: str, evidence: Sequence[Passage] = (),
                       history: Sequence[Turn] = (), sampling: Sampling = GREEDY) -> Draft:
        """Answer ``question`` (see ``knowgate.roles.Answerer``).

        ``n > 1`` makes ``n`` concurrent calls, one per sample (with ``seed + i``): every
        provider takes them, where a provider's own ``n`` is not universal. Each call's prompt
        is billed; local models batch unseeded samples into one pass.
        """
        turns = [{"role": t.role, "content": t.content} for t in history]
        if sampling.n == 1:
            return await self._answer(question, evidence, turns, sampling.temperature,
                                      sampling.seed)
        tries = await asyncio.gather(
            *(self._answer(question, evidence, turns, sampling.temperature,
                           None if sampling.seed is None else sampling.seed + i)
              for i in range(sampling.n)), return_exceptions=True)
        drafts = [d for d in tries if isinstance(d, Draft)]
        failed = [e for e in tries if not isinstance(e, Draft)]
        spent = sum(d.cost_usd for d in drafts) + sum(getattr(e, "cost_usd", 0.0) for e in failed)
        if failed:  # one sample short is no consistency signal: the call fails, billed in full
            first = failed[0]
            reason = first.reason if isinstance(first, RoleError) else repr(first)
            raise RoleError(self.role, f"{len(failed)} of {sampling.n} samples failed: {reason}",
                            spent)
        usage = Usage(prompt_tokens=sum(d.usage.prompt_tokens for d in drafts),
                      completion_tokens=sum(d.usage.completion_tokens for d in drafts))
        return drafts[0].model_copy(update={"samples": [d.answer for d in drafts],
                                            "usage": usage, "cost_usd": spent})

    async def _answer(self, question: str, evidence: Sequence[Passage],
                      turns: list[dict[str, str]], temperature: float,
                      seed: int | None) -> Draft:
        sampled: dict[str, Any] = {"temperature": temperature}
        if seed is not None:
            sampled["seed"] = seed
        if self.fmt == "logprobs":
            return await self._logprob_answer(question, evidence, turns, sampled)
        messages = [{"role": "system", "content": JSON_INSTRUCTIONS}, *turns,
                    {"role": "user", "content": _json_prompt(question, evidence)}]
        parsed, completions = await complete_json(
            self.router, self.role, self.model, messages, _JsonAnswer, self.timeout_s,
            max_tokens=max(self.max_tokens, 96), **sampled,
        )
        usage, cost = bill(completions)
        return Draft(answer=parsed.answer.strip(), confidence=parsed.confidence,
                     label=parsed.label, with_evidence=bool(evidence),
                     model=completions[-1].model, usage=usage, cost_usd=cost)

    async def _logprob_answer(self, question: str, evidence: Sequence[Passage],
                              turns: list[dict[str, str]], sampled: dict[str, Any]) -> Draft:
        done = await self.ask_plain(question, [p.text for p in evidence], turns, **sampled)
        answer = done.text.strip()
        if not answer:
            raise RoleError(self.role, f"{self.model} returned an empty answer", done.cost_usd)
        confidence = self.probability(done, done.cost_usd)
        return Draft(answer=answer, confidence=confidence,
                     label="sure" if confidence >= SURE_AT else "unsure",
                     logprobs=done.logprobs, with_evidence=bool(evidence), model=done.model,
                     usage=done.usage, cost_usd=done.cost_usd)
