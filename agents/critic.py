"""The slow critic: any litellm model that checks a draft and stands behind an answer.

* ``json`` (hosted models): one call that sees the question, the draft with its confidence and
  signals, and the evidence, and replies ``{"verdict", "answer", "confidence"}``.
* ``logprobs`` (``local/`` models, which can answer but not discuss): the model answers the
  question itself, closed-book, and again reading the evidence when there is some. The answer it
  is surer of wins. With ``evidence_weight="support"`` an evidence-based answer counts only as
  much as the search's ``support`` signal (a tiny reader trained on one world copies a value
  from a passage about the wrong entity as readily as from the right one); with ``"none"`` it
  counts at its own probability and the calibrated policy weighs support itself (a pretrained
  reader, whose passages score low support however right they are); with ``"only"`` a critic
  given evidence answers from it alone, in one pass (a small pretrained model's closed-book
  answers are confident and stale: "Africa" for every continent, a former president, so the
  surer answer is the remembered one too often), and closed-book only without evidence.
  Agreeing with the draft is
  ``accept``; a different answer at least ``abstain_below`` sure is ``revise``, a less sure one
  ``abstain`` (``abstain_below=0``: the critic always stands behind its best answer and the
  policy's calibrated map decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from knowgate.agents.answerer import SURE_AT
from knowgate.agents.llm import Completion, Deadline, Format, LiteLLMRole, bill
from knowgate.agents.prompting import PromptStyle, listed_passages
from knowgate.agents.structured import complete_json
from knowgate.grading import normalize
from knowgate.roles import Draft, Passage, RoleError, Signals, Verdict, VerdictKind

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


EvidenceWeight = Literal["support", "none", "only"]

# Float slack of a closed-book bound: the prober's pass and the critic's call round differently.
_BOUND_SLACK = 1e-4


class LiteLLMCritic(LiteLLMRole):
    """The ``Critic`` role over a litellm Router.

    Args:
        closed_book_bound: In ``logprobs`` mode, the name of a signal that bounds the probability
            of the critic's closed-book answer from above: the top next-token probability of the
            critic's own model at the end of the closed-book prompt (``critic_query_top_prob``
            when the prober reads the critic's model). A greedy answer's probability is at most
            that of its first token, so when the open-book answer already scores above the
            bound, the closed-book call cannot change the verdict and is not made. Give it
            only when the signal reads the very model and prompt the critic calls.
        evidence_weight: In ``logprobs`` mode, what an answer read from the evidence is
            weighted by: the search's ``support`` or nothing, or ``only``: with evidence, no
            closed-book pass at all (see the module).
        abstain_below: In ``logprobs`` mode, the probability under which a different answer is
            an ``abstain`` verdict rather than ``revise``.
        Other arguments: see ``LiteLLMRole``.
    """

    role = "critic"

    def __init__(self, router: Any, model: str, fmt: Format, timeout_s: float,
                 max_tokens: int = 24, closed_book_bound: str | None = None,
                 prompt_style: PromptStyle = "plain", evidence_weight: EvidenceWeight = "support",
                 abstain_below: float = SURE_AT) -> None:
        super().__init__(router, model, fmt, timeout_s, max_tokens, prompt_style)
        self.closed_book_bound = closed_book_bound
        self.evidence_weight: EvidenceWeight = evidence_weight
        self.abstain_below = abstain_below

    async def __call__(self, question: str, draft: Draft | None, signals: Signals,
                       evidence: Sequence[Passage] = ()) -> Verdict:
        """Judge ``draft`` (see ``knowgate.roles.Critic``)."""
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
        support = (signals.values.get("search_support", 1.0)
                   if self.evidence_weight == "support" else 1.0)
        bound = signals.values.get(self.closed_book_bound) if self.closed_book_bound else None
        completions: list[Completion] = []
        scored: list[tuple[float, Completion]] = []
        spent = 0.0
        deadline = Deadline(self.timeout_s)  # both passes share the role's time budget
        for passages, weight, ceiling in self._passes(evidence, support, bound):
            if scored and ceiling <= max(score for score, _ in scored):
                # A pass scores at most its ceiling (`support` for the evidence answer, the
                # bound for the closed-book one): when an answer already scores that much,
                # the next (paid) pass cannot change the verdict.
                break
            try:
                done = await self.ask_plain(question, passages, timeout_s=deadline.left())
            except RoleError as exc:
                exc.cost_usd += spent
                raise
            spent += done.cost_usd
            completions.append(done)
            # An empty reply (the model stopped at once: no answer token, so no logprob) is
            # no answer from this pass; it scores nothing rather than failing the role.
            score = self.probability(done, spent) * weight if done.text.strip() else 0.0
            scored.append((score, done))
        confidence, best = max(scored, key=lambda item: item[0])
        answer = best.text.strip()
        if draft is not None and answer and normalize(answer) == normalize(draft.answer):
            kind: VerdictKind = "accept"
        elif answer and confidence >= self.abstain_below:
            kind = "revise"
        else:
            kind = "abstain"
        usage, cost = bill(completions)
        return Verdict(verdict=kind, answer=answer, confidence=confidence, model=best.model,
                       usage=usage, cost_usd=cost)

    def _passes(self, evidence: Sequence[Passage], support: float,
                bound: float | None) -> list[tuple[list[str], float, float]]:
        """``(passages, weight, ceiling)`` of each pass, in the order they are tried.

        The closed-book prompt (weight 1) and, with evidence, the open-book one, whose answer
        counts only as much as the search's support. The closed book goes first unless a bound
        on its answer's probability says it is the less promising one; with
        ``evidence_weight="only"`` and evidence, the open-book pass is the only one.
        """
        closed_ceiling = 1.0 if bound is None else min(1.0, bound + _BOUND_SLACK)
        closed: tuple[list[str], float, float] = ([], 1.0, closed_ceiling)
        if not evidence:
            return [closed]
        opened = ([p.text for p in evidence], support, support)
        if self.evidence_weight == "only":
            return [opened]
        return [opened, closed] if closed_ceiling < support else [closed, opened]
