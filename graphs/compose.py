"""Graphs composed from the nodes: the triage graph, the baselines, and a registry by name.

Evaluations, the server and ``knowgate ask`` look graphs up by name (``require_graph``,
``graph_names``, ``served_graphs``); developers register their own in-process with
``register_graph``, or from a package of their own with a ``knowgate.graphs`` entry point
(``knowgate.plugins``), or compose nodes directly as these builders do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START

from knowgate.errors import UserError
from knowgate.graphs import nodes
from knowgate.graphs.baselines import build_fast_slow_graph, build_probe_gated_graph
from knowgate.graphs.building import new_graph, pipeline_graph
from knowgate.plugins import GRAPH_GROUP, PluginFailure, load_entry_points

GraphBuilder = Callable[..., Any]


def build_triage_graph(checkpointer: Any = None) -> Any:
    """The full policy graph: probe, then let the policy choose until it answers or abstains.

    Shape: ``START -> probe -> decide``; ``decide`` routes to ``draft``, ``search``, ``refine``,
    ``answer`` or ``abstain``; a draft is probed and decided on again, a search is read by a new
    draft, a refinement is decided on again.

    Args:
        checkpointer: A LangGraph checkpointer (e.g. ``AsyncSqliteSaver``) to persist threads.
    """
    graph = new_graph()
    for name in ("probe", "decide", "draft", "search", "refine", "answer", "abstain"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_edge(START, "probe")
    graph.add_edge("probe", "decide")
    graph.add_conditional_edges("decide", nodes.route)
    graph.add_edge("draft", "probe")
    graph.add_conditional_edges("search", nodes.after_search)
    graph.add_edge("refine", "decide")
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer, name="triage")


def _pipeline(name: str, stages: list[str], checkpointer: Any) -> Any:
    return pipeline_graph(name, [(stage, getattr(nodes, stage)) for stage in stages],
                          checkpointer)


def build_fast_only_graph(checkpointer: Any = None) -> Any:
    """Baseline: the fast answerer's closed-book draft, always given."""
    return _pipeline("fast-only", ["draft"], checkpointer)


def build_always_search_graph(checkpointer: Any = None) -> Any:
    """Baseline (RAG): search every question, then draft from the passages."""
    return _pipeline("always-search", ["search", "draft"], checkpointer)


def build_always_refine_graph(checkpointer: Any = None) -> Any:
    """Baseline: draft, then have the critic check every draft; its verdict is final."""
    return _pipeline("always-refine", ["draft", "refine"], checkpointer)


GRAPHS: dict[str, GraphBuilder] = {
    "triage": build_triage_graph,
    "fast-only": build_fast_only_graph,
    "always-search": build_always_search_graph,
    "always-refine": build_always_refine_graph,
    "fast-slow": build_fast_slow_graph,
    "probe-gated": build_probe_gated_graph,
}


# Graphs registered for evaluations only (they read dataset labels or run every role): the
# chat server never lists or serves them.
EVAL_ONLY: set[str] = set()


def register_graph(name: str, builder: GraphBuilder, *, served: bool = True) -> None:
    """Add a graph under ``name`` (``builder(checkpointer=None)`` returns a compiled graph).

    Args:
        name: The registered name.
        builder: Returns the compiled graph.
        served: Whether the chat server may serve it; ``False`` for evaluation-only graphs.
    """
    if not name or name in GRAPHS:
        raise UserError(f"graph name {name!r} is empty or taken")
    GRAPHS[name] = builder
    if not served:
        EVAL_ONLY.add(name)


# Graph entry points of installed packages that could not be registered, by name (filled once,
# by ``load_plugin_graphs``).
PLUGIN_FAILURES: dict[str, PluginFailure] = {}
_plugins_loaded = False


def _builder(name: str, value: Any) -> GraphBuilder:
    if not callable(value):
        raise TypeError(f"{type(value).__name__} is not a graph builder")
    if not name or name in GRAPHS:
        raise ValueError(f"the graph name {name!r} is empty or already registered")
    return value


def load_plugin_graphs() -> list[PluginFailure]:
    """Register the graphs of every installed ``knowgate.graphs`` entry point (once per
    process) and return the entry points that failed, each naming its plugin."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        builders, failures = load_entry_points(GRAPH_GROUP, _builder)
        for name, builder in builders.items():
            register_graph(name, builder, served=getattr(builder, "served", True) is not False)
        PLUGIN_FAILURES.update({f.name: f for f in failures})
    return list(PLUGIN_FAILURES.values())


def graph_names() -> list[str]:
    """Every registered graph name (plugins' included), sorted."""
    load_plugin_graphs()
    return sorted(GRAPHS)


def served_graphs() -> list[str]:
    """The names of the graphs the chat server serves (plugins' included), sorted."""
    return [name for name in graph_names() if name not in EVAL_ONLY]


def require_graph(name: str) -> GraphBuilder:
    """The builder registered as ``name`` (a plugin's included).

    Raises:
        UserError: No graph has that name, or the plugin that declares it failed to load.
    """
    names = graph_names()
    if name in PLUGIN_FAILURES and name not in GRAPHS:
        raise UserError(PLUGIN_FAILURES[name].message())
    if name not in GRAPHS:
        raise UserError(f"unknown graph {name!r}; choose one of {', '.join(names)}")
    return GRAPHS[name]


def compile_graph(name: str, checkpointer: Any = None) -> Any:
    """The compiled graph registered as ``name`` (roles come at run time, as its context).

    Raises:
        UserError: No graph has that name.
    """
    return require_graph(name)(checkpointer=checkpointer)
