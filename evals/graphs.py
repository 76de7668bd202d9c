"""The graph that only makes sense in an evaluation: the oracle.

* ``oracle`` reads the question's class label (given by the runner in the run config, from the
  dataset record) and takes the cheapest path that can be right for that class: fast-known ->
  draft; searchable -> search and draft; slow-known -> the critic alone; unanswerable -> abstain.
  It is the ceiling the policy is measured against; the policy itself never sees labels.

Exploring is not a graph but a mode of any run (``knowgate eval run --graph G --explore``,
``knowgate.evals.explore``); ``--graph explore`` is the triage graph explored.

The oracle lives in its own registry, ``EVAL_GRAPHS``: the evaluation surfaces (``eval run``,
``graph show``/``graph list``, ``calibrate``) look names up with ``eval_graph_builder``, which
also finds every registered graph; ``Knowgate.ask`` and the chat server never see them.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START

from knowgate.errors import UserError
from knowgate.graphs import nodes
from knowgate.graphs.building import new_graph
from knowgate.graphs.compose import PLUGIN_FAILURES, GraphBuilder, graph_names, require_graph
from knowgate.graphs.state import Decision, TriageState

ORACLE_ROUTES = {"fast-known": "draft", "searchable": "search", "slow-known": "refine",
                 "unanswerable": "abstain"}


async def oracle_route(state: TriageState, config: RunnableConfig) -> dict[str, Any]:
    """Choose the path from the class label in ``config["configurable"]["kind"]``.

    Raises:
        UserError: The record has no known class (the oracle needs labelled data).
    """
    kind = (config.get("configurable") or {}).get("kind")
    if kind not in ORACLE_ROUTES:
        raise UserError(f"the oracle needs a class label ({', '.join(ORACLE_ROUTES)}); "
                        f"this record has {kind!r}")
    return {"decision": Decision(action=ORACLE_ROUTES[kind],  # type: ignore[arg-type]
                                 reason=f"class {kind}: {ORACLE_ROUTES[kind]}")}


def build_oracle_graph(checkpointer: Any = None) -> Any:
    """``route -> draft | search -> draft | refine | abstain``, then answer-or-abstain."""
    graph = new_graph()
    graph.add_node("route", oracle_route)
    for name in ("draft", "search", "refine", "answer", "abstain"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", nodes.route, ["draft", "search", "refine", "abstain"])
    graph.add_edge("search", "draft")
    for last in ("draft", "refine"):
        graph.add_conditional_edges(last, nodes.answer_or_abstain)
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name="oracle")


EVAL_GRAPHS: dict[str, GraphBuilder] = {"oracle": build_oracle_graph}


def eval_graph_names() -> list[str]:
    """Every graph an evaluation can run: the registered ones and ``EVAL_GRAPHS``, sorted."""
    return sorted({*graph_names(), *EVAL_GRAPHS})


def eval_graph_builder(name: str) -> GraphBuilder:
    """The builder of an evaluation graph, or of any registered graph.

    Raises:
        UserError: No graph has that name (or its plugin failed to load).
    """
    if name in EVAL_GRAPHS:
        return EVAL_GRAPHS[name]
    if name in graph_names() or name in PLUGIN_FAILURES:
        return require_graph(name)  # a failed plugin's name gets the plugin's error
    raise UserError(f"unknown graph {name!r}; choose one of {', '.join(eval_graph_names())}")


def compile_eval_graph(name: str, checkpointer: Any = None) -> Any:
    """``eval_graph_builder(name)(checkpointer=checkpointer)``."""
    return eval_graph_builder(name)(checkpointer=checkpointer)
