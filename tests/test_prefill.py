"""Shared prefill: the prober's pass over a prompt is the prefill the answerer decodes from, and
the draft's pass is read from that decoding or runs on top of it; all equal what separate passes
give."""

from __future__ import annotations

import pytest

from knowgate import Knowgate, load_settings
from knowgate.agents.hidden_states import ANSWER_TOKEN_SIGNALS, render, run_passes
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.prefill import PrefixCache
from knowgate.agents.prompting import SHORT_ANSWER_STOP, answer_messages
from knowgate.worlds.world import World, default_model_cache

TOL = dict(rel=1e-4, abs=1e-4)


def pair(path) -> tuple[LocalLM, LocalLM]:
    """The same model twice: one keeping prefills, one running every pass whole."""
    return (LocalLM(path, "cpu", prompt_style="short-answer"),
            LocalLM(path, "cpu", prompt_style="short-answer", prefill_cache_mb=0))


def same_generations(want, got) -> None:
    for a, b in zip(want, got, strict=True):
        assert (a.text, a.finish_reason, a.prompt_tokens) == (b.text, b.finish_reason,
                                                               b.prompt_tokens)
        assert [t.token for t in a.tokens] == [t.token for t in b.tokens]
        for x, y in zip(a.tokens, b.tokens, strict=True):
            assert y.logprob == pytest.approx(x.logprob, **TOL)


def same_passes(want, got) -> None:
    for a, b in zip(want, got, strict=True):
        assert a.signals.keys() == b.signals.keys()
        for name, value in a.signals.items():
            assert b.signals[name] == pytest.approx(value, **TOL), name
        assert a.forward.prompt_tokens == b.forward.prompt_tokens
        for x, y in zip(a.forward.hidden_states, b.forward.hidden_states, strict=True):
            assert x.shape == y.shape
            assert float((x - y).abs().max()) <= 1e-3 * max(1.0, float(x.abs().max()))


def check_sharing(kept: LocalLM, whole: LocalLM, questions: list[str]) -> None:
    prompts = [render(kept, q) for q in questions]
    # The question passes (the prober, before any answer) keep their prefills.
    same_passes(run_passes(whole, [(q, None) for q in questions]),
                run_passes(kept, [(q, None) for q in questions]))
    assert len(kept.prefills) == len(questions) and kept.prefills.hits == 0
    # A batch mixing kept prompts and a new one: the kept ones decode from their prefills, and
    # so does the new one when its pass can be had on top of the prompts' shared start.
    mixed = [prompts[0], render(kept, "What is the capital of Peru?"), *prompts[1:]]
    want = whole.generate(mixed, max_new_tokens=8)
    same_generations(want, kept.generate(mixed, max_new_tokens=8))
    assert kept.prefills.hits == len(questions) + (kept.shared_prefill() is not None)
    same_generations(want[:1], kept.generate(mixed[:1], max_new_tokens=8))  # alone, too
    # The draft's pass runs over the draft's tokens on top of the prompt's pass.
    drafts = [(q, g.text or "x") for q, g in zip(questions, [want[0], *want[2:]], strict=True)]
    hits = kept.prefills.hits
    same_passes(run_passes(whole, drafts), run_passes(kept, drafts))
    assert kept.prefills.hits == hits + len(questions)
    assert whole.prefills.hits == 0 and len(whole.prefills) == 0


def check_decoded_drafts(kept: LocalLM, whole: LocalLM, questions: list[str]) -> None:
    """A draft the model decoded from a kept prefill is read from the decoding: no forward
    pass runs, and the signals and hidden states are those of a whole pass."""
    run_passes(kept, [(q, None) for q in questions])
    generations = kept.generate([render(kept, q) for q in questions], max_new_tokens=16,
                                stop=SHORT_ANSWER_STOP)
    # A draft cut before the last generated token (a stop string, the end of sequence): every
    # one of its tokens went through the model. The whole reply and its first word both count.
    drafts = [(q, text) for q, g in zip(questions, generations, strict=True)
              if g.finish_reason == "stop" and g.text
              for text in dict.fromkeys([g.text, g.text.split()[0]])]
    assert len(drafts) >= len(questions)
    forwards: list[int] = []
    hook = kept.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        read = run_passes(kept, drafts)
    finally:
        hook.remove()
    assert forwards == [] and kept.prefills.decoded_hits >= len(drafts)
    same_passes(run_passes(whole, drafts), read)
    # Drafts the model did not write run over their tokens on top of their prompts' passes,
    # all in one batched pass (prompts and drafts of different lengths).
    hook = kept.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        other = [(questions[0], "Zanzibar Quux"), (questions[1], "Ba"),
                 (questions[-1], "the old harbour town of Quux on the river")]
        same_passes(run_passes(whole, other), run_passes(kept, other))
    finally:
        hook.remove()
    assert forwards == [1]


def check_stopping(kept: LocalLM, whole: LocalLM, questions: list[str], depth: int) -> None:
    """With ``answer_depth``, a draft's pass on top of its prompt's kept pass stops at that
    hidden state: it equals a whole pass there (and the query-level signals do), no layer past
    it runs, and no input has the draft's token signals, however its pass ran."""
    layers = kept.model.model.layers
    assert 0 < depth < len(layers)
    run_passes(kept, [(q, None) for q in questions])
    drafts = [(q, a) for q, a in zip(questions, ["Quux", "the old harbour town"], strict=False)]
    ran: list[int] = []
    hooks = [layer.register_forward_pre_hook(lambda *_, i=i: ran.append(i))
             for i, layer in enumerate(layers)]
    try:
        stopped = run_passes(kept, drafts, lens=False, answer_depth=depth)
    finally:
        for hook in hooks:
            hook.remove()
    assert sorted(set(ran)) == list(range(depth + 1))  # layer ``depth`` is entered, not run
    full = run_passes(whole, drafts, lens=False)
    for a, b in zip(full, stopped, strict=True):
        assert set(b.signals) == set(a.signals) - ANSWER_TOKEN_SIGNALS
        assert {"query_top_prob", "query_entropy"} <= set(b.signals)
        for name, value in b.signals.items():
            assert value == pytest.approx(a.signals[name], **TOL), name
        n = a.forward.prompt_tokens
        for layer, (x, y) in enumerate(zip(a.forward.hidden_states, b.forward.hidden_states,
                                           strict=True)):
            want = x if layer <= depth else x[:n]  # past the stop: the prompt's positions
            assert y.shape == want.shape
            assert float((want - y).abs().max()) <= 1e-3 * max(1.0, float(want.abs().max()))
    # A pass without a kept prompt runs whole, and still leaves the token signals out.
    (alone,) = run_passes(whole, [(questions[0], "Quux")], lens=False, answer_depth=depth)
    assert not set(alone.signals) & ANSWER_TOKEN_SIGNALS and "query_entropy" in alone.signals


def test_a_tiny_llama_shares_its_prefill() -> None:
    world = World("synthetic")
    kept, whole = pair(world.model_dir("fast"))
    assert kept.shared_prefill() is not None and whole.shared_prefill() is None
    check_sharing(kept, whole, [q.question for q in world.questions("test")[:3]])
    check_decoded_drafts(kept, whole, [q.question for q in world.questions("test")[3:7]])
    check_stopping(kept, whole, [q.question for q in world.questions("test")[7:9]], depth=1)


def test_a_real_model_with_sliding_window_layers_shares_its_prefill() -> None:
    """Gemma-3-270M (the factbook critic): half of its layers attend within a window."""
    world = World("factbook")
    kept, whole = pair(world.model_dir("slow", default_model_cache()))
    check_sharing(kept, whole, ["What is the capital of Burkina Faso?",
                                "What currency is used in Albania?"])
    check_decoded_drafts(kept, whole, ["What is the capital of Peru?",
                                       "What is the official language of Chile?"])
    check_stopping(kept, whole, ["What is the capital of Chad?",
                                 "What currency is used in Peru?"], depth=9)
    # Its chat template's system turn and the few-shot examples: computed once, kept. A prompt
    # with a passage starts with them too, and decodes from its pass on top of them.
    shared = kept.shared_prefill()
    assert shared is not None and len(shared.ids) >= 80
    open_book = kept.render(answer_messages("What is the capital of Peru?",
                                            ("Lima is the capital of Peru.",), "short-answer"))
    same_generations(whole.generate([open_book], max_new_tokens=6),
                     kept.generate([open_book], max_new_tokens=6))
    ids = kept.tokenizer(open_book, add_special_tokens=False)["input_ids"]
    assert tuple(ids[:len(shared.ids)]) == shared.ids and kept.prefills.peek(ids) is not None
    # Drafts whose batch, padded to one width, would outgrow the 512-token window run one by one.
    window = kept.model.config.sliding_window

    def asking(towns: int) -> tuple[str, int]:
        question = f"Which of these towns is the capital: {', '.join(map(str, range(towns)))}?"
        return question, len(kept.tokenizer(render(kept, question),
                                            add_special_tokens=False)["input_ids"])

    long, length = next(asking(n) for n in range(400, 0, -5) if asking(n)[1] < window - 4)
    drafts = [(long, "Ba"), ("What is the capital of Peru?", " ".join(["very"] * 40))]
    assert length < window < length + 40
    run_passes(kept, [(q, None) for q, _ in drafts])
    forwards: list[int] = []
    hook = kept.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        same_passes(run_passes(whole, drafts), run_passes(kept, drafts))
    finally:
        hook.remove()
    assert len(forwards) == len(drafts)  # one pass each


def test_a_batch_decodes_only_the_rows_still_writing() -> None:
    """Greedy decoding from kept prefills: a row leaves the batch when its reply ends (here at
    the stop string: Gemma-3-270M goes on with another made-up question after its answer), and
    every row gets what decoding it alone, whole, and cutting at the stop gives."""
    world = World("factbook")
    kept, whole = pair(world.model_dir("slow", default_model_cache()))
    questions = ["What is the capital of Peru?", "Who is the president of France?",
                 "Describe the climate of Chile.", "What currency is used in Albania?"]
    prompts = [render(kept, q) for q in questions]
    rows: list[int] = []

    def count(_module, _args, kwargs) -> None:
        rows.append(int(kwargs["input_ids"].shape[0]))

    def decode(lm: LocalLM, batch: list[str], stop: tuple[str, ...]) -> list:
        run_passes(lm, [(q, None) for q in questions])
        rows.clear()
        hook = lm.model.register_forward_pre_hook(count, with_kwargs=True)
        try:
            return lm.generate(batch, max_new_tokens=16, stop=stop)
        finally:
            hook.remove()

    got = decode(kept, prompts, SHORT_ANSWER_STOP)
    steps = list(rows)
    same_generations([whole.generate([p], max_new_tokens=16, stop=SHORT_ANSWER_STOP)[0]
                      for p in prompts], got)
    ends = sorted(len(g.tokens) for g in got)
    assert all(g.finish_reason == "stop" for g in got) and ends[0] < ends[-1]
    # The first token comes from the kept pass; then each step runs the rows still writing.
    assert steps == sorted(steps, reverse=True) and steps[0] == 4 and steps[-1] < 4
    assert len(steps) == ends[-1]  # the longest answer's tokens, then its stop token
    # Without a stop string every row writes its 16 tokens: the batch never shrinks.
    decode(kept, prompts, ())
    assert rows == [4] * 15


def test_the_cache_stays_within_its_bound() -> None:
    world = World("synthetic")
    lm = LocalLM(world.model_dir("fast"), "cpu")
    questions = [q.question for q in world.questions("test")[:13]]
    run_passes(lm, [(questions[0], None)])
    one = lm.prefills.nbytes
    assert one > 0
    bounded = LocalLM(world.model_dir("fast"), "cpu", prefill_cache_mb=3.5 * one / 2**20)
    run_passes(bounded, [(q, None) for q in questions[:12]])
    assert len(bounded.prefills) == 3 and bounded.prefills.nbytes <= bounded.prefills.max_bytes

    def kept(question: str) -> bool:
        ids = bounded.tokenizer(render(bounded, question), add_special_tokens=False)["input_ids"]
        return bounded.prefills.get(ids) is not None

    # The most recent prompt is kept and the least recently used one goes (one batch stores
    # its prompts in the order it runs them: grouped by length, not the caller's order).
    before = [q for q in questions[:12] if kept(q)]
    assert len(before) == 3
    run_passes(bounded, [(questions[12], None)])
    assert kept(questions[12]) and len(bounded.prefills) == 3
    assert [kept(q) for q in before] == [False, True, True]
    assert not PrefixCache(0).enabled


async def test_asking_decodes_from_the_probers_pass() -> None:
    kg = Knowgate(load_settings(world="synthetic"))
    lm = kg.context.prober.main.lm  # the answerer's model, read by the prober
    before = lm.prefills.hits
    # A question the fast model knows: probed, drafted closed-book, probed with the draft.
    question = next(q.question for q in World("synthetic").questions("test")
                    if q.kind == "fast-known")
    result = await kg.ask(question)
    assert result.path[:3] == ["probe", "draft", "probe"]
    # The draft decoded from the question's pass, and the draft's pass ran on top of it.
    assert lm.prefills.hits == before + 2
