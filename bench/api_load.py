"""Benchmark: 200 concurrent streaming chat completions against ``knowgate serve``.

The server runs as its own process (``python -m knowgate serve``) with the real roles built from
settings: a litellm answerer and critic calling a simulated-latency OpenAI-compatible provider
(``knowgate.tests.loopback_openai``, every reply delayed by ``--provider-ms``), the world's
chromadb searcher, no prober. The client opens all streams at once and reads each to
``data: [DONE]``.

Printed per request: end-to-end seconds (client clock), time to the first event, the graph's own
seconds (``knowgate.latency_s`` of the finishing chunk: LangGraph, the roles, the provider) and
the server's added latency = end-to-end minus graph time (HTTP, auth, thread-less SSE framing,
the event loop queueing under load, and the client's own overhead, so it is an upper bound).
``sent added`` starts the clock when httpx hands the request to the connection instead of when
the client's coroutine starts (a client opening 200 streams at once sends the last ones
hundreds of ms later on 2 shared cores); it still includes the client's reading of the stream.

Run: ``.venv/bin/python bench/api_load.py [--n 200] [--provider-ms 50] [--graph triage]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

for name, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "ANONYMIZED_TELEMETRY": "False",
                    "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(name, value)

FAST, SLOW = "openai/sim-fast", "openai/sim-slow"
QUESTION = "Where was Sebrurt Shenom born?"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_SENT: dict[str, float] = {}  # request id -> when httpx sent it


async def _mark_sent(request: httpx.Request) -> None:
    _SENT[request.headers["x-bench-id"]] = time.perf_counter()


async def _one(client: httpx.AsyncClient, n: int, graph: str) -> dict[str, Any]:
    body = {"model": f"knowgate/{graph}", "stream": True,
            "messages": [{"role": "user", "content": f"{QUESTION} (#{n})"}]}
    started = time.perf_counter()
    first = None
    trace = None
    done = False
    bench_id = f"{n}-{started}"
    async with client.stream("POST", "/v1/chat/completions", json=body,
                             headers={"x-bench-id": bench_id}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            first = first or time.perf_counter()
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            trace = event.get("knowgate") or trace
    ended = time.perf_counter()
    if not done or trace is None:
        raise RuntimeError("the stream ended without a trace and [DONE]")
    sent = _SENT.pop(bench_id, started)
    return {"e2e": ended - started, "first": (first or ended) - started,
            "graph": float(trace["latency_s"]), "added": ended - started - trace["latency_s"],
            "sent_added": ended - sent - trace["latency_s"], "path": " -> ".join(trace["path"])}


async def _wave(url: str, n: int, graph: str) -> tuple[list[dict[str, Any]], list[str], float]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                 event_hooks={"request": [_mark_sent]}) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(_one(client, i, graph) for i in range(n)),
                                       return_exceptions=True)
        wall = time.perf_counter() - started
    ok = [r for r in results if isinstance(r, dict)]
    errors = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, dict)]
    return ok, errors, wall


def _sequential(url: str, n: int, graph: str) -> tuple[list[dict[str, Any]], list[str], float]:
    """``n`` requests one after the other: the added latency without queueing."""
    ok: list[dict[str, Any]] = []
    errors: list[str] = []
    started = time.perf_counter()
    for _ in range(n):
        done, failed, _wall = asyncio.run(_wave(url, 1, graph))
        ok += done
        errors += failed
    return ok, errors, time.perf_counter() - started


def _report(label: str, ok: list[dict[str, Any]], errors: list[str], wall: float) -> None:
    print(f"{label}: {len(ok)} ok, {len(errors)} errors, {wall:.2f} s wall, "
          f"{len(ok) / wall:.1f} completions/s")
    for key, title in (("e2e", "end to end"), ("first", "first event"),
                       ("graph", "graph (roles+provider)"), ("added", "server added"),
                       ("sent_added", "server added, from send")):
        values = [r[key] * 1000 for r in ok]
        if values:
            print(f"  {title:24s} p50 {_pct(values, 0.5):8.1f} ms   p99 {_pct(values, 0.99):8.1f} ms"
                  f"   mean {statistics.fmean(values):8.1f} ms")
    print("  paths:", dict(Counter(r["path"] for r in ok)))
    for error in errors[:5]:
        print("  error:", error)


def measure(n: int = 200, provider_ms: float = 50.0, graph: str = "triage",
            quiet: bool = False) -> dict[str, Any]:
    """Start the server, warm it up, ask 30 questions in sequence, then ``n`` at once.

    Returns the server's added latency (p50 and p99, ms) one at a time and under load, the
    graph's own, and the count of errors under load; prints the tables unless ``quiet``.
    """
    from knowgate.api.serve import wait_until_up
    from knowgate.tests.loopback_openai import Delay, LoopbackLLM

    report = (lambda *args: None) if quiet else _report
    out: dict[str, Any] = {}
    reply = json.dumps({"answer": "Kudal", "confidence": 0.97, "label": "sure"})
    with tempfile.TemporaryDirectory() as tmp, \
            LoopbackLLM(default=lambda seen: Delay(provider_ms / 1000, reply)) as llm:
        # Priced per token as a hosted model is (an unpriced one makes litellm diagnose the
        # zero cost of every call, several ms of CPU each).
        params = {"api_base": llm.api_base, "api_key": "bench",
                  "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}
        port = _port()
        env = {**os.environ,
               "KNOWGATE_WORLD": "synthetic", "KNOWGATE_ANSWERER": FAST, "KNOWGATE_CRITIC": SLOW,
               "KNOWGATE_PROBER": "off",
               "KNOWGATE_LITELLM_PARAMS": json.dumps({FAST: params, SLOW: params}),
               "KNOWGATE_DATA_DIR": os.environ.get("KNOWGATE_DATA_DIR", str(Path(tmp) / "data")),
               "KNOWGATE_CHECKPOINT_DB": str(Path(tmp) / "threads.sqlite"),
               "KNOWGATE_REQUEST_TIMEOUT_S": "60"}
        server = subprocess.Popen([sys.executable, "-m", "knowgate", "serve", "--port", str(port),
                                   "--log-level", "warning"], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url + "/healthz", server, timeout_s=180)
            if not quiet:
                print(f"server up; provider latency {provider_ms:g} ms per call")
            report("warm-up (20 concurrent)", *asyncio.run(_wave(url, 20, graph)))
            alone = _sequential(url, 30, graph)
            report("one at a time (30 in sequence)", *alone)
            ok, errors, wall = asyncio.run(_wave(url, n, graph))
            report(f"load ({n} concurrent streams)", ok, errors, wall)
            if not quiet:
                print(f"provider calls: {len(llm.requests)}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    for label, rows in (("alone", alone[0]), ("load", ok)):
        for key in ("added", "sent_added", "graph"):
            values = [r[key] * 1000 for r in rows]
            if values:
                out[f"{label}_{key}_ms_p50"] = round(_pct(values, 0.5), 1)
                out[f"{label}_{key}_ms_p99"] = round(_pct(values, 0.99), 1)
    out["load_errors"] = len(errors)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="concurrent streaming requests")
    parser.add_argument("--provider-ms", type=float, default=50.0,
                        help="simulated provider latency per call")
    parser.add_argument("--graph", default="triage", help="registered graph to ask")
    args = parser.parse_args()
    if measure(args.n, args.provider_ms, args.graph)["load_errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
