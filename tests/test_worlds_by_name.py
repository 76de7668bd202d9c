"""Worlds by name: `knowgate world list`, `--world NAME` on the commands, the world's card
deciding models, prompt styles, prices and policy, and no world opened when nothing needs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate import load_settings
from knowgate.cli import app
from knowgate.composition import WorldRef, estimate_prices, policy_path, search_price
from knowgate.errors import WorldError
from knowgate.worlds.world import DEFAULT_WORLD, World, shipped_worlds


def test_world_list_shows_both_shipped_worlds_with_licences() -> None:
    result = CliRunner().invoke(app, ["world", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"synthetic", "factbook"} <= set(rows) == set(shipped_worlds())
    assert sum(row["default"] for row in rows.values()) == 1 and rows[DEFAULT_WORLD]["default"]
    factbook = rows["factbook"]
    assert factbook["models"]["fast"]["licence"].startswith("Apache-2.0")
    assert "Gemma Terms of Use" in factbook["models"]["slow"]["licence"]
    assert "public domain" in factbook["licence"]
    assert factbook["questions"]["calibration"] + factbook["questions"]["test"] >= 1500


def test_without_a_world_setting_knowgate_runs_the_factbook_world(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KNOWGATE_WORLD", raising=False)  # the suite's own default is synthetic
    settings = load_settings()
    assert settings.world is None and World(settings.world).name == "factbook" == DEFAULT_WORLD
    # Its own fitted policy, not the synthetic world's.
    assert policy_path(settings) == World("factbook").policy_path
    assert policy_path(settings).is_file()


def test_an_unknown_world_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="atlantis is not a knowgate world.*factbook"):
        World("atlantis")
    result = CliRunner().invoke(app, ["ask", "--world", "atlantis", "--json", "Who?"])
    assert result.exit_code == 2 and "atlantis is not a knowgate world" in result.output


def test_the_card_decides_prices_search_and_policy() -> None:
    factbook = load_settings(world="factbook")
    synthetic = load_settings(world="synthetic")
    assert search_price(factbook) == World("factbook").card.search_price_usd
    assert search_price(synthetic) == World("synthetic").card.search_price_usd
    fast, slow = (World("factbook").prices(factbook)[m] for m in ("fast", "slow"))
    assert slow[0] / fast[0] == pytest.approx(2.0)  # in proportion to model size (270M/135M)
    assert estimate_prices(factbook).refine > estimate_prices(factbook).draft > 0
    overridden = load_settings(world="factbook", local_prices={"fast": (1.0, 1.0)},
                               search_price_usd=0.5)
    assert World("factbook").prices(overridden)["fast"] == (1.0, 1.0)
    assert search_price(overridden) == 0.5
    assert policy_path(load_settings(world="synthetic", policy=Path("x.json"))) == Path("x.json")


def test_hosted_roles_open_no_world(tmp_path: Path) -> None:
    settings = load_settings(world=str(tmp_path / "no-such-world"), answerer="openai/gpt-4o-mini",
                             critic="openai/gpt-4o", prober="off", collection="mydocs",
                             search_price_usd=0.001)
    world = WorldRef(settings)
    prices = estimate_prices(settings, world)
    assert prices.search == 0.001 and not world.opened


def test_world_check_points_a_measured_world_to_an_explore_run() -> None:
    result = CliRunner().invoke(app, ["world", "check", "--world", "factbook"])
    assert result.exit_code == 2 and "--graph explore" in result.output
