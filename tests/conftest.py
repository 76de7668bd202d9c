"""Shared fixtures. Tests never reach a model hub: offline flags are set before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite's default world is the synthetic one (tiny models, seconds per test); the tests of
# the factbook world, knowgate's default, name it. Subprocesses inherit this too.
os.environ["KNOWGATE_WORLD"] = "synthetic"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from knowgate.worlds.world import World  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir for the session, so the shipped corpus is indexed once."""
    return tmp_path_factory.mktemp("knowgate-data")


@pytest.fixture(scope="session")
def shipped_world() -> World:
    """The synthetic world that ships in the package (the suite's default world)."""
    return World("synthetic")
