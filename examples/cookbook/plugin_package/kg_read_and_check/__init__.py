"""A developer's plugin: a graph (search, measure the passage, draft from it, have the critic
check it) with a signal of its own, a searcher over passages written in the settings, and a
world under a name of its own."""

from knowgate import RoleFactory
from knowgate.graphs import nodes
from knowgate.graphs.building import pipeline_graph
from knowgate.graphs.state import validated
from knowgate.roles import Evidence, Passage
from knowgate.signals import SignalSpec
from knowgate.worlds.world import shipped_world_dir

OVERLAP = SignalSpec(name="notebook_overlap", stage="evidence", producer="kg-read-and-check",
                     meaning="share of the question's words in the top passage", maps=("open_book",))


@validated
async def overlap(state, runtime):
    """Write ``notebook_overlap`` for the passage the search found."""
    words = set(state.question.lower().rstrip("?").split())
    top = state.evidence.passages[0].text.lower() if state.evidence and state.evidence.passages else ""
    share = len(words & set(top.rstrip(".").split())) / max(1, len(words))
    return {"signals": nodes.merge_signals(state, notebook_overlap=round(share, 4))}


def build(checkpointer=None):
    """The ``read-and-check`` graph."""
    return pipeline_graph("read-and-check", [("search", nodes.search), ("overlap", overlap),
                                             ("draft", nodes.draft), ("refine", nodes.refine)],
                          checkpointer)


class Notebook:
    """A Searcher over ``role_options.searcher.passages``: the best word overlap wins."""

    def __init__(self, passages, price_usd):
        self.passages, self.price_usd = passages, price_usd

    async def __call__(self, query):
        words = set(query.lower().rstrip("?").split())
        best = max(self.passages, key=lambda i: len(words & set(self.passages[i].lower().split())))
        return Evidence(query=query, passages=[Passage(id=best, text=self.passages[best])],
                        support=1.0, cost_usd=self.price_usd)


NOTEBOOK = RoleFactory(
    roles={"searcher"},
    build=lambda request: Notebook(dict(request.options["passages"]),
                                   float(request.options.get("price_usd", 0.0))),
    price=lambda request: float(request.options.get("price_usd", 0.0)),
    description="passages from role_options.searcher.passages")


def world_dir():
    """The lab's world: here the synthetic world's directory, under the plugin's name."""
    return shipped_world_dir("synthetic")
