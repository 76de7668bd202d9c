"""Search again with a reformulated query when the first search's support is low.

The second search is a stock search node with a query of its own, declared to count against the
policy's search bound and priced as a search: the policy's bounds, the budget, the trace and
the eval records treat it like the first one.
"""

from typing import Literal

from langgraph.graph import END, START

from knowgate.graphs import nodes
from knowgate.graphs.building import new_graph
from knowgate.graphs.kinds import NodeKind

LOW_SUPPORT = 0.5
STOPWORDS = {"what", "which", "who", "where", "when", "is", "was", "the", "of", "in", "a", "did"}

SEARCH_AGAIN = NodeKind("search_again", role="searcher", counts_as="search", priced_as="search")


def reformulate(state) -> str:
    """The question's content words alone (a search engine's view of it)."""
    words = [w.strip("?,.") for w in state.question.split()]
    return " ".join(w for w in words if w.lower() not in STOPWORDS)


def after_search(state, runtime) -> Literal["search_again", "draft", "decide"]:
    """Search again when the passages barely match and the policy allows another search."""
    ctx = runtime.context
    weak = state.evidence is not None and state.evidence.support < LOW_SUPPORT
    # A search is read by a draft: the budget must pay for both.
    if weak and ctx.policy.allows(state, SEARCH_AGAIN, ctx.prices, extra_usd=ctx.prices.draft):
        return "search_again"
    return nodes.after_search(state)


def build(checkpointer=None):
    """The triage graph with a reformulated second search."""
    graph = new_graph()
    for name in ("probe", "decide", "draft", "search", "refine", "answer", "abstain"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_node("search_again", nodes.make_search(SEARCH_AGAIN, query=reformulate))
    graph.add_edge(START, "probe")
    graph.add_edge("probe", "decide")
    graph.add_conditional_edges("decide", nodes.route)
    graph.add_edge("draft", "probe")
    graph.add_conditional_edges("search", after_search)
    graph.add_conditional_edges("search_again", nodes.after_search)
    graph.add_edge("refine", "decide")
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name="second-search")
