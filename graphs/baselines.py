"""Baseline graphs with a fixed rule instead of the policy, to compare the triage graph with.

* ``fast-slow`` (EKBM-style verbal confidence): draft; answer when the answerer says it is
  ``sure``, else have the critic answer.
* ``probe-gated`` (SKR / Internal-Confidence-style): read the query-level signals before any
  answer; draft closed-book when the policy's ``query`` map says the model knows, else search
  first and draft from the passages.

Both always answer when they have an answer (neither abstains on purpose).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from knowgate.graphs import nodes
from knowgate.graphs.building import new_graph
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.state import Decision, TriageState, validated


def _finish(graph: StateGraph, last: str) -> None:
    graph.add_node("answer", nodes.answer)
    graph.add_node("abstain", nodes.abstain)
    graph.add_conditional_edges(last, nodes.answer_or_abstain)
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)


@validated
async def verbal_gate(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Answer a draft the answerer called ``sure``; send any other to the critic."""
    sure = state.draft is not None and state.draft.label == "sure"
    label = state.draft.label if state.draft is not None else "no draft"
    return {"decision": Decision(action="answer" if sure else "refine",
                                 reason=f"the answerer said {label!r}")}


def query_threshold(context: TriageContext) -> float:
    """P(correct) at which the policy's utility favours answering over abstaining."""
    policy = context.policy
    return (policy.penalty_usd + policy.abstain_usd) / (policy.reward_usd + policy.penalty_usd)


@validated
async def probe_gate(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Draft closed-book when the query-level P(correct) clears the answer threshold, else
    search first."""
    ctx = runtime.context
    # The policy's query map: the trained probes' signal, or its fallback without them.
    p = ctx.policy.query_probability(ctx.policy.features(state))
    if p is None:
        return {"decision": Decision(action="draft", reason="no query-level signal: draft")}
    threshold = query_threshold(ctx)
    action = "draft" if p >= threshold else "search"
    return {"decision": Decision(action=action, p_correct=round(p, 6),
                                 reason=f"query-level P(correct)={p:.3f} "
                                        f"{'>=' if p >= threshold else '<'} {threshold:.3f}")}


def build_fast_slow_graph(checkpointer: Any = None) -> Any:
    """Baseline (verbal confidence): ``draft -> gate -> answer | refine -> answer/abstain``."""
    graph = new_graph()
    graph.add_node("draft", nodes.draft)
    graph.add_node("gate", verbal_gate)
    graph.add_node("refine", nodes.refine)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "gate")
    graph.add_conditional_edges("gate", nodes.route, ["answer", "refine"])
    _finish(graph, "refine")
    return graph.compile(checkpointer=checkpointer, name="fast-slow")


def build_probe_gated_graph(checkpointer: Any = None) -> Any:
    """Baseline (probe-gated RAG): ``probe -> gate -> draft | search -> draft -> answer/abstain``."""
    graph = new_graph()
    graph.add_node("probe", nodes.probe)
    graph.add_node("gate", probe_gate)
    graph.add_node("search", nodes.search)
    graph.add_node("draft", nodes.draft)
    graph.add_edge(START, "probe")
    graph.add_edge("probe", "gate")
    graph.add_conditional_edges("gate", nodes.route, ["draft", "search"])
    graph.add_edge("search", "draft")
    _finish(graph, "draft")
    return graph.compile(checkpointer=checkpointer, name="probe-gated")
