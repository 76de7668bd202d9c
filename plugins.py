"""Plugins: what separately installed packages add to knowgate, found by entry point.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."knowgate.graphs"]
    two-searches = "my_package.graphs:build_two_searches"

and once it is installed every surface (``knowgate graph list``, ``knowgate ask --graph``,
``knowgate eval run --graph``, ``knowgate serve`` and its ``/v1/models``) finds the graph under
the entry point's name. A graph entry point is a builder, ``builder(checkpointer=None)``
returning a compiled graph (``knowgate.graphs.building.new_graph`` is the usual start); a
builder with ``served = False`` is for evaluations only.

Worlds the same way, under ``knowgate.worlds``: the entry point is a world directory (a path,
or a function returning one, e.g. from ``importlib.resources``), and ``knowgate world list``
and ``--world NAME`` (the ``world`` setting) find it by name.

Role factories under ``knowgate.roles``: the entry point is a
``knowgate.role_factories.RoleFactory``, and a role setting names it (``searcher = "my-search"``,
``critic = "my-critic:ARGUMENT"``) wherever settings are read: ``knowgate ask``, ``eval run``,
``calibrate``, ``serve``.

Signals under ``knowgate.signals``: the entry point is a ``knowgate.signals.SignalSpec`` (or a
list of them), and ``knowgate signal list``, the trace and ``knowgate calibrate`` read it.

Loading is isolated: an entry point that fails to import, is not callable, or takes a name
already taken becomes a ``PluginFailure`` naming the plugin, its distribution and the error; the
other plugins and knowgate carry on, and asking for the failed name gives that message.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GRAPH_GROUP = "knowgate.graphs"
WORLD_GROUP = "knowgate.worlds"
ROLE_GROUP = "knowgate.roles"
SIGNAL_GROUP = "knowgate.signals"


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be used.

    Attributes:
        group: The entry-point group (``knowgate.graphs`` ...).
        name: The entry point's name (the graph's name, for graphs).
        value: What it points at (``module:attribute``).
        distribution: The installed package that declares it, when known.
        error: What went wrong.
    """

    group: str
    name: str
    value: str
    distribution: str | None
    error: str

    def message(self) -> str:
        """One line for the user: which plugin, what it points at, what failed."""
        source = f"the package {self.distribution!r}" if self.distribution else "a package"
        return (f"{source} declares {self.group} entry point {self.name!r} = {self.value!r}, "
                f"which failed to load: {self.error}")


def load_entry_points(group: str, prepare: Callable[[str, Any], Any] | None = None
                      ) -> tuple[dict[str, Any], list[PluginFailure]]:
    """Every entry point of ``group``, loaded: ``(name -> object, failures)``.

    Args:
        group: The entry-point group.
        prepare: ``prepare(name, loaded object)`` returns what to use, or raises saying why
            it cannot be used (its message becomes the failure's ``error``).
    """
    loaded: dict[str, Any] = {}
    failures: list[PluginFailure] = []
    for point in sorted(importlib.metadata.entry_points(group=group), key=lambda p: p.name):
        dist = getattr(getattr(point, "dist", None), "name", None)

        def failed(error: str, point: Any = point, dist: str | None = dist) -> None:
            failures.append(PluginFailure(group, point.name, point.value, dist, error))

        if point.name in loaded:
            failed("another installed package declares the same name")
            continue
        try:
            value = point.load()
            loaded[point.name] = prepare(point.name, value) if prepare is not None else value
        except Exception as exc:  # a plugin's error must not take knowgate down
            failed(f"{type(exc).__name__}: {exc}")
    return loaded, failures
