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

from collections.abc import Sequence

from pydantic import BaseModel, Field

from knowgate.agents.llm import Format, LiteLLMRole, bill
from knowgate.agents.prompting import listed_passages
from knowgate.agents.roles import Draft, Label, RoleError, Turn
from knowgate.agents.structured import complete_json
from knowgate.tools.passage import Passage

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
                       history: Sequence[Turn] = ()) -> Draft:
        """Answer ``question`` (see ``knowgate.agents.roles.Answerer``)."""
        turns = [{"role": t.role, "content": t.content} for t in history]
        if self.fmt == "logprobs":
            return await self._logprob_answer(question, evidence, turns)
        messages = [{"role": "system", "content": JSON_INSTRUCTIONS}, *turns,
                    {"role": "user", "content": _json_prompt(question, evidence)}]
        parsed, completions = await complete_json(
            self.router, self.role, self.model, messages, _JsonAnswer, self.timeout_s,
            max_tokens=max(self.max_tokens, 96), temperature=0,
        )
        usage, cost = bill(completions)
        return Draft(answer=parsed.answer.strip(), confidence=parsed.confidence,
                     label=parsed.label, with_evidence=bool(evidence),
                     model=completions[-1].model, usage=usage, cost_usd=cost)

    async def _logprob_answer(self, question: str, evidence: Sequence[Passage],
                              turns: list[dict[str, str]]) -> Draft:
        done = await self.ask_plain(question, [p.text for p in evidence], turns)
        answer = done.text.strip()
        if not answer:
            raise RoleError(self.role, f"{self.model} returned an empty answer", done.cost_usd)
        confidence = self.probability(done, done.cost_usd)
        return Draft(answer=answer, confidence=confidence,
                     label="sure" if confidence >= SURE_AT else "unsure",
                     logprobs=done.logprobs, with_evidence=bool(evidence), model=done.model,
                     usage=done.usage, cost_usd=done.cost_usd)
