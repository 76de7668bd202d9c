"""Hosted models are configuration only: real litellm calls against a loopback server.

Every test here goes through the real stack (settings -> ``build_router`` -> litellm's Router ->
the provider's HTTP client) to a scripted server on 127.0.0.1 (``tests/loopback_openai.py``)
that speaks OpenAI Chat Completions and Anthropic Messages. Nothing is mocked inside knowgate or
litellm, and nothing leaves the machine. Prices come from litellm's local cost map, so each
test can check that what knowgate bills is exactly what the provider's reported usage costs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowgate.agents.answerer import JSON_INSTRUCTIONS, LiteLLMAnswerer
from knowgate.agents.critic import LiteLLMCritic
from knowgate.agents.litellm_setup import import_litellm
from knowgate.agents.llm import build_router
from knowgate.composition import Assembly, search_price
from knowgate.errors import UserError
from knowgate.roles import Draft, MalformedOutputError, Passage, RoleError, Signals, Turn
from knowgate.runtime import AskResult, Knowgate
from knowgate.settings import Settings, load_settings
from knowgate.tests.loopback_openai import Delay, Error, LoopbackLLM, Seen

MINI = "openai/gpt-4o-mini"
BIG = "openai/gpt-4o"
HAIKU = "anthropic/claude-haiku-4-5"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "knowgate.hosted.toml"


def answer_json(answer: str, confidence: float, label: str) -> str:
    return json.dumps({"answer": answer, "confidence": confidence, "label": label})


def verdict_json(verdict: str, answer: str, confidence: float) -> str:
    return json.dumps({"verdict": verdict, "answer": answer, "confidence": confidence})


GOOD = answer_json("Kudal", 0.9, "sure")


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    """A fresh loopback provider per test (litellm caches HTTP clients per endpoint and event
    loop, and every test has its own loop)."""
    with LoopbackLLM(default=lambda seen: GOOD) as srv:
        yield srv


@pytest.fixture
def backup() -> Iterator[LoopbackLLM]:
    """A second provider, for fallbacks."""
    with LoopbackLLM(default=lambda seen: answer_json("Oslo", 0.8, "sure")) as srv:
        yield srv


def endpoint(srv: LoopbackLLM, model: str) -> dict[str, Any]:
    """litellm params that send ``model`` to the loopback server: OpenAI-compatible providers
    take the ``/v1`` base, Anthropic appends ``/v1/messages`` to the bare URL itself."""
    base = srv.url if model.startswith("anthropic/") else srv.api_base
    return {"api_base": base, "api_key": "test-key"}


def hosted(srv: LoopbackLLM, **overrides: Any) -> Settings:
    """Hosted settings with every role's model pointed at ``srv``; fast failure by default."""
    values: dict[str, Any] = {
        "answerer": MINI, "critic": HAIKU, "prober": "off",
        "llm_retries": 0, "llm_timeout_s": 5.0,
        "litellm_params": {m: endpoint(srv, m) for m in (MINI, BIG, HAIKU)},
    }
    values.update(overrides)
    return load_settings(**values)


def answerer(settings: Settings, timeout_s: float = 10.0) -> LiteLLMAnswerer:
    return LiteLLMAnswerer(build_router(settings, [settings.answerer]), settings.answerer, "json", timeout_s)


def critic(settings: Settings, timeout_s: float = 10.0) -> LiteLLMCritic:
    return LiteLLMCritic(build_router(settings, [settings.critic]), settings.critic, "json", timeout_s)


def billed_usd(*servers: LoopbackLLM) -> float:
    """What the replies the servers sent cost at litellm's cost-map prices."""
    litellm = import_litellm()
    total = 0.0
    for srv in servers:
        for b in srv.billed:
            provider = "anthropic" if b.path == "/v1/messages" else "openai"
            cost_in, cost_out = litellm.cost_per_token(
                model=b.model, custom_llm_provider=provider,
                prompt_tokens=b.prompt_tokens, completion_tokens=b.completion_tokens)
            total += cost_in + cost_out
    return total


def usage_of(srv: LoopbackLLM) -> tuple[int, int]:
    return (sum(b.prompt_tokens for b in srv.billed),
            sum(b.completion_tokens for b in srv.billed))


# -- the answerer in json mode ---------------------------------------------------------------


async def test_valid_json_gives_a_priced_draft(server: LoopbackLLM) -> None:
    server.script(answer_json("Kudal", 0.85, "sure"))
    draft = await answerer(hosted(server))("Where was Mira Tolven born?")

    assert (draft.answer, draft.confidence, draft.label) == ("Kudal", 0.85, "sure")
    assert draft.model == "gpt-4o-mini" and not draft.with_evidence
    assert (draft.usage.prompt_tokens, draft.usage.completion_tokens) == usage_of(server)
    assert draft.cost_usd > 0
    assert draft.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)
    # What went over the wire: one request, the provider's bare model id, the JSON instructions.
    [seen] = server.requests
    assert seen.path == "/v1/chat/completions" and seen.model == "gpt-4o-mini"
    assert seen.messages == [{"role": "system", "content": JSON_INSTRUCTIONS},
                             {"role": "user", "content": "Question: Where was Mira Tolven born?"}]
    assert seen.body["temperature"] == 0 and seen.body["max_tokens"] >= 96


async def test_evidence_and_history_reach_the_provider(server: LoopbackLLM) -> None:
    passages = [Passage(id="p7", text="Mira Tolven was born in Kudal.")]
    history = [Turn(role="user", content="Who is Mira Tolven?"),
               Turn(role="assistant", content="An engineer.")]
    draft = await answerer(hosted(server))("Where was she born?", passages, history)

    assert draft.with_evidence and draft.answer == "Kudal"
    roles = [m["role"] for m in server.requests[0].messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert server.requests[0].last_user == (
        "Passages:\n[p7] Mira Tolven was born in Kudal.\n\nQuestion: Where was she born?")


@pytest.mark.parametrize("reply", [
    f"```json\n{answer_json('Kudal', 0.3, 'unsure')}\n```",
    f"Sure! Here is my answer: {answer_json('Kudal', 0.3, 'unsure')} Hope that helps.",
], ids=["fenced", "prose"])
async def test_fenced_or_chatty_json_still_parses(server: LoopbackLLM, reply: str) -> None:
    server.script(reply)
    draft = await answerer(hosted(server))("Where was Mira Tolven born?")
    assert (draft.answer, draft.confidence, draft.label) == ("Kudal", 0.3, "unsure")
    assert len(server.requests) == 1  # no repair turn was needed


@pytest.mark.parametrize(("bad", "problem"), [
    ('{"answer": "Kudal", "confidence": 0.9, "label": sure}', "invalid JSON"),
    ("I think it is Kudal.", "no JSON object"),
    (answer_json("Kudal", 1.7, "sure"), "does not match the schema"),
], ids=["bad-json", "no-json", "bad-schema"])
async def test_one_repair_turn_recovers(server: LoopbackLLM, bad: str, problem: str) -> None:
    server.script(bad, answer_json("Kudal", 0.6, "sure"))
    draft = await answerer(hosted(server))("Where was Mira Tolven born?")

    assert (draft.answer, draft.confidence) == ("Kudal", 0.6)
    first, second = server.requests
    # The repair turn replays the conversation, the unusable reply, and quotes the problem.
    assert second.messages[:2] == first.messages
    assert second.messages[2] == {"role": "assistant", "content": bad}
    assert problem in second.last_user and "only the JSON object" in second.last_user
    # Both calls are billed, in tokens and in dollars.
    assert len(server.billed) == 2
    assert (draft.usage.prompt_tokens, draft.usage.completion_tokens) == usage_of(server)
    assert draft.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)
    assert draft.cost_usd > billed_usd(server) / 2


async def test_malformed_twice_is_a_typed_error_that_bills_both_calls(
        server: LoopbackLLM) -> None:
    server.script("Kudal, probably.", '{"answer": "Kudal"')
    with pytest.raises(MalformedOutputError) as caught:
        await answerer(hosted(server))("Where was Mira Tolven born?")

    error = caught.value
    assert isinstance(error, RoleError) and error.role == "answerer"
    assert "after one repair" in error.reason
    assert len(server.requests) == 2 and server.pending == 0
    assert error.cost_usd > 0
    assert error.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)


async def test_a_failed_repair_call_still_bills_the_first_reply(server: LoopbackLLM) -> None:
    server.script("not json at all", Error(500))
    with pytest.raises(RoleError) as caught:
        await answerer(hosted(server))("Where was Mira Tolven born?")

    assert not isinstance(caught.value, MalformedOutputError)
    assert "InternalServerError" in caught.value.reason
    assert len(server.requests) == 2 and len(server.billed) == 1
    assert caught.value.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)
    assert caught.value.cost_usd > 0


@pytest.mark.parametrize("retries", [0, 1])
async def test_server_errors_are_retried_then_typed(server: LoopbackLLM, retries: int) -> None:
    server.default = lambda seen: Error(500, "upstream exploded")
    started = time.perf_counter()
    with pytest.raises(RoleError) as caught:
        await answerer(hosted(server, llm_retries=retries))("Where was Mira Tolven born?")

    # litellm's Router backs off between retries (about 1-2 s for the first); still bounded.
    assert time.perf_counter() - started < 10
    assert len(server.requests) == 1 + retries
    assert caught.value.role == "answerer" and caught.value.cost_usd == 0.0
    assert "InternalServerError" in caught.value.reason
    assert "upstream exploded" in caught.value.reason


async def test_a_slow_provider_times_out_per_request(server: LoopbackLLM) -> None:
    server.script(Delay(20, GOOD))
    started = time.perf_counter()
    with pytest.raises(RoleError) as caught:
        await answerer(hosted(server, llm_timeout_s=0.5))("Where was Mira Tolven born?")

    assert time.perf_counter() - started < 3.0
    assert "Timeout" in caught.value.reason
    assert len(server.requests) == 1  # retries = 0


async def test_the_role_timeout_bounds_the_whole_call(server: LoopbackLLM) -> None:
    server.script(Delay(20, GOOD))
    started = time.perf_counter()
    with pytest.raises(RoleError, match="timed out after 0.5 s"):
        await answerer(hosted(server, llm_timeout_s=30.0), timeout_s=0.5)("Where?")
    assert time.perf_counter() - started < 3.0


# -- fallbacks -------------------------------------------------------------------------------


async def test_a_failing_model_falls_back_to_the_next(server: LoopbackLLM,
                                                      backup: LoopbackLLM) -> None:
    server.default = lambda seen: Error(500)
    settings = hosted(server, fallbacks={MINI: [BIG]},
                      litellm_params={MINI: endpoint(server, MINI), BIG: endpoint(backup, BIG)})
    draft = await answerer(settings)("Where was Mira Tolven born?")

    assert (draft.answer, draft.model) == ("Oslo", "gpt-4o")
    assert [s.model for s in server.requests] == ["gpt-4o-mini"]
    assert [s.model for s in backup.requests] == ["gpt-4o"]
    # Billed at the fallback's price (gpt-4o costs more per token than gpt-4o-mini).
    assert draft.cost_usd == pytest.approx(billed_usd(backup), rel=1e-9)
    mini_in, mini_out = import_litellm().cost_per_token(
        model="gpt-4o-mini", prompt_tokens=draft.usage.prompt_tokens,
        completion_tokens=draft.usage.completion_tokens)
    assert draft.cost_usd > mini_in + mini_out


async def test_when_every_model_fails_the_error_is_typed(server: LoopbackLLM) -> None:
    server.default = lambda seen: Error(503, "overloaded")
    settings = hosted(server, fallbacks={MINI: [BIG]})
    with pytest.raises(RoleError, match="overloaded"):
        await answerer(settings)("Where was Mira Tolven born?")
    assert [s.model for s in server.requests] == ["gpt-4o-mini", "gpt-4o"]


# -- the critic in json mode -----------------------------------------------------------------

DRAFT = Draft(answer="Kudal", confidence=0.4, label="unsure")


@pytest.mark.parametrize("model", [BIG, HAIKU])
@pytest.mark.parametrize(("reply", "draft", "expected"), [
    (verdict_json("accept", "", 0.8), DRAFT, ("accept", "Kudal", 0.8)),
    (verdict_json("accept", "Kudal", 0.7), DRAFT, ("accept", "Kudal", 0.7)),
    (verdict_json("revise", " Oslo ", 0.9), DRAFT, ("revise", "Oslo", 0.9)),
    (verdict_json("abstain", "", 0.1), DRAFT, ("abstain", "", 0.1)),
    # Nothing to stand behind is an abstention, whatever the verdict said.
    (verdict_json("revise", "", 0.9), DRAFT, ("abstain", "", 0.9)),
    (verdict_json("accept", "", 0.9), None, ("abstain", "", 0.9)),
], ids=["accept-empty", "accept", "revise", "abstain", "revise-empty", "accept-no-draft"])
async def test_critic_verdicts(server: LoopbackLLM, model: str, reply: str,
                               draft: Draft | None, expected: tuple[str, str, float]) -> None:
    server.script(f"```json\n{reply}\n```")
    signals = Signals(values={"answerer_confidence": 0.4})
    evidence = [Passage(id="p1", text="Mira Tolven was born in Oslo.")]
    verdict = await critic(hosted(server, critic=model))("Where was Mira Tolven born?", draft,
                                                         signals, evidence)

    assert (verdict.verdict, verdict.answer, verdict.confidence) == expected
    assert verdict.model == model.split("/", 1)[1]
    assert verdict.cost_usd > 0
    assert verdict.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)
    [seen] = server.requests
    assert seen.path == ("/v1/messages" if model == HAIKU else "/v1/chat/completions")
    shown = seen.last_user
    assert "Question: Where was Mira Tolven born?" in shown
    assert ("Draft: Kudal (confidence 0.40, unsure)" if draft else "Draft: none") in shown
    assert "answerer_confidence=0.400" in shown and "[p1] Mira Tolven was born in Oslo." in shown


async def test_critic_repairs_once_over_anthropic(server: LoopbackLLM) -> None:
    server.script("The draft looks right to me.", verdict_json("accept", "", 0.75))
    verdict = await critic(hosted(server))("Where was Mira Tolven born?", DRAFT, Signals())
    assert (verdict.verdict, verdict.answer) == ("accept", "Kudal")
    assert [s.path for s in server.requests] == ["/v1/messages"] * 2
    assert "no JSON object" in server.requests[1].last_user
    assert verdict.cost_usd == pytest.approx(billed_usd(server), rel=1e-9)


# -- end to end: Knowgate.ask over hosted roles ----------------------------------------------


@pytest.fixture(scope="module")
def corpus_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A searchable question of the shipped world, and a small collection of the shipped
    corpus that holds its gold passage among others.

    ``settings.collection`` makes ``Knowgate`` search this collection through the same
    ``ChromaSearcher`` path it uses for the world's own index; indexing 64 passages instead of
    the full corpus keeps this module fast on small CPUs. The policy is pinned to the built-in
    uncalibrated defaults, so refitting the shipped policy does not change these paths.
    """
    from knowgate.graphs.policy import Policy
    from knowgate.roles import Passage as Doc
    from knowgate.tools.searcher import ChromaSearcher, chroma_client
    from knowgate.worlds.world import World

    world = World("synthetic")
    question = next(q for q in world.questions("test")
                    if q.kind == "searchable" and world.gold_passage(q) is not None)
    gold = world.gold_passage(question)
    assert gold is not None
    docs = {p.id: p for p in world.corpus[:64]}
    docs[gold.id] = gold
    data = tmp_path_factory.mktemp("hosted-data")
    ChromaSearcher(chroma_client(data / "chroma"), "hosted-e2e").add(
        Doc(id=p.id, text=p.text) for p in docs.values())
    policy = data / "policy.json"
    policy.write_text(Policy().model_dump_json(), encoding="utf-8")
    return {"data_dir": data, "collection": "hosted-e2e", "policy": policy,
            "question": question.question, "answer": question.answers[0], "gold": gold.id}


def e2e_settings(srv: LoopbackLLM, sample: dict[str, Any], **overrides: Any) -> Settings:
    values = {"data_dir": sample["data_dir"], "collection": sample["collection"],
              "policy": sample["policy"], "role_timeout_s": 10.0, **overrides}
    return hosted(srv, **values)


def assert_ledger_adds_up(result: AskResult, settings: Settings, *servers: LoopbackLLM) -> None:
    assert result.cost_usd == pytest.approx(sum(s.cost_usd for s in result.steps), abs=1e-9)
    searches = sum(s.action == "search" and not s.error for s in result.steps)
    expected = billed_usd(*servers) + searches * search_price(settings)
    assert result.cost_usd == pytest.approx(expected, abs=1e-9)


async def test_ask_unsure_answerer_then_critic_revises(server: LoopbackLLM,
                                                       corpus_sample: dict[str, Any]) -> None:
    gold = corpus_sample["answer"]

    def reply(seen: Seen) -> str:
        if seen.model == "gpt-4o-mini":
            return answer_json("Dilon Motors", 0.2, "unsure")
        return verdict_json("revise", gold, 0.99)

    server.default = reply
    settings = e2e_settings(server, corpus_sample)
    result = await Knowgate(settings).ask(corpus_sample["question"])

    assert result.outcome == "answered" and result.answer == gold
    # Unsure closed-book -> search -> still unsure reading the passage -> the critic revises.
    assert result.path == ["draft", "search", "draft", "refine", "answer"]
    assert not any(s.error for s in result.steps)
    assert result.cost_usd > 0
    assert_ledger_adds_up(result, settings, server)
    # The critic was asked over the Anthropic protocol, with the unsure draft in front of it.
    [judged] = server.seen("claude-haiku-4-5")
    assert judged.path == "/v1/messages"
    assert "Draft: Dilon Motors (confidence 0.20, unsure)" in judged.last_user
    closed, open_book = server.seen("gpt-4o-mini")
    assert "Passages:" not in closed.last_user
    assert f"[{corpus_sample['gold']}]" in open_book.last_user  # the search found the gold passage
    assert f"[{corpus_sample['gold']}]" in judged.last_user
    assert result.citations == [corpus_sample["gold"]]


async def test_ask_with_the_answerer_down_still_ends_typed(
        server: LoopbackLLM, corpus_sample: dict[str, Any]) -> None:
    gold = corpus_sample["answer"]
    server.default = lambda seen: (Error(500, "answerer provider down")
                                   if seen.model == "gpt-4o-mini"
                                   else verdict_json("revise", gold, 0.99))
    settings = e2e_settings(server, corpus_sample)
    result = await Knowgate(settings).ask(corpus_sample["question"])

    # A typed outcome, not an exception: the critic answers on its own.
    assert result.outcome == "answered" and result.answer == gold
    assert result.path == ["draft", "refine", "answer"]
    failed = result.steps[0]
    assert failed.error and (failed.action, failed.role) == ("draft", "answerer")
    assert "InternalServerError" in failed.reason and "answerer provider down" in failed.reason
    assert failed.cost_usd == 0.0
    assert len(server.seen("gpt-4o-mini")) == 1  # 1 + llm_retries; the policy does not re-ask
    assert "Draft: none" in server.seen("claude-haiku-4-5")[0].last_user
    assert result.ledger["answerer"]["calls"] == 1 and result.ledger["critic"]["calls"] == 1
    assert_ledger_adds_up(result, settings, server)


async def test_ask_with_every_provider_down_abstains(server: LoopbackLLM,
                                                     corpus_sample: dict[str, Any]) -> None:
    server.default = lambda seen: Error(500)
    settings = e2e_settings(server, corpus_sample)
    result = await Knowgate(settings).ask(corpus_sample["question"])

    assert result.outcome == "abstained" and result.answer is None
    assert result.path == ["draft", "refine", "abstain"]
    assert [(s.role, s.error) for s in result.steps[:2]] == [("answerer", True), ("critic", True)]
    assert result.cost_usd == 0.0


# -- configuration mistakes and time budgets ------------------------------------------------


async def test_a_mistyped_model_id_is_a_typed_error(server: LoopbackLLM,
                                                    corpus_sample: dict[str, Any]) -> None:
    settings = e2e_settings(server, corpus_sample, answerer="opena/gpt-4o-mini")
    with pytest.raises(UserError, match="opena/gpt-4o-mini"):
        await Knowgate(settings).ask(corpus_sample["question"])
    assert server.requests == []


async def test_a_repair_cut_off_by_the_role_timeout_still_bills_the_first_reply(
        server: LoopbackLLM, corpus_sample: dict[str, Any]) -> None:
    server.script("not JSON", Delay(10, GOOD))
    settings = e2e_settings(server, corpus_sample, role_timeout_s=1.0, llm_timeout_s=30.0)
    started = time.perf_counter()
    result = await Knowgate(settings).ask(corpus_sample["question"], graph="fast-only")

    assert time.perf_counter() - started < 5
    assert result.outcome == "abstained" and result.steps[0].error
    assert len(server.billed) == 1  # the unusable first reply, which the provider bills
    assert result.steps[0].cost_usd == pytest.approx(billed_usd(server), rel=1e-9)


# -- the documented example configuration ----------------------------------------------------


def test_example_config_parses() -> None:
    settings = load_settings(config=EXAMPLE)
    assert settings.answerer == "openai/gpt-4o-mini"
    assert settings.critic.startswith("anthropic/claude-")
    assert settings.prober == "Qwen/Qwen2.5-0.5B-Instruct"
    assert settings.answerer_format == settings.critic_format == "json"
    assert settings.fallbacks == {"openai/gpt-4o-mini": ["openai/gpt-4o"]}
    assert set(settings.litellm_params) == {settings.answerer, settings.critic, "openai/gpt-4o"}
    assert settings.litellm_params[settings.critic]["api_key"] == "os.environ/ANTHROPIC_API_KEY"
    assert search_price(settings) > 0 and settings.llm_retries >= 1
    assert 0 < settings.llm_timeout_s <= settings.role_timeout_s
    # Every model it names has a price in litellm's local cost map, so the policy can weigh it.
    litellm = import_litellm()
    for model in {settings.answerer, settings.critic, "openai/gpt-4o"}:
        assert sum(litellm.cost_per_token(model=model, prompt_tokens=100,
                                          completion_tokens=10)) > 0


def test_example_config_builds_a_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    router = Assembly(load_settings(config=EXAMPLE)).router()
    deployments = {d["model_name"]: d["litellm_params"] for d in router.model_list}
    assert set(deployments) == {MINI, BIG, HAIKU}
    # "os.environ/NAME" was resolved by litellm, and the per-model timeout beats the default.
    assert deployments[HAIKU]["api_key"] == "sk-ant-from-env"
    assert deployments[MINI]["api_key"] == "sk-openai-from-env"
    assert float(deployments[BIG]["timeout"]) == 40.0


async def test_example_config_answers_once_pointed_at_a_server(
        server: LoopbackLLM, corpus_sample: dict[str, Any]) -> None:
    """The documented file, with only the endpoints (and the prober) swapped, runs as is."""
    gold = corpus_sample["answer"]
    server.default = lambda seen: (answer_json(gold, 0.97, "sure") if seen.model == "gpt-4o-mini"
                                   else verdict_json("accept", "", 0.9))
    example = load_settings(config=EXAMPLE)
    settings = load_settings(
        config=EXAMPLE, prober="off", data_dir=corpus_sample["data_dir"],
        collection=corpus_sample["collection"], policy=corpus_sample["policy"],
        litellm_params={m: {**p, **endpoint(server, m)}
                        for m, p in example.litellm_params.items()},
    )
    result = await Knowgate(settings).ask(corpus_sample["question"])

    assert result.outcome == "answered" and result.answer == gold
    assert result.path == ["draft", "answer"]  # a sure draft needs no search and no critic
    assert result.cost_usd > 0
    assert_ledger_adds_up(result, settings, server)


# -- one Router per configuration; prices from the settings registered once --------------------


async def test_prices_in_litellm_params_bill_every_call(server: LoopbackLLM) -> None:
    """A model priced in ``litellm_params`` (a self-hosted one, absent from litellm's map) is
    billed at that price on every call, while its deployment carries no prices: litellm would
    otherwise re-register them, and empty its model-info caches, on each call."""
    model = "openai/house-model-7b"
    price = {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6}
    settings = hosted(server, answerer=model,
                      litellm_params={model: {**endpoint(server, model), **price}})
    router = build_router(settings, [model])
    deployment = router.model_list[0]["litellm_params"]
    assert deployment["api_base"] == server.api_base and not set(price) & set(deployment)
    role = LiteLLMAnswerer(router, model, "json", 10.0)
    drafts = [await role(f"Where was Ada Vell born? ({n})") for n in range(3)]
    prompt, completion = usage_of(server)
    assert len(server.billed) == 3 and prompt > 0 and completion > 0
    assert sum(d.cost_usd for d in drafts) == pytest.approx(prompt * 2e-6 + completion * 8e-6,
                                                           rel=1e-9)


def test_one_router_per_configuration(server: LoopbackLLM,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Routers are shared by configuration: each one hooks callbacks into litellm's global lists
    that every later call runs, so a fresh one per ``Knowgate`` would slow every call."""
    litellm = import_litellm()
    settings = hosted(server)
    first = Assembly(settings).router()
    hooked = len(litellm._async_success_callback)
    again = [Assembly(settings).router() for _ in range(3)]
    assert all(r is first for r in again)
    assert len(litellm._async_success_callback) == hooked  # nothing more runs per call
    # Any difference in what the Router is built from gives its own Router.
    assert Assembly(hosted(server, llm_retries=2)).router() is not first
    assert build_router(settings, [MINI]) is not first  # other deployments
    # ``os.environ/NAME`` is read when the Router is built: a changed variable is a new Router.
    keyed = hosted(server, litellm_params={MINI: {"api_base": server.api_base,
                                                  "api_key": "os.environ/KG_TEST_KEY"}})
    monkeypatch.setenv("KG_TEST_KEY", "sk-one")
    one = build_router(keyed, [MINI])
    assert build_router(keyed, [MINI]) is one
    monkeypatch.setenv("KG_TEST_KEY", "sk-two")
    two = build_router(keyed, [MINI])
    assert two is not one and two.model_list[0]["litellm_params"]["api_key"] == "sk-two"
