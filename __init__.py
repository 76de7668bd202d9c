"""knowgate: decide per question whether to answer, search, refine or abstain.

The public surface is small and re-exported here; heavy dependencies (torch, transformers,
chromadb, litellm) load lazily inside the functions that need them.
"""

from knowgate.asking import ask, ask_sync, build_graph
from knowgate.composition import build_context
from knowgate.errors import (
    KnowgateError,
    MissingExtraError,
    ModelLoadError,
    RunError,
    SearchBackendError,
    UserError,
    WorldError,
)
from knowgate.graphs.compose import GRAPHS, build_triage_graph, register_graph
from knowgate.role_factories import RoleFactory, RoleRequest
from knowgate.runtime import AskResult, ComposedGraph, Knowgate
from knowgate.settings import Settings, load_settings
from knowgate.worlds.world import World, default_world_dir

__version__ = "0.1.0"

__all__ = [
    "GRAPHS",
    "AskResult",
    "ComposedGraph",
    "Knowgate",
    "KnowgateError",
    "MissingExtraError",
    "RoleFactory",
    "RoleRequest",
    "ModelLoadError",
    "RunError",
    "SearchBackendError",
    "Settings",
    "UserError",
    "World",
    "WorldError",
    "__version__",
    "ask",
    "ask_sync",
    "build_context",
    "build_graph",
    "build_triage_graph",
    "default_world_dir",
    "load_settings",
    "register_graph",
]
