"""A batch run killed with SIGKILL midway resumes to the same records, paying no call twice.

``knowgate eval run`` runs as a real subprocess against a loopback OpenAI-compatible provider
(``tests/loopback_openai.py``) that counts the calls it bills. The provider answers in waves (all
replies leave on a multiple of ``WAVE`` seconds) and the kill lands between waves, so no reply is
on the wire at that instant; the calls still in flight are never billed (their server stops with
the killed run, as a provider does not bill an aborted request). The resumed run gets a fresh
provider. An uninterrupted run on a third provider gives the reference records and paid calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from knowgate.evals.records import read_records
from knowgate.tests.loopback_openai import Delay, LoopbackLLM, Seen
from knowgate.tests.test_eval_runs import strip_latency

MINI, BIG = "openai/gpt-4o-mini", "openai/gpt-4o"
N = 32
WAVE = 0.4
LIMIT_S = 120


def reply(seen: Seen) -> Delay:
    """Deterministic per question; sent on the next wave boundary."""
    number = int("".join(ch for ch in seen.last_user.split("?")[0] if ch.isdigit()) or 0)
    if seen.model == BIG.split("/")[1]:  # the provider sees the id without "openai/"
        text = json.dumps({"verdict": "revise", "answer": f"City{number}",
                           "confidence": 0.9 if number % 3 else 0.4})
    else:
        text = json.dumps({"answer": f"City{number}" if number % 2 else "Nowhere",
                           "confidence": 0.6, "label": "unsure"})
    wait = WAVE - (time.time() % WAVE)
    return Delay(wait if wait > 0.05 else wait + WAVE, text)


def config(tmp_path: Path, server: LoopbackLLM, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    params = "".join(f'[litellm_params."{m}"]\napi_base = "{server.api_base}"\n'
                     f'api_key = "test-key"\n' for m in (MINI, BIG))
    path.write_text(f'answerer = "{MINI}"\ncritic = "{BIG}"\nprober = "off"\nllm_retries = 0\n'
                    f"{params}")
    return path


def command(tmp_path: Path, cfg: Path, out: str, cache: str) -> list[str]:
    return [sys.executable, "-m", "knowgate", "eval", "run", "--dataset",
            str(tmp_path / "qs.jsonl"), "--graph", "always-refine", "--out",
            str(tmp_path / out), "--cache", str(tmp_path / cache), "--concurrency", "8",
            "--config", str(cfg)]


def run_to_end(tmp_path: Path, env: dict[str, str], name: str, out: str, cache: str
               ) -> tuple[subprocess.CompletedProcess[str], int]:
    """``knowgate eval run`` to its end against a fresh loopback provider: the finished process
    and how many calls the provider billed."""
    with LoopbackLLM(default=reply) as llm:
        done = subprocess.run(command(tmp_path, config(tmp_path, llm, name), out, cache), env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=LIMIT_S)
        assert done.returncode == 0, done.stderr[-2000:]
        return done, len(llm.billed)


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(tmp_path: Path,
                                                                  data_dir: Path) -> None:
    (tmp_path / "qs.jsonl").write_text("".join(
        json.dumps({"id": f"q{i:02d}", "question": f"Where was Person{i} born?",
                    "answers": [f"City{i}"]}) + "\n" for i in range(N)))
    env = {**os.environ, "KNOWGATE_DATA_DIR": str(data_dir)}

    _, reference = run_to_end(tmp_path, env, "whole", "whole", "whole.sqlite")
    assert reference == 2 * N  # a draft and a critic call per question

    records = tmp_path / "killed" / "records.jsonl"
    with LoopbackLLM(default=reply) as first:
        proc = subprocess.Popen(command(tmp_path, config(tmp_path, first, "first"), "killed",
                                        "killed.sqlite"), env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + LIMIT_S
            while (not records.exists() or len(records.read_text().splitlines()) < N // 3):
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.05)
            time.sleep(WAVE / 2 - (time.time() % WAVE) + (WAVE if time.time() % WAVE > WAVE / 2
                                                        else 0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        first.stop()  # calls in flight end unbilled
        paid_before = len(first.billed)
    finished_before = len(read_records(tmp_path / "killed", repair=False))
    assert 0 < finished_before < N, "the kill must land midway"

    resumed, paid_after = run_to_end(tmp_path, env, "second", "killed", "killed.sqlite")
    assert f"{finished_before} already done" in resumed.stderr

    final = {r.id: strip_latency(r) for r in read_records(tmp_path / "killed")}
    expected = {r.id: strip_latency(r) for r in read_records(tmp_path / "whole")}
    assert final == expected
    # Every distinct call must be paid once somewhere; paying exactly as many as the
    # uninterrupted run means none was paid twice.
    assert paid_before > 0 and paid_after > 0
    print(f"killed with {finished_before}/{N} records written; paid calls: {paid_before} before "
          f"the kill + {paid_after} after resuming = {paid_before + paid_after} "
          f"(uninterrupted: {reference})")  # shown with pytest -rP
    assert paid_before + paid_after == reference, (paid_before, paid_after, reference)

