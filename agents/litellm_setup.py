"""Import litellm without network access at import time and without console noise.

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

    # litellm prints a "Give Feedback / Get Help" banner on every exception; knowgate reports
    # errors itself (an error never logs as a side effect), as litellm's own Router also does.
    litellm.suppress_debug_info = True
    return litellm
