"""The two building blocks every registered graph starts from (no registry here, so that
``compose``, ``baselines`` and the evaluation graphs can all import it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langgraph.graph import END, START

from knowgate.graphs import nodes
from knowgate.graphs.direct import MachineGraph
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.state import TriageState


def new_graph() -> MachineGraph:
    """An empty graph over ``TriageState`` whose runtime context is a ``TriageContext``.

    A ``StateGraph`` in all it does; as long as every node has one way out, runs without a
    checkpointer or callbacks skip the Pregel loop (``knowgate.graphs.direct``).
    """
    return MachineGraph(TriageState, context_schema=TriageContext)


def pipeline_graph(name: str, stages: Sequence[tuple[str, Callable[..., Any]]],
                   checkpointer: Any = None) -> Any:
    """A fixed sequence of ``(node name, node)`` stages that ends in answer-or-abstain."""
    graph = new_graph()
    for stage, node in stages:
        graph.add_node(stage, node)
    graph.add_node("answer", nodes.answer)
    graph.add_node("abstain", nodes.abstain)
    names = [stage for stage, _ in stages]
    graph.add_edge(START, names[0])
    for before, after in zip(names, names[1:], strict=False):
        graph.add_edge(before, after)
    graph.add_conditional_edges(names[-1], nodes.answer_or_abstain)
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name=name)
