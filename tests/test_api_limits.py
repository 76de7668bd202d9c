"""Keys, budgets, rate limits and size limits, answered with OpenAI-style error bodies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from knowgate.api.guard import Gate, check_bind
from knowgate.errors import UserError
from knowgate.tests.api_helpers import Q, server_settings, serving, triage_context

MODEL = "knowgate/triage"


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def _chat(url: str, key: str | None = None, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"model": MODEL, "messages": [{"role": "user", "content": Q}]} | body
    return httpx.post(url + "/v1/chat/completions", json=payload, headers=headers, timeout=10)


def test_keys_and_budgets(tmp_path: Path) -> None:
    # One search-and-read costs $0.000036; the budget lets one through and refuses the next.
    settings = server_settings(tmp_path, api_keys=["sk-a", "sk-b"], key_budget_usd=0.00003)
    with serving(settings, triage_context()) as srv:
        missing = _chat(srv.url)
        assert missing.status_code == 401 and _error(missing)["code"] == "invalid_api_key"
        wrong = _chat(srv.url, key="sk-z")
        assert wrong.status_code == 401 and _error(wrong)["type"] == "authentication_error"
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/v1/models",
                         headers={"Authorization": "Bearer sk-b"}).status_code == 200

        assert _chat(srv.url, key="sk-a").status_code == 200
        spent = _chat(srv.url, key="sk-a")
        assert spent.status_code == 403 and _error(spent)["code"] == "budget_exceeded"
        assert _chat(srv.url, key="sk-b").status_code == 200  # budgets are per key

        with pytest.raises(openai.PermissionDeniedError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-a", max_retries=0
                          ).chat.completions.create(model=MODEL,
                                                    messages=[{"role": "user", "content": Q}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-z", max_retries=0
                          ).models.list()
    # A restart does not hand the key a fresh budget: spend is kept in the data dir.
    with serving(settings, triage_context()) as srv:
        again = _chat(srv.url, key="sk-a")
        assert again.status_code == 403 and _error(again)["code"] == "budget_exceeded"
        assert "$0.000036" in _error(again)["message"]


def test_rate_limits_per_key(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, api_keys=["sk-a", "sk-b"], key_requests_per_minute=3)
    with serving(settings, triage_context()) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-a", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": Q}])
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": Q}])
        assert caught.value.code == "rate_limit_exceeded"
        assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
        assert _chat(srv.url, key="sk-b").status_code == 200


def test_the_rate_window_slides() -> None:
    now = [0.0]
    gate = Gate(server_settings(Path("."), key_requests_per_minute=2), clock=lambda: now[0])
    gate.admit("k")
    gate.admit("k")
    with pytest.raises(Exception, match="rate limit of 2"):
        gate.admit("k")
    now[0] = 60.5
    gate.admit("k")  # the first two have left the window


def test_size_limits(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, max_body_bytes=4096, max_messages=3,
                               max_message_chars=100)
    with serving(settings, triage_context()) as srv:
        big = _chat(srv.url, messages=[{"role": "user", "content": "x" * 5000}])
        assert big.status_code == 413 and _error(big)["code"] == "request_too_large"
        chunked = httpx.post(srv.url + "/v1/chat/completions",
                             content=iter([b'{"model": "knowgate/triage", "messages": ['] +
                                          [b" " * 1000] * 5 + [b"]}"]),
                             headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413  # no Content-Length: counted while read
        many = _chat(srv.url, messages=[{"role": "user", "content": "hi"}] * 4)
        assert many.status_code == 400 and _error(many)["code"] == "too_many_messages"
        long = _chat(srv.url, messages=[{"role": "user", "content": "y" * 101}])
        assert long.status_code == 400 and _error(long)["param"] == "messages.0.content"
        ends_with_answer = _chat(srv.url, messages=[{"role": "assistant", "content": "hi"}])
        assert ends_with_answer.status_code == 400
        assert _error(ends_with_answer)["code"] == "no_question"
        blank = _chat(srv.url, messages=[{"role": "user", "content": "   "}])
        assert blank.status_code == 400
        not_json = httpx.post(srv.url + "/v1/chat/completions", content=b"{oops",
                              headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and _error(not_json)["type"] == (
            "invalid_request_error")
        wrong_type = _chat(srv.url, messages="hello")
        assert wrong_type.status_code == 400 and _error(wrong_type)["param"] == "messages"
        # Every refusal above was counted by status, none as a server error.
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'knowgate_requests_total{status="413"} 2.0' in metrics
        assert 'status="500"' not in metrics


def test_no_keys_means_loopback_only(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    check_bind("127.0.0.1", settings)
    check_bind("::1", settings)
    with pytest.raises(UserError, match="without API keys"):
        check_bind("0.0.0.0", settings)
    check_bind("0.0.0.0", server_settings(tmp_path, api_keys=["sk-a"]))

    done = subprocess.run([sys.executable, "-m", "knowgate", "serve", "--host", "0.0.0.0",
                           "--port", "0"], capture_output=True, text=True, timeout=60,
                          env={**_env(tmp_path), "KNOWGATE_API_KEYS": "[]"})
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "KNOWGATE_DATA_DIR": str(tmp_path)}
