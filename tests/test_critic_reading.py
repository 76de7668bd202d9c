"""The critic's reading read from the inside: a probe of the critic model's hidden states over the
passages it read and its answer (``EvidenceReader``), through the refine node, the explore tape,
calibrate, the runtime and the probe CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from knowgate import GRAPHS, register_graph
from knowgate.agents.hidden_states import render, run_passes
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.probe_training import READING_PROBE, save_reading
from knowgate.agents.prober import EvidenceReader
from knowgate.agents.probes import MANIFEST, LinearProbe, LinearProbeSpec, ProbeSet
from knowgate.aio import run_sync
from knowgate.cli import app
from knowgate.errors import UserError
from knowgate.evals.calibrate import calibrate, replay_all
from knowgate.evals.records import read_records
from knowgate.graphs import nodes
from knowgate.graphs.building import pipeline_graph
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy
from knowgate.roles import Passage
from knowgate.runtime import Knowgate
from knowgate.settings import load_settings
from knowgate.signals import SIGNALS, SignalRegistry
from knowgate.testing import (
    Fail,
    ScriptedAnswerer,
    ScriptedCritic,
    ScriptedProber,
    ScriptedReader,
    ScriptedSearcher,
)
from knowgate.tests.test_eval_runs import PRICES, explored_questions, graph_equals_replay, run
from knowgate.worlds.world import World

QUESTION = "Where was Ada Vell born?"
PASSAGE = Passage(id="p1", text="Ada Vell was born in Lorin and works for Quell.")


@pytest.fixture(scope="module")
def slow(shipped_world: World) -> LocalLM:
    return LocalLM(shipped_world.model_dir("slow"), "cpu", prefill_cache_mb=0)


def reading_set(directory: Path, lm: LocalLM, layer: int = 1, seed: int = 0) -> Path:
    """A probe of readings with random weights, saved as ``probe train`` saves one."""
    width = lm.model.config.hidden_size
    rng = np.random.default_rng(seed)
    spec = LinearProbeSpec(name=READING_PROBE, stage="answer", layer=layer, pooling="mean",
                           model="world:slow", mean=[0.0] * width, scale=[1.0] * width,
                           coef=rng.normal(size=width).round(4).tolist(), intercept=0.1)
    save_reading(spec, [], directory, "world:slow")
    return directory


async def test_the_reading_is_probed_over_the_prompt_that_holds_the_passages(
        slow: LocalLM, tmp_path: Path) -> None:
    probes = ProbeSet.load(reading_set(tmp_path / "reading", slow, layer=2))
    assert probes.reads == "evidence"
    spec = SIGNALS.get(READING_PROBE)
    assert spec is not None and spec.maps == ("critic",) and spec.stage == "verdict"
    reader = EvidenceReader.with_probes(slow, probes)
    assert reader.names == (READING_PROBE,)
    read = await reader(QUESTION, "Lorin", [PASSAGE])
    assert set(read.values) == {READING_PROBE}  # token and lens signals are left out

    # The same number from the model's own forward over the rendered prompt with the passage
    # and the answer (the mean of layer 2 over the answer's tokens, through the probe's weights).
    import torch

    prompt = slow.tokenizer(render(slow, QUESTION, [PASSAGE.text]),
                            add_special_tokens=False)["input_ids"]
    answer = slow.tokenizer(" Lorin", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = slow.model(torch.tensor([prompt + answer]), output_hidden_states=True)
    pooled = out.hidden_states[2][0, len(prompt):].mean(dim=0)
    probe = probes.probes[0]
    expected = float(pooled @ torch.tensor(probe.spec.coef)) + probe.spec.intercept
    assert read.values[READING_PROBE] == pytest.approx(expected, abs=1e-3)
    # The passages are in the prompt the probe reads: closed-book, the same answer scores
    # otherwise.
    (closed,) = run_passes(slow, [(QUESTION, "Lorin")])
    assert abs(LinearProbe(probe.spec)(closed.forward) - expected) > 1e-3
    # Readings of passages of unequal lengths, batched, read as each alone.
    inputs = [(QUESTION, "Lorin", [PASSAGE.text * k]) for k in (1, 3, 6)] + [(QUESTION, "Quell")]
    for one, together in zip(inputs, run_passes(slow, inputs), strict=True):
        (alone,) = run_passes(slow, [one])
        assert LinearProbe(probe.spec)(together.forward) == pytest.approx(
            LinearProbe(probe.spec)(alone.forward), abs=1e-3)


def test_a_reading_set_reads_answers_and_a_question_set_is_no_reader(
        slow: LocalLM, tmp_path: Path, shipped_world: World) -> None:
    directory = reading_set(tmp_path / "reading", slow)
    manifest = json.loads((directory / MANIFEST).read_text())
    spec = json.loads((directory / manifest["probes"][0]).read_text())
    (directory / "query.json").write_text(json.dumps({**spec, "stage": "query"}))
    manifest["probes"].append("query.json")
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="stage 'answer'"):
        ProbeSet.load(directory)
    questions = ProbeSet.load(shipped_world.path / "probes")
    with pytest.raises(UserError, match="not a reading of evidence"):
        EvidenceReader.with_probes(slow, questions)


# --- the refine node ----------------------------------------------------------------------------


def _items(n: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """Questions the fast model never knows and the search always finds; the critic reads the
    passage right half the time, with a stated confidence that says nothing about it, and the
    reader's signal says which (with some noise)."""
    from knowgate.evals.datasets import EvalItem

    rng = random.Random(seed)
    items, scripts = [], {"closed": {}, "opened": {}, "results": {}, "verdicts": {},
                          "signals": {}, "reading": {}}
    for i in range(n):
        q, gold = f"Where was Person{i} born?", f"City{i}"
        items.append(EvalItem(id=f"q{i}", question=q, answers=[gold], kind="searchable"))
        scripts["closed"][q] = (f"Guess{i}", rng.uniform(0.1, 0.5))
        scripts["opened"][q] = (f"Misread{i}", rng.uniform(0.2, 0.6))
        # The passage names both answers in one clause: its text cannot tell the right one.
        text = f"Person{i} was born in {gold} or Other{i}."
        scripts["results"][q] = ([Passage(id=f"p{i}", text=text, score=1.0)],
                                 rng.uniform(0.7, 1.0))
        said = gold if rng.random() < 0.5 else f"Other{i}"
        scripts["verdicts"][q] = ("revise", said, rng.uniform(0.5, 0.9))
        scripts["signals"][q] = {"query_top_prob": rng.uniform(0.2, 0.5)}
        scripts["reading"][(q, said)] = {READING_PROBE: rng.gauss(2.5 if said == gold else -2.5,
                                                                  1.0)}
    return items, scripts


def _context(scripts: dict[str, Any], policy: Policy | None = None,
             reader: Any = "scripted") -> TriageContext:
    return TriageContext(
        answerer=ScriptedAnswerer(closed=scripts["closed"], opened=scripts["opened"]),
        searcher=ScriptedSearcher(results=scripts["results"]),
        critic=ScriptedCritic(verdicts=scripts["verdicts"]),
        prober=ScriptedProber(signals=scripts["signals"]),
        reader=ScriptedReader(values=scripts["reading"]) if reader == "scripted" else reader,
        policy=policy or Policy.load(), prices=PRICES, role_timeout_s=5.0)


SEARCH_THEN_CRITIC = "search-then-critic"


def search_then_critic() -> str:
    """A developer's pipeline (search, draft, the critic), registered when a test first runs
    it: registered at import, it would join the stock graphs that other modules' tests are
    parametrized over as they are collected."""
    if SEARCH_THEN_CRITIC not in GRAPHS:
        register_graph(SEARCH_THEN_CRITIC, lambda checkpointer=None: pipeline_graph(
            SEARCH_THEN_CRITIC, [("search", nodes.search), ("draft", nodes.draft),
                                 ("refine", nodes.refine)], checkpointer), served=False)
    return SEARCH_THEN_CRITIC


async def test_the_refine_node_reads_the_critics_answer_after_a_search_only() -> None:
    items, scripts = _items(4, seed=1)
    q = items[0].question
    said = scripts["verdicts"][q][1]
    ctx = _context(scripts)
    result = await Knowgate(context=ctx).ask(q, graph=search_then_critic())
    assert ctx.reader.calls == [(q, said, 1)]
    refine = next(s for s in result.steps if s.action == "refine")
    assert f"reading {READING_PROBE}=" in refine.reason
    assert result.signals[READING_PROBE] == scripts["reading"][(q, said)][READING_PROBE]
    # Closed-book (no search, no passage) the critic's answer is not read.
    closed = _context(scripts)
    result = await Knowgate(context=closed).ask(q, graph="always-refine")
    assert closed.critic.calls == [q] and closed.reader.calls == []
    assert READING_PROBE not in result.signals


async def test_a_failing_reader_costs_only_its_signal() -> None:
    items, scripts = _items(4, seed=1)
    q = items[0].question
    failing = ScriptedReader(values={k: Fail("out of memory") for k in scripts["reading"]})
    result = await Knowgate(context=_context(scripts, reader=failing)).ask(
        q, graph=search_then_critic())
    assert result.outcome == "answered"  # the critic's answer stands, judged without it
    assert READING_PROBE not in result.signals
    refine = next(s for s in result.steps if s.action == "refine")
    assert "out of memory" in refine.reason and not refine.error
    assert not any(s.error for s in result.steps)


async def test_calibrate_fits_the_reading_and_the_replay_is_the_graph(tmp_path: Path,
                                                                     slow: LocalLM) -> None:
    """The critic map learns the reading's signal (declared for it as a reading set loads) from
    an explore run, the fitted graph run live equals calibrate's replay of it, and it answers
    more right readings than the same run fitted with the signal undeclared (the control)."""
    ProbeSet.load(reading_set(tmp_path / "reading", slow))  # declares critic_reading_probe
    items, scripts = _items(160, seed=3)
    base = Policy.load()
    await run(items, "triage", tmp_path / "explore", _context(scripts, base), tmp_path,
              explore=True)
    tapes = [r.tape for r in read_records(tmp_path / "explore")]
    assert all(t is not None and t.reader_names == [READING_PROBE] and "reader" in t.roles
               for t in tapes)
    fitted, report = calibrate(tmp_path / "explore", "utility", base, PRICES)
    assert fitted.maps["critic"].weights[READING_PROBE] > 0.5
    assert READING_PROBE in report["features"]["critic"]
    # A fallback map judges a prober without its probes: it is offered no probe's signal.
    assert all(READING_PROBE not in m.weights for m in fitted.fallback_maps.values())
    await graph_equals_replay(items, scripts, fitted, tmp_path / "live", tmp_path,
                              make_context=_context)
    blind, _ = calibrate(tmp_path / "explore", "utility", base, PRICES,
                         signals=SignalRegistry([s for s in SIGNALS.all()
                                                 if s.name != READING_PROBE]))
    assert READING_PROBE not in blind.maps["critic"].weights
    explored = await explored_questions(tmp_path / "explore", base)
    with_reading, without = (replay_all(p, PRICES, explored, terms=base) for p in (fitted, blind))
    assert with_reading["utility"] > without["utility"]

    def right(replayed: dict[str, Any]) -> int:
        return replayed["answered"] - replayed["wrong"]

    assert right(with_reading) > right(without)
    assert with_reading["wrong_rate_answered"] < without["wrong_rate_answered"]


# --- the CLI and the runtime on the synthetic world's models ------------------------------------


def _invoke(args: list[str], data_dir: Path):
    return CliRunner().invoke(app, args, env={"KNOWGATE_DATA_DIR": str(data_dir)})


def test_label_readings_train_a_reading_probe_and_the_runtime_reads_with_it(
        tmp_path: Path, data_dir: Path) -> None:
    labelled = tmp_path / "readings.jsonl"
    result = _invoke(["probe", "label", "--world", "synthetic", "--split", "paraphrase",
                      "--readings", "--out", str(labelled)], data_dir)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in labelled.read_text().splitlines()]
    assert records and all(r["passages"] and r["answer"] for r in records)
    assert 0 < sum(r["correct"] for r in records) < len(records)
    probes = tmp_path / "reading"
    result = _invoke(["probe", "train", "--world", "synthetic", "--model", "slow", "--data",
                      str(labelled), "--out", str(probes)], data_dir)
    assert result.exit_code == 0, result.output
    manifest = json.loads((probes / MANIFEST).read_text())
    assert manifest["reads"] == "evidence" and manifest["model"] == "world:slow"
    assert json.loads((probes / "control" / MANIFEST).read_text())["reads"] == "evidence"
    result = _invoke(["probe", "report", "--world", "synthetic", "--probes", str(probes),
                      "--data", str(labelled), "--no-self-eval", "--json"], data_dir)
    assert result.exit_code == 0, result.output
    rows = {r["signal"]: r for r in json.loads(result.stdout)["signals"]}
    assert rows[READING_PROBE]["auroc"] is not None and "control_auroc" in rows[READING_PROBE]
    assert "answer_min_logprob" in rows  # the critic's own token confidence, beside it
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(labelled.read_text() + json.dumps(
        {"id": "x", "question": "Q?", "answer": "A", "correct": True}) + "\n")
    refused = _invoke(["probe", "train", "--world", "synthetic", "--model", "slow", "--data",
                       str(mixed), "--out", str(tmp_path / "none")], data_dir)
    assert refused.exit_code == 2 and "separate files" in refused.output

    # The runtime reads the critic's answers with the set the setting names, on the critic's
    # own loaded copy; off, or with a policy that weighs none of its signals, it does not.
    everything = Knowgate(load_settings(world="synthetic", data_dir=data_dir,
                                        reading_probes=str(probes), prober_signals="all"))
    reader = everything.context.reader
    assert isinstance(reader, EvidenceReader) and reader.names == (READING_PROBE,)
    asked = records[0]["question"]  # the critic answered it from the passage it was shown
    result = run_sync(everything.ask(asked, graph=search_then_critic()))
    assert result.outcome != "error"
    assert READING_PROBE in result.signals, result.steps
    for setting in ({"reading_probes": "off", "prober_signals": "all"},
                    {"reading_probes": str(probes)}):  # the shipped policy weighs no reading
        assert Knowgate(load_settings(world="synthetic", data_dir=data_dir,
                                      **setting)).context.reader is None, setting
