"""``knowgate serve``: the chat API on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from knowgate.cli_support import ConfigOpt, WorldOpt, fail
from knowgate.errors import KnowgateError


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind; beyond loopback needs API keys.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    world: WorldOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve OpenAI-compatible chat completions (/v1/chat/completions), /v1/models, /healthz,
    /metrics and the trace page /ui."""
    from knowgate.api.serve import serve
    from knowgate.settings import load_settings

    try:
        serve(load_settings(config, world=world), host=host, port=port, log_level=log_level)
    except KnowgateError as exc:
        raise fail(exc) from None
