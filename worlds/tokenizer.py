"""The world's tokenizer: a small byte-level BPE trained with ``tokenizers`` on the world's text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from knowgate.agents.prompting import CHAT_TEMPLATE

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1200) -> Any:
    """A ``PreTrainedTokenizerFast`` with the chat template set, trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
