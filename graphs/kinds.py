"""What a node does, declared once: its action, the role it calls, its price and its bound.

Every step a node records carries its declaration's ``action`` and ``counts_as``, and the
policy's round bounds (``Policy.rounds_left``, ``Policy.allows``), the budget, the eval
runner's candidate records and ``calibrate`` read those, not a fixed list of action names. So a
developer's node, a second search with a reformulated query or a sampling pass, is priced and
bounded like the stock ones::

    SEARCH_AGAIN = NodeKind("search_again", role="searcher", counts_as="search",
                            priced_as="search")
    SAMPLE = NodeKind("sample", role="answerer", counts_as="sample", priced_as="draft", calls=5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from knowgate.graphs.state import Step

if TYPE_CHECKING:  # the policy reads kinds; a kind only reads the prices it is given
    from knowgate.graphs.policy import Prices

PriceName = Literal["draft", "search", "refine"]


@dataclass(frozen=True)
class NodeKind:
    """The declaration of what a node does.

    Attributes:
        action: The label of its steps (the trace's path, the eval summary's columns).
        role: The role it calls (``answerer``, ``searcher``, ``critic``, ``prober``), if any:
            the ledger bills that role, and ``Policy.allows`` refuses the node once the role
            has failed.
        counts_as: The round bound its steps count against: ``search`` and ``refine`` are the
            policy's ``max_searches`` and ``max_refines``; any other name is bounded by
            ``Policy.rounds`` (unbounded when the policy names no bound for it); ``None`` counts
            against none.
        priced_as: Which expected price (``Prices``) one call of its role costs, for the
            policy to weigh before it runs; ``None`` for a free node.
        calls: Calls of that price per run of the node (a sampling pass of five: 5).
    """

    action: str
    role: str | None = None
    counts_as: str | None = None
    priced_as: PriceName | None = None
    calls: int = 1

    def __post_init__(self) -> None:
        if not self.action or self.calls < 1:
            raise ValueError("a NodeKind needs an action and at least one call")

    def price(self, prices: Prices) -> float:
        """Expected dollars of one run of the node."""
        return 0.0 if self.priced_as is None else self.calls * getattr(prices, self.priced_as)

    def step(self, reason: str, cost_usd: float = 0.0, latency_s: float = 0.0,
             error: bool = False, proposes: str | None = None, answer: str | None = None
             ) -> Step:
        """A step of this kind (``proposes``: the source of the candidate answer it put
        forward, ``answer``: that answer, see ``Step``)."""
        return Step(action=self.action, role=self.role, counts_as=self.counts_as, reason=reason,
                    cost_usd=cost_usd, latency_s=round(latency_s, 6), error=error,
                    proposes=proposes, answer=answer)


PROBE = NodeKind("probe", role="prober", counts_as="probe")
DRAFT = NodeKind("draft", role="answerer", counts_as="draft", priced_as="draft")
SEARCH = NodeKind("search", role="searcher", counts_as="search", priced_as="search")
REFINE = NodeKind("refine", role="critic", counts_as="refine", priced_as="refine")
ANSWER = NodeKind("answer")
ABSTAIN = NodeKind("abstain")
