"""Roles chosen by name in the settings: specs, the stock factories, and a developer's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knowgate import Knowgate, RoleFactory, UserError, load_settings
from knowgate.composition import ROLES, build_context, estimate_prices, role_specs
from knowgate.role_factories import RoleSpec
from knowgate.roles import Evidence, Passage

QUESTION = "In which city was Sebrurt Shenom born?"


def _settings(tmp_path: Path, **values: object):
    return load_settings(world="synthetic", data_dir=tmp_path, device="cpu", **values)


def test_a_spec_names_its_factory_or_is_the_default_factorys_argument(tmp_path: Path) -> None:
    specs = role_specs(_settings(tmp_path, answerer="litellm:openai/gpt-4o-mini",
                                 critic="bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                                 prober="off"))
    assert specs["answerer"] == RoleSpec("answerer", "litellm", "openai/gpt-4o-mini")
    # A model id with a colon of its own is still the litellm factory's argument.
    assert specs["critic"] == RoleSpec("critic", "litellm",
                                       "bedrock/anthropic.claude-3-haiku-20240307-v1:0")
    assert specs["prober"] == RoleSpec("prober", "off")
    assert specs["searcher"] == RoleSpec("searcher", "chroma")
    # An unset prober is the transformers prober over the world's fast model.
    assert role_specs(_settings(tmp_path))["prober"] == RoleSpec("prober", "transformers")


@pytest.mark.parametrize(("values", "message"), [
    ({"searcher": "chromaa"}, "no role factory 'chromaa' builds the searcher; did you mean "
                              "'chroma'?"),
    ({"critic": "chroma"}, "the role factory 'chroma' builds searcher, not the critic"),
    ({"searcher": "chroma:mine"}, "the chroma searcher takes no argument"),
    ({"answerer": "litellm"}, "the answerer spec needs an argument: FACTORY:MODEL"),
    ({"prober": "off:now"}, "'off' takes no argument"),
    ({"role_options": {"answerer": {"temperature": 0.3}}},
     "role_options.answerer: the 'litellm' factory takes no options (got temperature)"),
])
def test_a_bad_spec_is_one_clear_error_before_anything_runs(
        tmp_path: Path, values: dict[str, object], message: str) -> None:
    with pytest.raises(UserError) as caught:
        build_context(_settings(tmp_path, **values))
    assert message in str(caught.value)


def test_role_options_are_keyed_by_role(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="role_options.searchr"):
        _settings(tmp_path, role_options={"searchr": {}})


async def test_roles_turned_off_are_absent_and_the_policy_never_picks_them(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path, searcher="off", critic="off")
    session = Knowgate(settings)
    assert session.context.searcher is None and session.context.critic is None
    assert session.context.prober is not None and session.context.answerer is not None
    result = await session.ask(QUESTION)
    assert result.outcome in ("answered", "abstained")
    assert not {"search", "refine"} & set(result.path)
    # Nothing opened the world's index: no chromadb directory was made.
    assert not (tmp_path / "chroma").exists()


class _ShelfSearcher:
    """A developer's searcher: one fixed passage, at a price of its own."""

    def __init__(self, text: str, price_usd: float) -> None:
        self.text, self.price_usd = text, price_usd

    async def __call__(self, query: str) -> Evidence:
        return Evidence(query=query, passages=[Passage(id="shelf-1", text=self.text)],
                        support=1.0, cost_usd=self.price_usd)


@pytest.fixture
def shelf() -> Iterator[str]:
    """A searcher factory registered in-process under a name of its own (removed after)."""
    name = "shelf"
    ROLES.register(name, RoleFactory(
        {"searcher"},
        lambda request: _ShelfSearcher(request.options.get("text", request.argument or ""),
                                       float(request.options.get("price_usd", 0.0))),
        price=lambda request: float(request.options.get("price_usd", 0.0))))
    ROLES.register("not-a-searcher", RoleFactory({"searcher"}, lambda request: object()))
    ROLES.register("crashing", RoleFactory({"searcher"}, lambda request: 1 / 0,
                                           price=lambda request: -1.0))
    yield name
    for registered in (name, "not-a-searcher", "crashing"):
        del ROLES.factories[registered]


async def test_a_registered_factory_is_chosen_by_name_and_priced(
        tmp_path: Path, shelf: str) -> None:
    options = {"searcher": {"text": "Sebrurt Shenom was born in Haiora.", "price_usd": 0.004}}
    settings = _settings(tmp_path, searcher=shelf, role_options=options)
    assert estimate_prices(settings).search == 0.004  # the policy weighs the factory's price
    overridden = _settings(tmp_path, searcher=shelf, role_options=options,
                           search_price_usd=0.01)
    assert estimate_prices(overridden).search == 0.01  # the setting wins, as for chromadb
    result = await Knowgate(settings).ask(QUESTION, graph="always-search")
    assert result.path[0] == "search"
    assert result.steps[0].cost_usd == 0.004 and result.steps[0].role == "searcher"
    assert set(result.citations) <= {"shelf-1"}


def test_a_factory_that_builds_no_role_or_crashes_is_named(tmp_path: Path, shelf: str) -> None:
    with pytest.raises(UserError, match="built a object, which does not implement the searcher "
                                        r"protocol \(knowgate.roles.Searcher\)"):
        build_context(_settings(tmp_path, searcher="not-a-searcher"))
    with pytest.raises(UserError, match="'crashing' could not build the searcher .*"
                                        "ZeroDivisionError"):
        build_context(_settings(tmp_path, searcher="crashing", search_price_usd=0.0))
    with pytest.raises(UserError, match="priced the searcher at -1.0 dollars"):
        estimate_prices(_settings(tmp_path, searcher="crashing"))


def test_a_factory_name_is_a_word_and_is_taken_once() -> None:
    factory = RoleFactory({"critic"}, lambda request: None)
    with pytest.raises(UserError, match="must be a word"):
        ROLES.register("two words", factory)
    with pytest.raises(UserError, match="is taken"):
        ROLES.register("chroma", factory)
    with pytest.raises(ValueError, match="builds some of"):
        RoleFactory({"judge"}, lambda request: None)

