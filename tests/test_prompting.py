"""The chat template the world models ship with renders exactly the format they were trained on."""

from __future__ import annotations

from transformers import AutoTokenizer

from knowgate.agents.prompting import question_with_evidence, training_text


def test_chat_template_matches_training_format(shipped_world) -> None:
    tokenizer = AutoTokenizer.from_pretrained(shipped_world.model_dir("fast"))
    passages = ["Mira Tolven was born in Kudal.", "Oslan Tolven graduated in 1961."]
    for evidence in ((), passages):
        content = question_with_evidence("Where was Mira Tolven born?", evidence)
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        prompt, completion = training_text("Where was Mira Tolven born?", "Kudal", evidence)
        assert rendered == tokenizer.bos_token + prompt
        assert completion == " Kudal"


def test_evidence_goes_before_the_question_one_passage_per_line() -> None:
    text = question_with_evidence("  When?  ", [" a. ", "b."])
    assert text == "a.\nb.\nWhen?"
    assert question_with_evidence("When?") == "When?"
