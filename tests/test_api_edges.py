"""The server's edges: slow and broken clients, parameters it does not support, text it cannot
encode, graphs it must not serve, foreign Host names, and what /metrics, /healthz and /ui show."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from knowgate.tests.api_helpers import (
    EchoAnswerer,
    Q,
    postgres_server,
    server_settings,
    serving,
    triage_context,
)

MODEL = "knowgate/triage"


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _closed_after(sock: socket.socket, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (reading what it sent), at most ``limit_s``."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    return time.monotonic() - started, received


def test_slow_headers_are_cut_off_at_the_header_timeout(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, header_timeout_s=1.0)
    with serving(settings, triage_context()) as srv:
        socks = [_connect(srv.url) for _ in range(5)]
        for sock in socks:  # a request line and one header, then nothing more
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        waited = [_closed_after(sock, 10.0)[0] for sock in socks]
        # A connection that finished its headers in time is served as usual.
        assert httpx.get(srv.url + "/v1/models").status_code == 200
    for sock in socks:
        sock.close()
    assert max(waited) < 1.0 + 1.5, waited  # closed within the timeout (plus scheduling)


def test_a_body_that_stops_arriving_is_a_408(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, body_timeout_s=1.0)
    with serving(settings, triage_context()) as srv:
        sock = _connect(srv.url)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                     b'{"model": ')
        waited, received = _closed_after(sock, 10.0)
        sock.close()
    assert received.startswith(b"HTTP/1.1 408"), received[:100]
    assert b'"code":"request_timeout"' in received
    assert waited < 1.0 + 1.5


def test_a_client_that_leaves_is_a_499_in_the_metrics_not_a_500(tmp_path: Path) -> None:
    with serving(server_settings(tmp_path), triage_context()) as srv:
        for _ in range(3):  # declares 100 bytes, sends 10, leaves
            sock = _connect(srv.url)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 100\r\n\r\n0123456789")
            sock.close()
        deadline = time.monotonic() + 5
        while True:
            metrics = httpx.get(srv.url + "/metrics").text
            if 'status="499"} 3.0' in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert 'knowgate_requests_total{status="499"} 3.0' in metrics
    assert 'status="500"' not in metrics


def test_eval_only_graphs_are_neither_listed_nor_served(tmp_path: Path) -> None:
    from knowgate.evals.graphs import EVAL_GRAPHS
    from knowgate.graphs.compose import GRAPHS, register_graph

    # Registered for evaluations only, as a developer's graph may be.
    if "eval-only-echo" not in GRAPHS:
        register_graph("eval-only-echo", EVAL_GRAPHS["oracle"], served=False)
    with serving(server_settings(tmp_path), triage_context()) as srv:
        listed = {m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]}
        refused = {name: httpx.post(srv.url + "/v1/chat/completions", timeout=10, json={
            "model": f"knowgate/{name}", "messages": [{"role": "user", "content": Q}]})
            for name in ("explore", "oracle", "eval-only-echo")}
        health = httpx.get(srv.url + "/healthz").json()
    assert "knowgate/triage" in listed
    assert not {"knowgate/explore", "knowgate/oracle", "knowgate/eval-only-echo"} & listed
    for response in refused.values():
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
    assert not {"explore", "oracle", "eval-only-echo"} & set(health["graphs"])


def test_text_that_cannot_be_encoded_is_a_400_at_once(tmp_path: Path) -> None:
    echo = EchoAnswerer()
    with serving(server_settings(tmp_path), triage_context(answerer=echo)) as srv:
        started = time.monotonic()
        # A lone surrogate: valid JSON, not encodable as UTF-8 for any provider.
        raw = '{"model": "knowgate/fast-only", "messages": [{"role": "user", ' \
              '"content": "Where was \\ud800 born?"}]}'
        response = httpx.post(srv.url + "/v1/chat/completions", content=raw.encode(),
                              headers={"Content-Type": "application/json"}, timeout=30)
        seconds = time.monotonic() - started
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages.0.content" and "UTF-8" in error["message"]
    assert echo.calls == [] and seconds < 2


@pytest.mark.parametrize("extra", [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"response_format": {"type": "json_object"}},
    {"n": 2},
    {"logprobs": True},
])
def test_parameters_knowgate_does_not_support_are_a_400_in_openais_shape(
        tmp_path: Path, extra: dict) -> None:
    with serving(server_settings(tmp_path), triage_context()) as srv:
        response = httpx.post(srv.url + "/v1/chat/completions", timeout=10, json={
            "model": MODEL, "messages": [{"role": "user", "content": Q}], **extra})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["param"] == next(iter(extra))
    assert body["error"]["code"] == "unsupported_parameter"
    assert body["error"]["type"] == "invalid_request_error"


def test_defaults_of_those_parameters_are_accepted_and_clients_see_a_clear_error(
        tmp_path: Path) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class City(BaseModel):
        city: str

    with serving(server_settings(tmp_path), triage_context()) as srv:
        ok = httpx.post(srv.url + "/v1/chat/completions", timeout=10, json={
            "model": MODEL, "messages": [{"role": "user", "content": Q}], "n": 1,
            "response_format": {"type": "text"}, "tool_choice": "none", "temperature": 0.2})
        llm = ChatOpenAI(base_url=srv.url + "/v1", api_key="unused", model=MODEL,
                         max_retries=0)
        with pytest.raises(openai.BadRequestError, match="not supported"):
            llm.with_structured_output(City).invoke(Q)
    assert ok.status_code == 200


def test_a_keyless_server_answers_only_to_loopback_host_names(tmp_path: Path) -> None:
    with serving(server_settings(tmp_path), triage_context()) as srv:
        port = urlsplit(srv.url).port
        rebound = httpx.get(srv.url + "/v1/models", headers={"Host": f"evil.example:{port}"})
        local = [httpx.get(srv.url + "/v1/models", headers={"Host": host}).status_code
                 for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}")]
        page = httpx.get(srv.url + "/ui", headers={"Host": "evil.example"})
    assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "host_not_allowed"
    assert page.status_code == 421
    assert local == [200, 200, 200]


def test_with_keys_metrics_need_one_unless_made_public(tmp_path: Path) -> None:
    keyed = server_settings(tmp_path, api_keys=["sk-a"])
    with serving(keyed, triage_context()) as srv:
        anonymous = httpx.get(srv.url + "/metrics")
        with_key = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer sk-a"})
        foreign_host = httpx.get(srv.url + "/healthz", headers={"Host": "api.example.com"})
    assert anonymous.status_code == 401 and with_key.status_code == 200
    assert foreign_host.status_code == 200  # a keyed server is meant to be reached by name
    public = server_settings(tmp_path / "public", api_keys=["sk-a"], metrics_public=True)
    with serving(public, triage_context()) as srv:
        assert httpx.get(srv.url + "/metrics").status_code == 200


def test_the_trace_page_has_a_content_security_policy_and_keeps_no_key(tmp_path: Path) -> None:
    with serving(server_settings(tmp_path), triage_context()) as srv:
        page = httpx.get(srv.url + "/ui")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "localStorage" not in page.text  # the key lives in this tab's sessionStorage


def test_healthz_reports_each_dependency_and_a_database_outage(tmp_path: Path) -> None:
    with postgres_server() as postgres, serving(
            server_settings(tmp_path, checkpoint_url=postgres.url, api_keys=["sk-a"],
                            key_budget_usd=1.0), triage_context()) as srv:
        up = httpx.get(srv.url + "/healthz", timeout=10)
        postgres.stop()
        down = httpx.get(srv.url + "/healthz", timeout=20)
    assert up.status_code == 200 and up.json()["status"] == "ok"
    assert {name: c["ok"] for name, c in up.json()["checks"].items()} == {
        "threads": True, "spend": True}
    assert down.status_code == 503 and down.json()["status"] == "degraded"
    checks = down.json()["checks"]
    assert checks["threads"]["ok"] is False and checks["threads"]["error"]
    assert checks["spend"]["ok"] is True
    json.dumps(checks)  # plain JSON for any monitor
