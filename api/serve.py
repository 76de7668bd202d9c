"""Run the app with uvicorn: in the foreground (``knowgate serve``) or in a background thread
(tests, benchmarks, notebooks)."""

from __future__ import annotations

import threading
import time
from typing import Any

from knowgate.api.guard import check_bind
from knowgate.errors import RunError
from knowgate.settings import Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve the chat API until interrupted.

    Raises:
        UserError: ``host`` is not loopback and no API keys are configured.
    """
    import uvicorn

    from knowgate.api.app import create_app

    check_bind(host, settings)
    # uvicorn.run, not Server.run: it turns the Ctrl-C that ends a foreground server into a
    # clean exit (status 0) once the app has shut down.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level,
                **server_options(settings))


def server_options(settings: Settings | None) -> dict[str, Any]:
    """The uvicorn options knowgate serves with: h11 with the header read timeout
    (``settings.header_timeout_s``) and a short graceful shutdown."""
    from knowgate.api.connection import protocol_for

    header_timeout_s = settings.header_timeout_s if settings is not None else 10.0
    return {"http": protocol_for(header_timeout_s), "timeout_graceful_shutdown": 5}


class ServerThread:
    """An app served by uvicorn on ``127.0.0.1`` (an ephemeral port by default) in a thread.

    Usage::

        with ServerThread(create_app(settings)) as server:
            openai.OpenAI(base_url=server.url + "/v1", api_key="...")

    Args:
        app: The ASGI app.
        port: 0 for a free port.
        startup_timeout_s: How long the app's startup (building roles) may take.
    """

    def __init__(self, app: Any, port: int = 0, startup_timeout_s: float = 120.0) -> None:
        import uvicorn

        settings = getattr(getattr(app, "state", None), "settings", None)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on",
                                                    **server_options(settings)))
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        socket = self.server.servers[0].sockets[0]
        host, port = socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> ServerThread:
        """Start serving; returns once the app has started.

        Raises:
            RunError: Startup failed or took longer than ``startup_timeout_s``.
        """
        self._thread = threading.Thread(target=self.server.run, name="knowgate-api",
                                        daemon=True)
        self._thread.start()
        ends = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RunError("the server failed to start (see its log)")
            if time.monotonic() > ends:
                self.stop()
                raise RunError(f"the server did not start within {self.startup_timeout_s:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down (runs the app's shutdown, closing the checkpointer) and join."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_up(url: str, process: Any = None, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200 (a server started in another process).

    Args:
        url: What to GET (``/healthz``, chromadb's ``/api/v2/heartbeat`` ...).
        process: The server's ``subprocess.Popen``; its exit ends the wait early.
        timeout_s: How long to wait.

    Raises:
        RunError: The process exited or the URL did not answer in time.
    """
    import httpx

    ends = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            raise RunError(f"the server exited (code {process.returncode}) before {url} answered")
        if time.monotonic() > ends:
            raise RunError(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.1)
