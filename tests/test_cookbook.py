"""The cookbook (``examples/cookbook``) runs as written, through the public API only.

Four tasks a developer composing graphs meets: a second search with a reformulated query, a
self-consistency signal from sampling, their own searcher and critic in the stock triage graph,
and a package of their own that every surface finds (``tests/test_plugins.py`` installs it).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from knowgate import GRAPHS, Knowgate, load_settings, register_graph
from knowgate.evals.datasets import Dataset, EvalItem
from knowgate.evals.records import read_records
from knowgate.evals.runner import run_eval
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Passage
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedSearcher

COOKBOOK = Path(__file__).resolve().parent.parent / "examples" / "cookbook"
EXAMPLES = sorted([*COOKBOOK.glob("*.py"), *COOKBOOK.glob("*/*/__init__.py")])
QUESTION = "Where was Sebrurt Shenom born?"


def _load(name: str) -> ModuleType:
    path = COOKBOOK / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cookbook_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def private_names(path: Path) -> list[str]:
    """Every private knowgate name ``path`` uses: ``_x`` imported from knowgate, or an
    attribute ``._x`` (dunders aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("knowgate"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            found += [node.module] if any(p.startswith("_") for p in node.module.split(".")) else []
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            found.append(node.attr)
    return found


def test_the_cookbook_has_four_short_examples_that_use_no_private_name() -> None:
    assert [p.relative_to(COOKBOOK).as_posix() for p in EXAMPLES] == [
        "custom_roles.py", "plugin_package/kg_read_and_check/__init__.py",
        "second_search.py", "self_consistency.py"]
    for path in EXAMPLES:
        assert private_names(path) == [], path
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 100, path


def test_the_private_name_check_catches_one(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from knowgate.graphs.nodes import _call\nimport knowgate\n"
                      "knowgate.graphs.nodes._passages\n")
    assert private_names(sneaky) == ["knowgate.graphs.nodes._call", "_passages"]


def _graph(name: str, module: ModuleType) -> str:
    if name not in GRAPHS:
        register_graph(name, module.build)
    return name


def _context(policy: Policy, **roles: object) -> TriageContext:
    return TriageContext(policy=policy, prices=Prices(draft=0.000003, search=0.00003,
                                                      refine=0.00015), **roles)  # type: ignore[arg-type]


WRONG = Passage(id="p-wrong", text="Sebrurt Lake is a lake.")
RIGHT = Passage(id="p-right", text="Sebrurt Shenom was born in Haiora.")


def _second_search_roles() -> dict[str, object]:
    example = _load("second_search")
    reformulated = "Sebrurt Shenom born"
    assert example.reformulate(type("S", (), {"question": QUESTION})) == reformulated
    return {"answerer": ScriptedAnswerer(opened={QUESTION: ("Haiora", 0.95)}),
            "searcher": ScriptedSearcher(results={QUESTION: ([WRONG], 0.2),
                                                  reformulated: ([RIGHT], 0.9)})}


async def test_a_second_search_is_bounded_and_priced_like_the_first() -> None:
    graph = _graph("cookbook-second-search", _load("second_search"))
    roles = _second_search_roles()
    twice = await Knowgate(context=_context(Policy(max_searches=2), **roles)).ask(
        QUESTION, graph=graph)
    assert twice.path == ["draft", "search", "search_again", "draft", "answer"]
    assert (twice.answer, twice.citations) == ("Haiora", ["p-right"])
    assert twice.ledger["searcher"] == {"calls": 2, "cost_usd": pytest.approx(2 * 0.00003)}
    # With one search allowed, the policy's bound stops the second one.
    once = await Knowgate(context=_context(Policy(max_searches=1), **_second_search_roles())
                          ).ask(QUESTION, graph=graph)
    assert once.path[:3] == ["draft", "search", "draft"] and "search_again" not in once.path


async def test_a_second_search_is_counted_in_the_eval_records(tmp_path: Path) -> None:
    graph = _graph("cookbook-second-search", _load("second_search"))
    dataset = Dataset("one", [EvalItem(id="q1", question=QUESTION, answers=["Haiora"])])
    settings = load_settings(data_dir=tmp_path)
    await run_eval(dataset, graph, tmp_path / "run", settings,
                   context=_context(Policy(max_searches=2), **_second_search_roles()))
    [record] = read_records(tmp_path / "run")
    assert record.searches == 2 and record.correct is True
    assert [(c.source, c.answer, c.searched) for c in record.candidates] == [
        ("closed_book", "no idea", 0), ("open_book", "Haiora", 2)]


async def test_self_consistency_samples_and_the_policy_weighs_agreement() -> None:
    example = _load("self_consistency")
    graph = _graph("cookbook-self-consistency", example)
    policy = Policy.model_validate(example.AGREEMENT_POLICY)
    assert policy.undeclared() == []  # the example declared its signal (knowgate.signals)
    agreed = ScriptedAnswerer(closed={QUESTION: ("Haiora", 0.3)},
                              sampled={QUESTION: ["Haiora"] * 4 + ["Kudal"]})
    result = await Knowgate(context=_context(policy, answerer=agreed)).ask(QUESTION, graph=graph)
    assert result.path == ["draft", "sample", "answer"]
    assert result.signals["sample_agreement"] == 0.8
    sampled = result.steps[1]
    assert sampled.cost_usd == pytest.approx(5 * agreed.price_usd)
    assert result.confidence == pytest.approx(1 / (1 + 2.718281828 ** -(-3.0 + 6.0 * 0.8)),
                                              rel=1e-6)
    # Samples that disagree leave the draft untrusted: the critic is asked instead.
    split = ScriptedAnswerer(closed={QUESTION: ("Haiora", 0.3)},
                             sampled={QUESTION: ["Haiora", "Kudal", "Oslo", "Lima", "Rome"]})
    critic = ScriptedCritic(verdicts={QUESTION: ("revise", "Haiora", 0.95)})
    checked = await Knowgate(context=_context(policy, answerer=split, critic=critic)).ask(
        QUESTION, graph=graph)
    assert checked.path[:3] == ["draft", "sample", "refine"]
    assert checked.signals["sample_agreement"] == 0.2
    # The policy's rounds bound the sampling pass: with none allowed it never samples.
    unsampled = policy.model_copy(update={"rounds": {"sample": 0}})
    bare = await Knowgate(context=_context(unsampled, answerer=split, critic=critic)).ask(
        QUESTION, graph=graph)
    assert "sample" not in bare.path


async def test_custom_roles_chosen_by_name_run_the_stock_triage_graph(tmp_path: Path) -> None:
    example = _load("custom_roles")
    from knowgate.composition import ROLES

    if "keyword" not in ROLES.factories:
        example.register()
    passages = {"n1": RIGHT.text, "n2": WRONG.text}
    settings = load_settings(world="synthetic", data_dir=tmp_path, device="cpu",
                             searcher="keyword", critic="second-opinion",
                             role_options={"searcher": {"passages": passages,
                                                        "price_usd": 0.0001}})
    session = Knowgate(settings)
    assert type(session.context.searcher).__name__ == "KeywordSearcher"
    assert session.context.prices.search == 0.0001
    result = await session.ask(QUESTION, graph="always-search")
    assert result.steps[0].role == "searcher" and result.steps[0].cost_usd == 0.0001
    assert set(result.citations) <= {"n1"}
    checked = await session.ask(QUESTION, graph="always-refine")
    assert checked.path[:2] == ["draft", "refine"]
    assert checked.ledger["critic"]["cost_usd"] == 0.0
