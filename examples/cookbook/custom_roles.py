"""Your own Searcher and Critic in the stock triage graph, chosen by name in the settings.

Each role is built by a ``RoleFactory``: register it in-process (``ROLES.register``) or
declare it as a ``knowgate.roles`` entry point of your package, then name it in the settings
(``searcher = "keyword"``, ``critic = "second-opinion"``). Graphs see only the role protocols.

Swapping a role changes what the signals mean: the shipped policy's maps were fitted with the
shipped roles (chromadb's ``support``, the world's critic). Run an explore eval with the new
roles and refit with ``knowgate calibrate`` before trusting its decisions.
"""

from knowgate import RoleFactory
from knowgate.composition import ROLES
from knowgate.roles import Evidence, Passage, Verdict


class KeywordSearcher:
    """A Searcher over a dict of passages: the one sharing most words with the query."""

    def __init__(self, passages, price_usd):
        self.passages, self.price_usd = passages, price_usd

    async def __call__(self, query):
        words = set(query.lower().strip("?").split())

        def overlap(pid):
            return len(words & set(self.passages[pid].lower().rstrip(".").split()))

        best = max(self.passages, key=overlap)
        support = overlap(best) / max(1, len(words))
        return Evidence(query=query, passages=[Passage(id=best, text=self.passages[best])],
                        support=round(support, 4), cost_usd=self.price_usd)


class SecondOpinionCritic:
    """A Critic that accepts a draft the evidence states, and abstains otherwise."""

    async def __call__(self, question, draft, signals, evidence=()):
        stated = draft is not None and any(draft.answer.lower() in p.text.lower()
                                           for p in evidence)
        if stated:
            return Verdict(verdict="accept", answer=draft.answer, confidence=0.9)
        return Verdict(verdict="abstain", confidence=0.2)


def register():
    """Make ``keyword`` and ``second-opinion`` available to the settings of this process."""
    ROLES.register("keyword", RoleFactory(
        roles={"searcher"},
        build=lambda request: KeywordSearcher(request.options["passages"],
                                              request.options.get("price_usd", 0.0)),
        price=lambda request: request.options.get("price_usd", 0.0),
        description="word overlap over role_options.searcher.passages"))
    ROLES.register("second-opinion", RoleFactory(
        roles={"critic"}, build=lambda request: SecondOpinionCritic(),
        description="accepts a draft the evidence states"))
