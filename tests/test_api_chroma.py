"""The searcher on a chromadb server (``chroma run``), as docker-compose runs it: documents go
in with ``knowgate index add`` and come back as citations of a chat completion."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from knowgate.api.serve import wait_until_up
from knowgate.cli import app
from knowgate.composition import open_collection
from knowgate.testing import ScriptedAnswerer
from knowgate.tests.api_helpers import (
    free_port,
    require_tool,
    server_settings,
    serving,
    triage_context,
    which,
)
from knowgate.tools.search_role import PricedSearcher

Q = "Who repairs brass telescopes in Harrowgate?"


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    chroma = which("chroma") or str(Path(sys.executable).with_name("chroma"))
    require_tool(Path(chroma).exists(), "chromadb's `chroma` command")
    port = free_port()
    process = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "server"),
                                "--host", "127.0.0.1", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/api/v2/heartbeat", process, timeout_s=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_documents_indexed_on_the_server_are_searched_and_cited(tmp_path: Path,
                                                               chroma_url: str) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(r) for r in [
        {"id": "faq-1", "text": "Brass telescopes in Harrowgate are repaired by Ilsa Marrow."},
        {"id": "faq-2", "text": "Quillberries from the Osterfen marshes are picked for jam."},
    ]) + "\n")
    env = {"KNOWGATE_CHROMA_URL": chroma_url, "KNOWGATE_DATA_DIR": str(tmp_path / "data"),
           "KNOWGATE_CONFIG": None, "KNOWGATE_COLLECTION": None}
    added = CliRunner().invoke(app, ["index", "add", str(docs), "--collection", "shop-faq"],
                               env=env)
    assert added.exit_code == 0, added.output
    assert "added 2 passages to 'shop-faq'" in added.output

    settings = server_settings(tmp_path / "data", chroma_url=chroma_url, collection="shop-faq",
                               search_lexical_weight=1.0)
    searcher = PricedSearcher(open_collection(settings), price_usd=0.00003, k=1, timeout_s=10)
    answerer = ScriptedAnswerer(closed={Q: ("nobody", 0.3)}, opened={Q: ("Ilsa Marrow", 0.99)})
    with serving(settings, triage_context(answerer=answerer, searcher=searcher)) as srv:
        reply = httpx.post(srv.url + "/v1/chat/completions", timeout=30, json={
            "model": "knowgate/triage", "messages": [{"role": "user", "content": Q}]}).json()

    assert reply["choices"][0]["message"]["content"] == "Ilsa Marrow"
    assert reply["knowgate"]["citations"] == ["faq-1"]
    assert not (tmp_path / "data" / "chroma").exists()  # nothing went to an embedded index
    assert any((tmp_path / "server").iterdir())  # the server holds the collection
