"""Tenants and money: a thread belongs to the key that made it, and a key's budget is reserved
before a request runs and settled to what it spent after, a dropped stream and a restart
included."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from knowgate.api.guard import Gate, SpendLedger
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Draft
from knowgate.tests.api_helpers import EchoAnswerer, server_settings, serving, triage_context

MODEL = "knowgate/fast-only"
SECRET = "My account number is 4242-7777"


def _post(url: str, key: str, content: str, thread: str | None = None,
          stream: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if thread:
        headers["X-Knowgate-Thread"] = thread
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=30, json={
        "model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]})


def test_another_key_on_the_same_thread_id_sees_none_of_its_turns(tmp_path: Path) -> None:
    echo = EchoAnswerer()
    settings = server_settings(tmp_path, api_keys=["sk-a", "sk-b"])
    with serving(settings, triage_context(answerer=echo)) as srv:
        assert _post(srv.url, "sk-a", SECRET, thread="shared").status_code == 200
        theirs = _post(srv.url, "sk-b", "What did I say?", thread="shared")
        mine = _post(srv.url, "sk-a", "What did I say?", thread="shared")
    assert theirs.status_code == 200 and theirs.headers["X-Knowgate-Thread"] == "shared"
    assert theirs.json()["knowgate"]["thread_id"] == "shared"
    seen_by_b = echo.calls[1][1]
    leaked = sum(SECRET in turn.content for turn in seen_by_b)
    assert leaked == 0 and seen_by_b == []
    assert SECRET not in theirs.text
    assert [t.content for t in echo.calls[2][1]][0] == SECRET  # the owner still has it
    assert mine.status_code == 200


def test_another_key_cannot_hold_a_thread_busy(tmp_path: Path) -> None:
    echo = EchoAnswerer(delay_s=1.0)
    settings = server_settings(tmp_path, api_keys=["sk-a", "sk-b"])
    with serving(settings, triage_context(answerer=echo)) as srv:
        slow = threading.Thread(target=_post, args=(srv.url, "sk-b", "hold it", "victim"))
        slow.start()
        time.sleep(0.3)  # sk-b's turn is running on its own "victim"
        started = time.monotonic()
        owner = _post(srv.url, "sk-a", "my turn", thread="victim")
        slow.join(timeout=10)
    assert owner.status_code == 200  # not 409: sk-b's request ran on another thread
    assert time.monotonic() - started < 5


@dataclass
class PricedEcho:
    """An ``Answerer`` whose every draft costs ``usd`` after ``delay_s``."""

    usd: float
    delay_s: float

    async def __call__(self, question: str, evidence=(), history=()) -> Draft:
        await asyncio.sleep(self.delay_s)
        return Draft(answer="an answer", confidence=0.99, label="sure", cost_usd=self.usd)


def _context(draft_usd: float, delay_s: float) -> TriageContext:
    """fast-only drafts costing ``draft_usd`` each; the estimated prices say the same."""
    return TriageContext(answerer=PricedEcho(draft_usd, delay_s), searcher=None, critic=None,
                         policy=Policy.load(),
                         prices=Prices(draft=draft_usd, search=0.0, refine=0.0),
                         role_timeout_s=10)


def test_concurrent_requests_overshoot_the_budget_by_at_most_one_reservation(
        tmp_path: Path) -> None:
    budget, draft = 0.01, 0.003
    settings = server_settings(tmp_path, api_keys=["sk-a"], key_budget_usd=budget)
    statuses: list[int] = []
    lock = threading.Lock()
    with serving(settings, _context(draft, delay_s=0.3)) as srv:
        def client() -> None:
            # A client that retries while the budget is only held, until it is served or
            # refused for good (bounded in tries and time).
            ends = time.monotonic() + 30
            for _ in range(200):
                response = _post(srv.url, "sk-a", "q")
                if response.status_code != 429 or time.monotonic() > ends:
                    break
                time.sleep(0.05)
            with lock:
                statuses.append(response.status_code)

        clients = [threading.Thread(target=client) for _ in range(30)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=60)
    spent = SpendLedger(tmp_path / "key_spend.sqlite").spent("sk-a")
    # A fast-only run drafts once, but its reservation is the worst case the policy's round
    # limits allow: a draft to open and one after each search.
    reservation = draft * (1 + Policy.load().max_searches)
    assert len(statuses) == 30 and set(statuses) <= {200, 403}
    served = statuses.count(200)
    print(f"30 clients on a ${budget} budget: {served} served, ${spent:.4f} spent, overshoot "
          f"${max(0.0, spent - budget):.4f} (one reservation: ${reservation:.4f})")  # -rP
    assert abs(spent - served * draft) < 1e-9  # every served request charged what it cost
    assert spent - budget <= reservation + 1e-9, (spent, served)
    assert served >= 3  # the budget is used, not merely guarded


def test_a_dropped_stream_is_charged_what_it_spent(tmp_path: Path) -> None:
    draft = 0.003
    settings = server_settings(tmp_path, api_keys=["sk-a"], key_budget_usd=1.0)
    ledger = SpendLedger(tmp_path / "key_spend.sqlite")
    with serving(settings, _context(draft, delay_s=0.5)) as srv:
        for _ in range(8):
            with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=10,
                              headers={"Authorization": "Bearer sk-a"},
                              json={"model": MODEL, "stream": True,
                                    "messages": [{"role": "user", "content": "q"}]}) as r:
                assert next(r.iter_lines()).startswith("data: ")  # then the client leaves
        deadline = time.monotonic() + 10
        while ledger.spent("sk-a") < 8 * draft - 1e-9 and time.monotonic() < deadline:
            time.sleep(0.05)
        spent = ledger.spent("sk-a")
        metrics = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer sk-a"}).text
    print(f"8 dropped streams: ${spent:.4f} charged for ${8 * draft:.4f} spent")  # -rP
    assert abs(spent - 8 * draft) < 1e-9, spent  # 8 drafts paid, 8 charged
    assert ledger.held("sk-a") == 0.0
    assert 'knowgate_requests_total{status="499"} 8.0' in metrics
    assert 'status="500"' not in metrics


def test_a_restart_settles_what_a_killed_server_held_to_what_it_spent(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, api_keys=["sk-a"], key_budget_usd=0.01)
    gate = Gate(settings)
    hold = gate.reserve("sk-a", 0.006)
    hold.progress(0.002)  # a step finished and was paid; then the process dies
    assert gate.ledger is not None and gate.ledger.held("sk-a") == 0.006
    again = Gate(settings)  # the next start
    assert again.spent("sk-a") == 0.002
    assert again.ledger is not None and again.ledger.held("sk-a") == 0.0
