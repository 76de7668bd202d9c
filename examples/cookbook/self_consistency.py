"""A self-consistency signal: sample the answerer several times and measure agreement.

The sampling pass is a node of its own kind: it calls the answerer with sampling options (any
provider), is priced as five drafts and bounded by the policy (``rounds = {"sample": 1}``), and
adds the signal ``sample_agreement``, which the policy's maps weigh like any other signal (see
``AGREEMENT_POLICY``).
"""

from langgraph.graph import END, START

from knowgate.grading import normalize
from knowgate.graphs import nodes
from knowgate.graphs.building import new_graph
from knowgate.graphs.kinds import NodeKind
from knowgate.graphs.state import validated
from knowgate.roles import Sampling
from knowgate.signals import SIGNALS, SignalSpec

SAMPLES = Sampling(temperature=0.8, n=5)
SIGNALS.declare(SignalSpec(
    name="sample_agreement", stage="draft", producer="cookbook self-consistency",
    meaning="share of five samples at T=0.8 that agree with the closed-book draft",
    maps=("closed_book",)))  # calibrate tries it in the closed-book map
SAMPLE = NodeKind("sample", role="answerer", counts_as="sample", priced_as="draft",
                  calls=SAMPLES.n)


@validated
async def sample(state, runtime):
    """Sample the answerer; ``sample_agreement`` is the share of samples equal to the draft."""
    ctx = runtime.context
    closed_book = state.candidate is not None and state.candidate.source == "closed_book"
    if not closed_book or not ctx.policy.allows(state, SAMPLE, ctx.prices):
        return {}  # the signal describes closed-book drafts, the ones the map weighs it for
    call = await nodes.call_role(state, ctx, SAMPLE, state.question, sampling=SAMPLES)
    if call.failure is not None:
        return call.failure
    said = normalize(state.draft.answer)
    agreement = sum(normalize(s) == said for s in call.result.samples) / SAMPLES.n
    step = SAMPLE.step(f"{SAMPLES.n} samples at T={SAMPLES.temperature}: "
                       f"{agreement:.0%} agree with {state.draft.answer!r}",
                       call.result.cost_usd, call.seconds)
    return {"signals": nodes.merge_signals(state, sample_agreement=agreement),
            "steps": [step]}


def build(checkpointer=None):
    """The triage graph with a sampling pass after every draft, before the policy decides."""
    graph = new_graph()
    for name in ("probe", "decide", "draft", "search", "refine", "answer", "abstain"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_node("sample", sample)
    graph.add_edge(START, "probe")
    graph.add_edge("probe", "decide")
    graph.add_conditional_edges("decide", nodes.route)
    graph.add_edge("draft", "sample")
    graph.add_edge("sample", "probe")
    graph.add_conditional_edges("search", nodes.after_search)
    graph.add_edge("refine", "decide")
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name="self-consistency")


# A policy whose closed-book map trusts a draft the samples agree with (weights set by hand
# here; ``knowgate calibrate`` fits them from a run that records the signal).
AGREEMENT_POLICY = {
    "rounds": {"sample": 1},
    "maps": {
        "query": {"weights": {}},
        "closed_book": {"bias": -3.0, "weights": {"sample_agreement": 6.0}},
        "open_book": {"weights": {"draft_logit": 1.0}},
        "critic": {"weights": {"critic_logit": 1.0}},
    },
}
