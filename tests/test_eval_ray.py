"""``--backend ray`` on a local Ray cluster gives the same records as the local backend.

Both runs use roles built from settings (hosted models on a loopback provider on 127.0.0.1,
deterministic per question) and fresh response caches; every call is paid once per run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from knowgate import load_settings
from knowgate.evals.datasets import Dataset, EvalItem
from knowgate.evals.records import read_records
from knowgate.evals.runner import run_eval
from knowgate.tests.loopback_openai import LoopbackLLM, Seen
from knowgate.tests.test_eval_runs import strip_latency

MINI, BIG = "openai/gpt-4o-mini", "openai/gpt-4o"
N = 24


def reply(seen: Seen) -> str:
    number = int("".join(ch for ch in seen.last_user.split("?")[0] if ch.isdigit()) or 0)
    if seen.model == BIG.split("/")[1]:
        return json.dumps({"verdict": "revise", "answer": f"City{number}",
                           "confidence": 0.9 if number % 3 else 0.3})
    return json.dumps({"answer": f"City{number}" if number % 2 else "Nowhere",
                       "confidence": 0.5 + number / 100, "label": "unsure"})


async def test_ray_backend_equals_the_local_backend(tmp_path: Path, data_dir: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is missing on CI (the 'distributed' extra installs it)")
        pytest.skip("ray is not installed (pip install 'knowgate[distributed]')")
    items = [EvalItem(id=f"q{i:02d}", question=f"Where was Person{i} born?",
                      answers=[f"City{i}"]) for i in range(N)]
    dataset = Dataset("toy", items)
    with LoopbackLLM(default=reply) as server:
        settings = load_settings(
            data_dir=data_dir, answerer=MINI, critic=BIG, prober="off", llm_retries=0,
            litellm_params={m: {"api_base": server.api_base, "api_key": "k"}
                            for m in (MINI, BIG)})
        await run_eval(dataset, "always-refine", tmp_path / "local", settings,
                       concurrency=8, cache_path=tmp_path / "local.sqlite")
        paid_local = len(server.billed)
        stats = await run_eval(dataset, "always-refine", tmp_path / "ray", settings,
                               concurrency=8, cache_path=tmp_path / "ray.sqlite",
                               backend="ray", workers=2)
        paid_ray = len(server.billed) - paid_local
    assert stats.done == N and paid_local == paid_ray == 2 * N
    local = {r.id: strip_latency(r) for r in read_records(tmp_path / "local")}
    remote = {r.id: strip_latency(r) for r in read_records(tmp_path / "ray")}
    assert len(remote) == N and remote == local
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["backend"] == "ray"
