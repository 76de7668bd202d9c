"""Running a state-machine graph node by node, without LangGraph's Pregel loop.

Why: Pregel plans tasks, writes channels and emits a checkpoint at every superstep, about 0.7 ms
of Python per step, and a triage question takes 6-10 steps: with fast roles that is most of a
question's CPU (``bench/performance.py``, ``orchestration_ms``). Most runs need none of it. A
graph built with ``new_graph()`` whose every node has one way out (an edge, or a conditional
edge that picks one node) is a state machine; ``run_values`` calls its nodes in turn with the
state, ``runtime`` and ``config`` Pregel would give them, applies their updates through the
state's channels (a field's reducer included) and validates the state between nodes as Pregel
does.

Pregel stays the engine whenever something needs it: a checkpointer (threads), LangChain
callbacks (a user's tracer), interrupts, and any graph outside that shape (fan-out, ``Send``,
``Command``, subgraphs, retry or cache policies). The graph itself is always the LangGraph
graph: this module only reads the nodes and edges its builder recorded. Knowgate's own view of
a run's nodes (the server's spans, usage and budget progress) is ``NodeHooks``, which both
engines call: the direct one around each node, Pregel through ``HookCallbacks``.
``tests/test_direct.py`` checks that both engines give the same states for every registered
graph.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.channels import BinaryOperatorAggregate, LastValue
from langgraph.errors import GraphRecursionError, InvalidUpdateError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel

_log = logging.getLogger("knowgate.graphs")
# LangGraph's default bound on supersteps per run (``config["recursion_limit"]``).
DEFAULT_RECURSION_LIMIT = 25
# Parameters LangGraph fills in by name besides the state; others keep a graph on Pregel.
_INJECTED = ("config", "runtime")


class NodeHooks(Protocol):
    """Told about every node of a run, in order, whichever engine runs it."""

    async def node_started(self, node: str, state: Any) -> None:
        """``node`` is about to run on ``state``."""

    async def node_finished(self, node: str, update: dict[str, Any]) -> None:
        """``node`` returned ``update`` (its partial state update)."""

    async def node_failed(self, node: str, error: BaseException) -> None:
        """``node`` raised ``error`` (or was cancelled)."""


class HookCallbacks(AsyncCallbackHandler):
    """``NodeHooks`` fed from LangGraph's callbacks, for runs on Pregel: LangGraph reports each
    node run as a chain tagged ``graph:step:N`` whose output is the node's update."""

    def __init__(self, hooks: NodeHooks) -> None:
        self.hooks = hooks
        self._nodes: dict[UUID, str] = {}

    async def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *,
                             run_id: UUID, tags: list[str] | None = None,
                             metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """A node started: ``hooks.node_started``."""
        if not any(tag.startswith("graph:step:") for tag in tags or ()):
            return
        node = (metadata or {}).get("langgraph_node") or kwargs.get("name") or "node"
        self._nodes[run_id] = node
        await self.hooks.node_started(node, inputs)

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A node returned: ``hooks.node_finished``."""
        node = self._nodes.pop(run_id, None)
        if node is not None:
            await self.hooks.node_finished(node, outputs if isinstance(outputs, dict) else {})

    async def on_chain_error(self, error: BaseException, *, run_id: UUID,
                             **kwargs: Any) -> None:
        """A node raised: ``hooks.node_failed``."""
        node = self._nodes.pop(run_id, None)
        if node is not None:
            await self.hooks.node_failed(node, error)


async def _tell(hooks: NodeHooks | None, event: str, node: str, value: Any) -> None:
    """Call one hook; a hook that raises is logged and the run goes on, as LangChain treats a
    failing callback on Pregel (the run's calls are paid for; its trace is not worth them)."""
    if hooks is None:
        return
    try:
        await getattr(hooks, event)(node, value)
    except Exception:
        _log.warning("node hook %s(%r) failed", event, node, exc_info=True)


def with_hooks(config: dict[str, Any] | None, hooks: NodeHooks | None) -> dict[str, Any]:
    """``config`` with ``hooks`` among its callbacks (for a run on Pregel)."""
    config = dict(config or {})
    if hooks is not None:
        config["callbacks"] = [*(config.get("callbacks") or []), HookCallbacks(hooks)]
    return config


class MachineGraph(StateGraph):
    """A ``StateGraph`` that also records its nodes and edges as given, so that
    ``run_values`` can run it directly when it is a state machine (see the module's doc).

    Build it exactly as a ``StateGraph``; anything the direct runner does not support (a node
    option, a join edge, a node given without a name) only keeps the graph on Pregel.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded_nodes: dict[str, Callable[..., Any]] = {}
        self.recorded_edges: dict[str, list[Any]] = {}
        self.unsupported: list[str] = []
        self._plan: _Plan | None | bool = False  # False: not planned yet

    def add_node(self, node: Any, action: Any = None, **kwargs: Any) -> Any:
        """``StateGraph.add_node``, recorded."""
        out = super().add_node(node, action, **kwargs)
        options = {k: v for k, v in kwargs.items() if v not in (None, False)}
        if isinstance(node, str) and callable(action) and not options:
            self.recorded_nodes[node] = action
        else:
            self.unsupported.append(f"node {node!r} (options {sorted(options)})")
        self._plan = False
        return out

    def add_edge(self, start_key: Any, end_key: str) -> Any:
        """``StateGraph.add_edge``, recorded."""
        out = super().add_edge(start_key, end_key)
        if isinstance(start_key, str):
            self.recorded_edges.setdefault(start_key, []).append(("edge", end_key))
        else:
            self.unsupported.append(f"join edge {start_key!r} -> {end_key!r}")
        self._plan = False
        return out

    def add_conditional_edges(self, source: str, path: Any, path_map: Any = None) -> Any:
        """``StateGraph.add_conditional_edges``, recorded."""
        out = super().add_conditional_edges(source, path, path_map)
        if callable(path) and not hasattr(path, "ainvoke"):
            self.recorded_edges.setdefault(source, []).append(("branch", (path, path_map)))
        else:
            self.unsupported.append(f"conditional edge from {source!r} (a Runnable path)")
        self._plan = False
        return out

    def plan(self) -> _Plan | None:
        """The direct plan of this graph, or ``None`` when it must run on Pregel."""
        if self._plan is False:
            self._plan = _Plan.of(self)
        return self._plan  # type: ignore[return-value]


@dataclass(frozen=True)
class _Call:
    """A node or route function and the parameters to fill in besides the state."""

    func: Callable[..., Any]
    injected: tuple[str, ...]
    is_async: bool

    @classmethod
    def of(cls, func: Callable[..., Any]) -> _Call | None:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return None
        if "Command" in str(signature.return_annotation):
            return None  # it routes itself: Pregel follows its goto
        params = list(signature.parameters.values())
        if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD):
            return None
        rest = [p.name for p in params[1:] if p.default is inspect.Parameter.empty]
        if any(name not in _INJECTED for name in rest):
            return None
        names = tuple(p.name for p in params[1:] if p.name in _INJECTED)
        unwrapped = inspect.unwrap(func)
        return cls(func, names, inspect.iscoroutinefunction(unwrapped)
                   or inspect.iscoroutinefunction(func))

    async def __call__(self, state: Any, runtime: Runtime[Any], config: dict[str, Any]) -> Any:
        kwargs = {name: runtime if name == "runtime" else config for name in self.injected}
        if self.is_async:
            return await self.func(state, **kwargs)
        result = self.func(state, **kwargs)
        return await result if inspect.isawaitable(result) else result


@dataclass(frozen=True)
class _Exit:
    """The one way out of a node: a fixed next node, or a route and its map."""

    target: str | None = None
    route: _Call | None = None
    path_map: dict[Hashable, str] | None = None

    async def next(self, state: Any, runtime: Runtime[Any], config: dict[str, Any]) -> str:
        if self.route is None:
            return self.target or END
        chosen = await self.route(state, runtime, config)
        if isinstance(chosen, list | tuple):
            if len(chosen) != 1:
                raise InvalidUpdateError(
                    f"a route chose {chosen!r}; a directly run graph follows one node at a "
                    "time (build it with StateGraph to fan out)")
            chosen = chosen[0]
        if not isinstance(chosen, Hashable):
            raise InvalidUpdateError(f"a route returned {chosen!r}, not a node name")
        if self.path_map is not None:
            if chosen not in self.path_map:
                raise InvalidUpdateError(f"a route returned {chosen!r}, not in its path map")
            return self.path_map[chosen]
        if not isinstance(chosen, str):
            raise InvalidUpdateError(f"a route returned {chosen!r}, not a node name")
        return chosen


@dataclass(frozen=True)
class _Plan:
    """Nodes, exits and channels of a state-machine graph."""

    schema: type[BaseModel]
    nodes: dict[str, _Call]
    exits: dict[str, _Exit]
    reducers: dict[str, Callable[[Any, Any], Any] | None]

    @classmethod
    def of(cls, graph: MachineGraph) -> _Plan | None:
        schema = graph.state_schema
        if graph.unsupported or graph.waiting_edges or graph.managed \
                or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return None
        reducers: dict[str, Callable[[Any, Any], Any] | None] = {}
        for name, channel in graph.channels.items():
            if type(channel) is LastValue:
                reducers[name] = None
            elif type(channel) is BinaryOperatorAggregate:
                reducers[name] = channel.operator
            else:
                return None
        nodes = {name: _Call.of(func) for name, func in graph.recorded_nodes.items()}
        if any(call is None for call in nodes.values()):
            return None
        exits: dict[str, _Exit] = {}
        for source in (START, *nodes):
            ways = graph.recorded_edges.get(source, [])
            if len(ways) > 1:
                return None  # fan-out
            if not ways:
                if source == START:
                    return None
                exits[source] = _Exit(target=END)
                continue
            kind, value = ways[0]
            if kind == "edge":
                exits[source] = _Exit(target=value)
                continue
            path, path_map = value
            route = _Call.of(path)
            if route is None:
                return None
            if isinstance(path_map, list):
                path_map = {name: name for name in path_map}
            exits[source] = _Exit(route=route, path_map=path_map)
        return cls(schema, nodes, exits, reducers)  # type: ignore[arg-type]

    def apply(self, state: BaseModel, update: Any, node: str) -> BaseModel:
        """``state`` after ``node``'s update, validated as Pregel validates it."""
        if update is None:
            return state
        if not isinstance(update, dict):
            raise InvalidUpdateError(
                f"node {node!r} returned {type(update).__name__}; a directly run graph's "
                "nodes return dict updates (build the graph with StateGraph for Command)")
        values = dict(state.__dict__)
        for key, value in update.items():
            if key not in self.reducers:
                raise InvalidUpdateError(f"node {node!r} returned the unknown field {key!r}")
            reducer = self.reducers[key]
            values[key] = value if reducer is None else reducer(values.get(key), value)
        return self.schema.model_validate(values)


def direct_plan(graph: Any, config: dict[str, Any] | None = None) -> _Plan | None:
    """The plan to run ``graph`` directly with ``config``, or ``None`` for Pregel."""
    builder = getattr(graph, "builder", None)
    if not isinstance(builder, MachineGraph):
        return None
    if getattr(graph, "checkpointer", None) is not None or getattr(graph, "store", None) \
            is not None or getattr(graph, "interrupt_before_nodes", None) \
            or getattr(graph, "interrupt_after_nodes", None):
        return None
    if config and (config.get("callbacks") or "checkpoint_id" in (config.get("configurable")
                                                                   or {})):
        return None
    return builder.plan()


async def run_values(graph: Any, state: BaseModel, *, context: Any = None,
                     config: dict[str, Any] | None = None,
                     hooks: NodeHooks | None = None) -> AsyncIterator[BaseModel]:
    """The state at the start and after every node, as ``graph.astream(stream_mode="values")``
    yields it, run directly when ``direct_plan`` allows and on Pregel otherwise; ``hooks`` are
    told about every node either way.

    Raises:
        GraphRecursionError: More nodes ran than ``config["recursion_limit"]`` (25) allows.
        InvalidUpdateError: A node returned something a state update cannot be.
        Exception: Whatever a node raised, as under Pregel.
    """
    plan = direct_plan(graph, config)
    if plan is None:
        async for values in graph.astream(state, config=with_hooks(config, hooks),
                                          context=context, stream_mode="values"):
            yield type(state).model_validate(values)
        return
    config = {"recursion_limit": DEFAULT_RECURSION_LIMIT, "metadata": {}, "tags": [],
              **(config or {})}
    config["configurable"] = dict(config.get("configurable") or {})
    limit = int(config["recursion_limit"])
    runtime: Runtime[Any] = Runtime(context=context)
    state = plan.schema.model_validate(state.__dict__ if isinstance(state, BaseModel) else state)
    yield state
    node = await plan.exits[START].next(state, runtime, config)
    ran = 0
    while node != END:
        if node not in plan.nodes:
            raise InvalidUpdateError(f"the graph has no node {node!r}")
        if ran >= limit:
            raise GraphRecursionError(f"Recursion limit of {limit} reached without hitting a "
                                      "stop condition")
        ran += 1
        await _tell(hooks, "node_started", node, state)
        try:
            update = await plan.nodes[node](state, runtime, config)
        except BaseException as exc:
            await _tell(hooks, "node_failed", node, exc)
            raise
        await _tell(hooks, "node_finished", node, update if isinstance(update, dict) else {})
        state = plan.apply(state, update, node)
        yield state
        node = await plan.exits[node].next(state, runtime, config)


async def run_graph(graph: Any, state: BaseModel, *, context: Any = None,
                    config: dict[str, Any] | None = None,
                    hooks: NodeHooks | None = None) -> BaseModel:
    """The final state of one run (``run_values``' last)."""
    final = state
    async for values in run_values(graph, state, context=context, config=config, hooks=hooks):
        final = values
    return final
