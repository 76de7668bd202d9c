"""knowgate: decide per question whether to answer, search, refine or abstain.

The public surface is small and re-exported here; heavy dependencies (torch, transformers,
chromadb, litellm) load lazily inside the functions that need them.
"""

from knowgate.errors import (
    KnowgateError,
    MissingExtraError,
    ModelLoadError,
    RunError,
    SearchBackendError,
    UserError,
    WorldError,
)
from knowgate.settings import Settings, load_settings
from knowgate.worlds.world import World, default_world_dir

__version__ = "0.1.0"

__all__ = [
    "KnowgateError",
    "MissingExtraError",
    "ModelLoadError",
    "RunError",
    "SearchBackendError",
    "Settings",
    "UserError",
    "World",
    "WorldError",
    "__version__",
    "default_world_dir",
    "load_settings",
]
