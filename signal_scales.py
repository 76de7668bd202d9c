"""The scale a signal is read on before a linear map weighs it.

Token probabilities pile up next to 1 and entropies next to 0 (about 0.04 for a fact a model
knows, 0.2 for a confident guess), so what tells them apart is orders of magnitude: a linear map
over the raw values cannot rank that end, over their logarithms it can. The probe combiners
(``knowgate.agents.probes``) and the policy's logistic maps (``knowgate.graphs.policy``) both read
signals through ``rescale``; each signal's own scale is declared with it (``knowgate.signals``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Scale = Literal["raw", "log", "neglog", "logit"]
_TINY = 1e-6


def rescale(value: Any, scale: Scale) -> Any:
    """``value`` (a float or a numpy array) on ``scale``: ``log``: log(v) for values >= 0
    (entropies); ``neglog``: log(-v) for values <= 0 (log-probabilities); ``logit``:
    log(p / (1 - p)) for probabilities; ``raw``: unchanged."""
    if scale == "log":
        return np.log(np.maximum(value, 0.0) + _TINY)
    if scale == "neglog":
        return np.log(np.maximum(-value, 0.0) + _TINY)
    if scale == "logit":
        p = np.clip(value, 0.0, 1.0)
        return np.log(p + _TINY) - np.log(1.0 - p + _TINY)
    return value
