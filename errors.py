"""Typed errors, grouped by who has to act.

``UserError`` means the caller misused knowgate (bad path, bad option, bad record) and can fix
it; ``RunError`` means something failed while running (a model, a provider, the search backend).
Nothing here logs: callers at the edge (CLI, API, eval runner) decide how to report.
"""

from __future__ import annotations


class KnowgateError(Exception):
    """Base class of every error knowgate raises on purpose."""


class UserError(KnowgateError):
    """The caller asked for something that cannot work; the message says how to fix it."""


class MissingExtraError(UserError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with `pip install 'knowgate[{extra}]'`"
        )
        self.package = package
        self.extra = extra


class WorldError(UserError):
    """A world directory is missing, incomplete or inconsistent."""


class RunError(KnowgateError):
    """Something failed while running (a model, a provider, the search backend)."""


class ModelLoadError(RunError):
    """A local model or tokenizer could not be loaded from its directory."""


class SearchBackendError(RunError):
    """The search backend (chromadb) failed or is unreachable."""
