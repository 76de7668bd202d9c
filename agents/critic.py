"""The slow critic: any litellm model that checks a draft and stands behind an answer.

* ``json`` (hosted models): one call that sees the question, the draft with its confidence and
  signals, and the evidence, and replies ``{"verdict", "answer", "confidence"}``.
* ``logprobs`` (``local/`` models, which can answer but not discuss): the model answers the
  question itself, closed-book, and again reading the evidence when there is some. The answer it
  is surer of wins; an evidence-based answer counts only as much as the search's ``support``
  signal, because a small reader copies a value from a passage about the wrong entity as
  readily as from the right one. Agreeing with the draft is ``accept``, a confident different
  answer is ``revise``, an unsure one is ``abstain``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from knowgate.agents.answerer import SURE_AT
from knowgate.agents.llm import Completion, Deadline, LiteLLMRole, bill, complete
from knowgate.agents.prompting import listed_passages, question_with_evidence
from knowgate.agents.roles import Draft, RoleError, Signals, Verdict, VerdictKind
from knowgate.agents.structured import complete_json
from knowgate.grading import normalize
from knowgate.tools.passage import Passage

JSON_INSTRUCTIONS = (
    "You check a draft answer to a question. Use the passages when they are about the question, "
    "and your own knowledge otherwise. Reply with only a JSON object: "
    '{"verdict": "accept" (the draft is right) or "revise" (you give a better answer) or '
    '"abstain" (nobody here can know), "answer": "<the answer you stand behind, empty when '
    'abstaining>", "confidence": <probability from 0 to 1 that your answer is right>}.'
)


class _JsonVerdict(BaseModel):
    verdict: VerdictKind
    answer: str = ""
    confidence: float = Field(ge=0.0, le=1.0)


def _describe(question: str, draft: Draft | None, signals: Signals,
              evidence: Sequence[Passage]) -> str:
    lines = [f"Question: {question}"]
    if draft is None:
        lines.append("Draft: none (the fast answerer failed)")
    else:
        lines.append(f"Draft: {draft.answer} (confidence {draft.confidence:.2f}, {draft.label})")
    if signals.values:
        lines.append(f"Signals: {signals.describe()}")
    if evidence:
        lines.append(f"Passages:\n{listed_passages(evidence)}")
    return "\n".join(lines)


class LiteLLMCritic(LiteLLMRole):
    """The ``Critic`` role over a litellm Router (arguments: ``LiteLLMRole``)."""

    role = "critic"

    async def __call__(self, question: str, draft: Draft | None, signals: Signals,
                       evidence: Sequence[Passage] = ()) -> Verdict:
        """Judge ``draft`` (see ``knowgate.agents.roles.Critic``)."""
        if self.fmt == "logprobs":
            return await self._by_logprobs(question, draft, signals, evidence)
        messages = [{"role": "system", "content": JSON_INSTRUCTIONS},
                    {"role": "user", "content": _describe(question, draft, signals, evidence)}]
        parsed, completions = await complete_json(
            self.router, self.role, self.model, messages, _JsonVerdict, self.timeout_s,
            max_tokens=max(self.max_tokens, 128), temperature=0,
        )
        answer = parsed.answer.strip()
        if parsed.verdict == "accept" and draft is not None and not answer:
            answer = draft.answer
        verdict = parsed.verdict if answer or parsed.verdict == "abstain" else "abstain"
        usage, cost = bill(completions)
        return Verdict(verdict=verdict, answer=answer, confidence=parsed.confidence,
                       model=completions[-1].model, usage=usage, cost_usd=cost)

    async def _by_logprobs(self, question: str, draft: Draft | None, signals: Signals,
                           evidence: Sequence[Passage]) -> Verdict:
        support = signals.values.get("search_support", 1.0)
        completions: list[Completion] = []
        scored: list[tuple[float, Completion]] = []
        spent = 0.0
        deadline = Deadline(self.timeout_s)  # both passes share the role's time budget
        for prompt, weight in self._passes(question, evidence, support):
            if scored and weight <= scored[0][0]:
                # The evidence answer scores at most `support`: when the closed-book answer is
                # already surer than that, the second (paid) pass cannot change the verdict.
                break
            try:
                done = await complete(self.router, self.role, self.model,
                                      [{"role": "user", "content": prompt}], deadline.left(),
                                      max_tokens=self.max_tokens, temperature=0, logprobs=True)
            except RoleError as exc:
                exc.cost_usd += spent
                raise
            spent += done.cost_usd
            completions.append(done)
            scored.append((self.probability(done, spent) * weight, done))
        confidence, best = max(scored, key=lambda item: item[0])
        answer = best.text.strip()
        if draft is not None and answer and normalize(answer) == normalize(draft.answer):
            kind: VerdictKind = "accept"
        elif answer and confidence >= SURE_AT:
            kind = "revise"
        else:
            kind = "abstain"
        usage, cost = bill(completions)
        return Verdict(verdict=kind, answer=answer, confidence=confidence, model=best.model,
                       usage=usage, cost_usd=cost)

    @staticmethod
    def _passes(question: str, evidence: Sequence[Passage],
                support: float) -> list[tuple[str, float]]:
        """The closed-book prompt (weight 1), then with evidence the open-book one, whose
        answer counts only as much as the search's support."""
        passes = [(question_with_evidence(question), 1.0)]
        if evidence:
            passes.append((question_with_evidence(question, [p.text for p in evidence]),
                           support))
        return passes
