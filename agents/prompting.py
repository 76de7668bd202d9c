"""How questions and evidence are put to the world's local models.

The world's models are trained on exactly this format, and the answerer uses it at run time, so
there is one definition of it. Hosted models get their own prompts (with JSON output) elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from knowgate.tools.passage import Passage

# A Jinja chat template in the Hugging Face format, stored with each world model's tokenizer so
# that ``tokenizer.apply_chat_template`` (and any serving stack that honours it) renders turns the
# way the model was trained: "User: ...\nAssistant: <answer></s>".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}System: {{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def question_with_evidence(question: str, passages: Sequence[str] = ()) -> str:
    """The user turn for ``question``, with passages first, one per line, when there are any."""
    question = question.strip()
    if not passages:
        return question
    return "\n".join([*(p.strip() for p in passages), question])


def training_text(question: str, answer: str, passages: Sequence[str] = ()) -> tuple[str, str]:
    """(prompt, completion) of one training example, in the chat template's rendering."""
    prompt = f"User: {question_with_evidence(question, passages)}\nAssistant:"
    return prompt, f" {answer}"


def listed_passages(passages: Sequence[Passage]) -> str:
    """Passages one per line with their ids in brackets, for prompts to hosted models."""
    return "\n".join(f"[{p.id}] {p.text}" for p in passages)
