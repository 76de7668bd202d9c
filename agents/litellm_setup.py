"""Import litellm without network access at import time.

litellm fetches its model cost map from the internet on import unless told to use the copy it
ships; knowgate must work offline, so every knowgate module imports litellm through here.
"""

from __future__ import annotations

import os
from typing import Any


def import_litellm() -> Any:
    """The ``litellm`` module, imported with the local cost map."""
    # setdefault: a user who points litellm at their own cost map keeps that choice.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm
