"""``knowgate serve`` as a real process with the shipped world's roles: it answers through the
unchanged openai client (plain and streaming), keeps a thread's turns in its checkpoint file,
and shuts down cleanly. (Restarts are tested in-process in ``test_api_threads.py``.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai

from knowgate.api.guard import ANONYMOUS
from knowgate.api.serve import wait_until_up
from knowgate.api.threads import Threads, open_checkpointer, owned_thread
from knowgate.settings import load_settings
from knowgate.tests.api_helpers import free_port

QUESTION = "In which city was Sebrurt Shenom born?"


@contextmanager
def knowgate_serve(data_dir: Path, checkpoint: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "KNOWGATE_DATA_DIR": str(data_dir),
           "KNOWGATE_CHECKPOINT_DB": str(checkpoint), "KNOWGATE_DEVICE": "cpu"}
    env.pop("KNOWGATE_CONFIG", None)
    process = subprocess.Popen([sys.executable, "-m", "knowgate", "serve", "--port", str(port),
                                "--log-level", "warning"], env=env, cwd=checkpoint.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process, timeout_s=240)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=30) == 0  # a clean shutdown closes the checkpointer
        finally:
            if process.poll() is None:
                process.kill()


def test_serve_answers_with_the_shipped_world_and_keeps_threads(data_dir: Path,
                                                                tmp_path: Path) -> None:
    checkpoint = tmp_path / "threads.sqlite"
    with knowgate_serve(data_dir, checkpoint) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        first = client.chat.completions.create(
            model="knowgate/triage", messages=[{"role": "user", "content": QUESTION}],
            metadata={"thread_id": "world-1"})
        stream = client.chat.completions.create(
            model="knowgate/fast-only", messages=[{"role": "user", "content": "And where?"}],
            metadata={"thread_id": "world-1"}, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    trace = first.model_extra["knowgate"]
    assert trace["outcome"] in ("answered", "abstained") and trace["path"]
    assert trace["cost_usd"] > 0 and trace["signals"]
    assert first.usage is not None and first.usage.prompt_tokens > 0  # the local models' tokens
    assert text

    # The process is gone; its checkpoint file has both turns of the thread.
    async def stored() -> list[tuple[str, str]]:
        async with open_checkpointer(load_settings(checkpoint_db=checkpoint)) as saver:
            stored = owned_thread(ANONYMOUS, "world-1")  # threads are stored per key
            return [(t.role, t.content) for t in await Threads(saver).history(stored)]

    turns = asyncio.run(stored())
    assert turns == [("user", QUESTION), ("assistant", first.choices[0].message.content),
                     ("user", "And where?"), ("assistant", text)]
