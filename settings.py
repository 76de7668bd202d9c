"""One settings object for everything configurable, read from ``knowgate.toml`` and ``KNOWGATE_*``.

Settings are built once (``load_settings``) and passed explicitly; nothing in knowgate reads a
module-level configuration. Precedence, highest first: keyword arguments, environment variables
(``KNOWGATE_DATA_DIR`` ...), the TOML file (``./knowgate.toml`` or ``KNOWGATE_CONFIG``), defaults.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from knowgate.errors import UserError
from knowgate.roles import RoleName


def _default_data_dir() -> Path:
    return Path(platformdirs.user_cache_dir("knowgate"))


class Settings(BaseSettings):
    """Everything a knowgate process can be configured with.

    Attributes:
        world: The knowledge world: a shipped world's name (``knowgate world list``) or a world
            directory; ``None`` means the default world.
        model_cache: Where models shipped as GGUF files are converted to (once) and loaded
            from; a user cache dir by default, shared by every ``data_dir``.
        data_dir: Where derived artifacts live (chromadb index, caches); a user cache dir by default.
        search_lexical_weight: Weight of query/passage word overlap in the re-rank (0: off);
            ``None`` means the world's (tuned on its corpus).
        search_candidates: chromadb results the re-rank considers.
        evidence_passages: Passages the graph puts in front of a model after a search.
        device: ``auto`` (CUDA with bf16 when present, else CPU), ``cpu`` or ``cuda``.
        local_batch_size: Most prompts the local provider batches into one forward pass.
        local_batch_wait_ms: How long the local provider waits to fill a batch.
        local_prefill_cache_mb: Memory per local model for prompts' forward passes kept for
            reuse (the prober's pass is the prefill the answerer decodes from); 0 keeps none.
        collection: chromadb collection the searcher reads; ``None`` means the world's corpus.
        answerer: The fast answerer, as a role spec (``knowgate.role_factories``): a litellm
            model id (``local/fast``, ``openai/gpt-4o-mini``, ``litellm:MODEL``), a plugin's
            factory (``NAME`` or ``NAME:ARGUMENT``), or ``off``.
        critic: The slow critic, as a role spec (like ``answerer``).
        prober: The prober, as a role spec: a Hugging Face model directory or id the
            ``transformers`` prober loads, a plugin's factory, or ``off``; ``None`` means the
            world's fast model.
        searcher: The searcher, as a role spec: ``chroma`` (the ``collection``, else the world's
            corpus), a plugin's factory, or ``off``.
        role_options: Role name -> parameters for the factory that builds it
            (``[role_options.searcher]`` in TOML).
        prober_signals: ``policy``: the prober computes the signals the policy weighs (and what
            the combiners it weighs read), so the logit-lens signals, the prober's largest cost,
            run only when read; ``all``: every signal it can (explore runs use it, so that
            ``knowgate calibrate`` can try each one).
        critic_prober: Model id or path of a local model the prober also reads the question with,
            for the critic's knowledge before the critic is paid (signals ``critic_query_*``);
            ``None`` means the world's slow model when the critic is ``local/slow`` (its own
            weights) and none otherwise, ``"off"`` reads none (nor does ``prober="off"``).
        answerer_format: How the answerer is prompted: ``json`` (hosted models: a JSON answer
            with a confidence), ``logprobs`` (a bare answer scored by its token probabilities) or
            ``auto`` (``logprobs`` for ``local/`` models, else ``json``). Same for ``critic_format``.
        local_prices: Dollars per million (input, output) tokens of ``local/<name>`` models,
            overriding the world's prices (its card's ``local_models``).
        search_price_usd: Dollars charged per search call; ``None`` means the world's price.
        llm_timeout_s: Timeout of one LLM request.
        llm_retries: Retries (with backoff) after a 429, a 5xx or a timeout.
        fallbacks: Model id -> model ids litellm's Router tries when it keeps failing.
        litellm_params: Model id -> extra litellm parameters (``api_base``, ``api_key`` ...).
        role_timeout_s: Longest any role call may take, retries included, before it counts
            as failed.
        policy: Policy file (JSON); ``None`` means the world's fitted policy (knowgate's default
            policy for a world without one).
        grading: How eval runs grade answers: ``exact`` (normalised exact match), ``contains``
            (a short reply stating an accepted answer) or ``auto`` (the world's).
        checkpoint_db: SQLite file for LangGraph checkpoints; ``None`` runs without one.
        probes: Directory of trained probes the prober runs (``knowgate probe train`` writes
            one); ``None`` means the world's ``probes/`` when the prober is the world's fast
            model (none otherwise), ``"off"`` runs the prober without trained probes.
        reading_probes: Directory of trained probes of the critic's readings (a set that
            ``reads: evidence``, ``knowgate probe train`` on ``probe label --readings``
            records), run on the critic's answers after a search by the model the critic's
            signals are read on (``critic_prober``); ``None`` means the world's
            ``probes/reading/`` when the critic is the world's slow model, ``"off"`` none.

        The chat server (``knowgate serve``) and its backends:

        checkpoint_url: PostgreSQL URL of the server's thread checkpointer
            (``KNOWGATE_CHECKPOINT_URL``); ``None`` keeps threads in SQLite (``checkpoint_db``,
            else ``<data_dir>/threads.sqlite``).
        chroma_url: URL of a chromadb server (``chroma run``) the searcher reads instead of the
            embedded index in ``data_dir`` (``KNOWGATE_CHROMA_URL``).
        api_keys: Keys a client must send as ``Authorization: Bearer KEY``; with none the
            server only binds to loopback.
        key_budget_usd: Dollars each key may spend in a server's lifetime; ``None``: no limit.
        key_requests_per_minute: Requests each key may make per minute; ``None``: no limit.
        request_timeout_s: Longest one chat request may run before it ends as an abstention.
        max_body_bytes: Largest request body accepted (413 above it).
        max_messages: Most messages in one chat request.
        max_message_chars: Longest message accepted.
        otel_exporter: OpenTelemetry spans per graph node: ``off``, ``console`` or ``otlp``
            (the OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables).
        header_timeout_s: Longest a connection may take to send a request's headers before it
            is closed (slow clients cannot hold connections).
        body_timeout_s: Longest a request's body may take to arrive (408 after it).
        metrics_public: Serve ``/metrics`` without an API key when keys are configured.
    """

    model_config = SettingsConfigDict(
        env_prefix="KNOWGATE_",
        extra="forbid",
        frozen=True,
    )

    world: str | None = Field(default=None, min_length=1)
    model_cache: Path = Field(default_factory=lambda: _default_data_dir() / "models")
    data_dir: Path = Field(default_factory=_default_data_dir)
    search_lexical_weight: float | None = Field(default=None, ge=0.0, le=10.0)
    search_candidates: int = Field(default=20, ge=1, le=200)
    evidence_passages: int = Field(default=1, ge=1, le=10)
    device: str = "auto"
    local_batch_size: int = Field(default=64, ge=1, le=1024)
    local_batch_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    local_prefill_cache_mb: float = Field(default=256.0, ge=0.0, le=1_000_000.0)
    collection: str | None = Field(default=None, min_length=3, max_length=512)
    answerer: str = Field(default="local/fast", min_length=1)
    critic: str = Field(default="local/slow", min_length=1)
    prober: str | None = Field(default=None, min_length=1)
    searcher: str = Field(default="chroma", min_length=1)
    role_options: dict[RoleName, dict[str, Any]] = Field(default_factory=dict)
    prober_signals: Literal["policy", "all"] = "policy"
    critic_prober: str | None = None
    answerer_format: Literal["auto", "json", "logprobs"] = "auto"
    critic_format: Literal["auto", "json", "logprobs"] = "auto"
    # Prices default to the world's (its card): each world says what its models and searches cost.
    local_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    search_price_usd: float | None = Field(default=None, ge=0.0)
    llm_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    llm_retries: int = Field(default=2, ge=0, le=10)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    litellm_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    role_timeout_s: float = Field(default=120.0, gt=0.0, le=3600.0)
    policy: Path | None = None
    grading: Literal["auto", "exact", "contains"] = "auto"
    checkpoint_db: Path | None = None
    # Trained probes of the prober (issue 4).
    probes: str | None = None
    reading_probes: str | None = None
    # -- the chat server (knowgate serve) --
    checkpoint_url: str | None = None
    chroma_url: str | None = None
    api_keys: list[str] = Field(default_factory=list)
    key_budget_usd: float | None = Field(default=None, ge=0.0)
    key_requests_per_minute: int | None = Field(default=None, ge=1)
    request_timeout_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=100, ge=1)
    max_message_chars: int = Field(default=8000, ge=1)
    otel_exporter: Literal["off", "console", "otlp"] = "off"
    header_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0)
    body_timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)
    metrics_public: bool = False

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "cuda"} and not value.startswith("cuda:"):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file named in model_config (set per call by load_settings) ranks below env.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from a TOML file, the environment and explicit overrides.

    Args:
        config: TOML file to read; by default ``KNOWGATE_CONFIG`` or ``./knowgate.toml`` if present.
        **overrides: Field values that win over every other source (``None`` values are ignored).

    Raises:
        UserError: The named file does not exist or is not TOML, a value is invalid, or a
            ``KNOWGATE_*`` variable names no setting; always one line naming the culprit.
    """
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"settings file not found: {path}")
    else:
        path = Path(os.environ.get("KNOWGATE_CONFIG", "knowgate.toml"))

    # A subclass per call carries the file name without touching global state.
    class _FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

    check_environment(os.environ)
    try:
        return _FileSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise UserError(f"invalid settings: {_one_line(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except SettingsError as exc:  # a KNOWGATE_* value that is not the JSON its field needs
        raise UserError(_env_error(exc)) from None


# KNOWGATE_* variables that are not settings fields but are read by knowgate.
_OTHER_VARIABLES = {"KNOWGATE_CONFIG"}


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``KNOWGATE_*`` variable that names no setting (a misspelt one would otherwise be
    ignored silently, and its default used).

    Raises:
        UserError: One line naming the variable, and the setting it probably means.
    """
    known = {f"KNOWGATE_{name.upper()}" for name in Settings.model_fields} | _OTHER_VARIABLES
    for name in sorted(environ):
        if name.upper().startswith("KNOWGATE_") and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UserError(f"unknown setting in the environment: {name}{hint}")


def _one_line(exc: ValidationError) -> str:
    """Each invalid field with pydantic's reason, on one line."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


def _env_error(exc: SettingsError) -> str:
    """The variable a pydantic-settings parse error is about, named in one line."""
    match = re.search(r'field "(\w+)"', str(exc))
    if match is None:
        return f"invalid settings: {exc}"
    return (f"KNOWGATE_{match.group(1).upper()} is not valid JSON for the setting "
            f"{match.group(1)} (lists and tables are written as JSON, e.g. '[\"a\", \"b\"]')")
