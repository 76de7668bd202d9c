"""The OpenAI Chat Completions wire format, as knowgate serves it, plus the ``knowgate`` trace.

Requests accept what OpenAI clients send: sampling parameters are accepted and ignored (the
graph decides how its models are called), but a parameter that asks for a different *kind* of
reply (tools, a response format, several choices, logprobs ...) is refused with 400, as vLLM
refuses what it cannot do, because silently ignoring it breaks the client downstream
(``with_structured_output`` parsing a plain answer). Responses follow the Chat Completions and
``chat.completion.chunk`` shapes, with one extra field, ``knowgate``, carrying the decision.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from knowgate.api.errors import ApiError
from knowgate.graphs.state import Step
from knowgate.runtime import AskResult
from knowgate.signals import SIGNALS

ABSTAIN_TEXT = "I don't know."
"""The assistant message of an abstention."""


class TextPart(BaseModel):
    """One ``{"type": "text", "text": ...}`` part of a message's content."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation. ``system``/``developer`` messages are accepted and not
    passed on: the graph's roles have their own instructions."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        # JSON may carry lone surrogates (\ud800) that no model provider can encode; refused
        # here as bad input instead of failing every provider call (and being retried).
        texts = [value] if isinstance(value, str) else [p.text for p in value or ()]
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"the text cannot be encoded as UTF-8 ({exc.reason} at "
                                 f"character {exc.start})") from None
        return value

    @property
    def text(self) -> str:
        """The content as plain text."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``.

    Attributes:
        model: ``knowgate/<graph>`` (or the bare graph name), see ``GET /v1/models``.
        messages: The conversation; the last message must be the user's question.
        stream: Server-sent ``chat.completion.chunk`` events ending with ``data: [DONE]``.
        stream_options: ``include_usage`` for a final usage chunk.
        metadata: ``thread_id`` continues a stored thread (or use the ``X-Knowgate-Thread``
            header).
        user: Accepted and ignored, as are sampling parameters.

    Other fields are kept (``model_extra``) so that ``check_supported`` can refuse those that
    ask for a reply knowgate does not give.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


def _given(value: Any) -> bool:
    return value not in (None, False, [], {}, "")


# Parameter -> whether its value asks for something knowgate does not do. A value that asks for
# the default (n=1, response_format text, tool_choice none) is accepted.
UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "tools": _given,
    "functions": _given,
    "tool_choice": lambda v: _given(v) and v != "none",
    "function_call": lambda v: _given(v) and v != "none",
    "parallel_tool_calls": lambda v: v is True,
    "response_format": lambda v: _given(v) and not (isinstance(v, dict)
                                                    and v.get("type") == "text"),
    "n": lambda v: v is not None and v != 1,
    "logprobs": lambda v: v is True,
    "top_logprobs": lambda v: _given(v) and v != 0,
    "audio": _given,
    "modalities": lambda v: _given(v) and v != ["text"],
    "prediction": _given,
    "web_search_options": _given,
}


def check_supported(body: ChatCompletionRequest) -> None:
    """Refuse a request that asks for a reply knowgate does not give (``UNSUPPORTED``).

    Raises:
        ApiError: 400 ``unsupported_parameter`` naming the parameter, in OpenAI's error shape.
    """
    for name, value in (body.model_extra or {}).items():
        refuses = UNSUPPORTED.get(name)
        if refuses is not None and refuses(value):
            raise ApiError(400, f"{name} is not supported: knowgate answers with one plain "
                                "text message (or abstains); remove the parameter",
                           code="unsupported_parameter", param=name)


class KnowgateTrace(BaseModel):
    """The ``knowgate`` field of a completion: what was decided and why.

    Attributes:
        outcome: ``answered`` or ``abstained``.
        answer: The answer, when answered.
        confidence: Calibrated P(correct) of the answer (or of the best rejected one).
        path: The actions taken, in order.
        steps: Each action with its reason, dollars, seconds, role and whether it failed.
        signals: Every signal gathered, by name.
        signal_notes: For each declared signal of ``signals``: stage, scale, what produces it
            and what it means (``knowgate.signals``).
        citations: Ids of the passages that back the answer.
        cost_usd: Dollars spent on this completion.
        latency_s: Seconds the graph ran.
        graph: The graph that ran.
        thread_id: The thread this turn was stored in, when one was used.
    """

    outcome: Literal["answered", "abstained"]
    answer: str | None = None
    confidence: float = 0.0
    path: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    signal_notes: dict[str, str] = Field(default_factory=dict)
    citations: list[str] = Field(default_factory=list)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    graph: str
    thread_id: str | None = None

    @classmethod
    def of(cls, result: AskResult) -> KnowgateTrace:
        """The trace of an answered or abstained ``AskResult``."""
        assert result.outcome != "error"
        notes = {name: note for name in result.signals
                 if (note := SIGNALS.note(name)) is not None}
        return cls(outcome=result.outcome, answer=result.answer, confidence=result.confidence,
                   path=result.path, steps=result.steps, signals=result.signals,
                   signal_notes=notes,
                   citations=result.citations, cost_usd=result.cost_usd,
                   latency_s=result.latency_s, graph=result.graph, thread_id=result.thread_id)

    @property
    def content(self) -> str:
        """The assistant message."""
        return self.answer if self.outcome == "answered" and self.answer else ABSTAIN_TEXT


class Usage(BaseModel):
    """Tokens the graph's model calls consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    """The reply message."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    """A non-streaming ``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    knowgate: KnowgateTrace


class Delta(BaseModel):
    """What one chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One ``chat.completion.chunk`` event; the finishing one carries ``knowgate``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    knowgate: KnowgateTrace | None = None


class Model(BaseModel):
    """One entry of ``GET /v1/models``: a registered graph."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "knowgate"


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[Model]


def completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    """Seconds since the epoch, as OpenAI's ``created``."""
    return int(time.time())


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dict of a response model."""
    return model.model_dump(mode="json")
