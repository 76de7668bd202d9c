"""Bringing your own documents: reading JSONL/text/Markdown, and `knowgate index add/count`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate.cli import app
from knowgate.errors import UserError
from knowgate.tools.ingest import read_documents
from knowgate.tools.searcher import ChromaSearcher, chroma_client

LIMIT = 200

# Paragraph sizes are chosen so the .txt file needs packing, and one paragraph alone is longer
# than LIMIT so it has to fall back to sentence boundaries.
TXT = (
    "The lighthouse at Varrow Point was built of grey granite.\n"
    "Its lamp burned whale oil until 1880.\n\n"
    "Keepers rowed out every fortnight.\n\n"
    + " ".join(f"Sentence {n} tells how the keeper logged storm number {n}." for n in range(12))
    + "\n"
)
MD = (
    "# Quillberry jam\n\n"
    "Quillberry jam is cooked from tart violet quillberries picked in Osterfen marshes.\n\n"
    "- Simmer the berries with honey.\n- Seal the jars while hot.\n"
)
RECORDS = [
    {"id": "faq-1", "text": "Zephyrine Moll repairs brass telescopes in Harrowgate.", "tag": "x"},
    {"id": "faq-2", "text": "Return parcels within thirty days for a full refund."},
]


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def _one_line(output: str) -> str:
    """CLI output with rich's wrapping (at the runner's 80 columns) undone."""
    return re.sub(r"\s+", " ", output)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "guides").mkdir(parents=True)
    lines = [json.dumps(r) for r in RECORDS]
    (root / "faq.jsonl").write_text(lines[0] + "\n\n" + lines[1] + "\n", encoding="utf-8")
    (root / "guides" / "lighthouse.txt").write_text(TXT, encoding="utf-8")
    (root / "guides" / "jam.md").write_text(MD, encoding="utf-8")
    (root / "notes.csv").write_text("not,a,document\n", encoding="utf-8")  # skipped
    return root


def test_read_documents_ids_chunks_and_no_text_lost(docs: Path) -> None:
    passages = list(read_documents(docs, chunk_chars=LIMIT))
    ids = [p.id for p in passages]
    # Sorted by relative path; JSONL ids as given, text chunks as <relative path>#<n>.
    assert ids[:2] == ["faq-1", "faq-2"]
    assert ids[2:] == sorted(ids[2:], key=lambda i: (i.split("#")[0], int(i.split("#")[1])))
    assert {i.split("#")[0] for i in ids[2:]} == {"guides/jam.md", "guides/lighthouse.txt"}
    assert passages[0].text == RECORDS[0]["text"] and passages[0].score is None

    for name, source in (("guides/lighthouse.txt", TXT), ("guides/jam.md", MD)):
        chunks = [p for p in passages if p.id.startswith(name + "#")]
        assert [p.id for p in chunks] == [f"{name}#{n}" for n in range(len(chunks))]
        assert all(0 < len(p.text) <= LIMIT for p in chunks)
        # Every word survives, whole and in order.
        assert [w for p in chunks for w in _words(p.text)] == _words(source)
    assert len([i for i in ids if i.startswith("guides/lighthouse.txt#")]) > 2
    # The short Markdown file is one chunk that keeps its paragraph breaks.
    assert [p.text for p in passages if p.id == "guides/jam.md#0"] == [MD.strip()]


def test_single_file_ids_use_the_file_name(docs: Path) -> None:
    passages = list(read_documents(docs / "guides" / "jam.md"))
    assert [p.id for p in passages] == ["jam.md#0"]


def test_over_long_word_is_cut_only_when_it_must_be(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("short " + "x" * 25 + " tail", encoding="utf-8")
    texts = [p.text for p in read_documents(tmp_path / "w.txt", chunk_chars=10)]
    assert texts == ["short", "x" * 10, "x" * 10, "xxxxx tail"]


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:3: .*JSON"):
        list(read_documents(path))


@pytest.mark.parametrize(
    ("record", "problem"),
    [({"text": "no id here"}, "id: Field required"),
     ({"id": "a", "text": "  "}, "text is empty"),
     ({"id": 5, "text": "numeric id"}, "id: Input should be a valid string")],
)
def test_invalid_records_are_user_errors(tmp_path: Path, record: dict, problem: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"r\.jsonl:1: .*{problem}"):
        list(read_documents(path))


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(RECORDS[0]) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n" + json.dumps(RECORDS[0]) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"'faq-1'.*a\.jsonl:1.*b\.jsonl:2"):
        list(read_documents(tmp_path))


def test_missing_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        list(read_documents(tmp_path / "nowhere"))


@pytest.fixture
def runner_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """A private data dir, and no collection or settings file leaking in from the machine."""
    monkeypatch.chdir(tmp_path)  # no ./knowgate.toml
    return {"KNOWGATE_DATA_DIR": str(tmp_path / "data"), "KNOWGATE_COLLECTION": None,
            "KNOWGATE_CONFIG": None}


def test_index_add_count_search_and_readd(docs: Path, tmp_path: Path,
                                          runner_env: dict[str, str | None]) -> None:
    runner = CliRunner()
    args = ["index", "add", str(docs), "--collection", "my-docs", "--chunk-chars", str(LIMIT)]
    expected = len(list(read_documents(docs, chunk_chars=LIMIT)))

    added = runner.invoke(app, args, env=runner_env)
    assert added.exit_code == 0, added.output
    assert f"added {expected} passages to 'my-docs'; it now holds {expected}" in added.output
    assert "search it with KNOWGATE_COLLECTION=my-docs" in added.output

    # The collection can also come from the environment, as the searcher will read it.
    counted = runner.invoke(app, ["index", "count"],
                            env={**runner_env, "KNOWGATE_COLLECTION": "my-docs"})
    assert counted.exit_code == 0, counted.output
    assert counted.stdout.strip() == str(expected)

    searcher = ChromaSearcher(chroma_client(tmp_path / "data" / "chroma"), "my-docs",
                              lexical_weight=1.0)
    hits = searcher.search_many(["Who repairs brass telescopes in Harrowgate?",
                                 "What are quillberries picked in Osterfen marshes for?"], k=3)
    assert hits[0][0].id == "faq-1"
    assert hits[1][0].id == "guides/jam.md#0"

    # Adding the same documents again updates them by id: nothing is duplicated.
    again = runner.invoke(app, args, env=runner_env)
    assert again.exit_code == 0, again.output
    assert searcher.count() == expected


def test_index_without_collection_exits_2(docs: Path,
                                          runner_env: dict[str, str | None]) -> None:
    result = CliRunner().invoke(app, ["index", "add", str(docs)], env=runner_env)
    assert result.exit_code == 2
    assert "pass --collection NAME or set KNOWGATE_COLLECTION" in _one_line(result.output)


def test_index_add_bad_input_exits_2_with_one_line(tmp_path: Path,
                                                   runner_env: dict[str, str | None]) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["index", "add", str(tmp_path / "bad.jsonl"), "--collection", "my-docs"],
        env=runner_env,
    )
    assert result.exit_code == 2
    assert "bad.jsonl:1: invalid passage: text: Field required" in _one_line(result.output)
    assert not (tmp_path / "data").exists()  # nothing was written


def test_markdown_is_cut_at_headings_and_every_chunk_keeps_the_title() -> None:
    from knowgate.tools.ingest import chunk_markdown

    doc = ("# Brindlewick library FAQ\n\n## When is it open?\n\nFrom 9 to 7 on weekdays.\n\n"
           "## How many books?\n\nUp to 12 at a time.\n")
    assert list(chunk_markdown(doc, 400)) == [
        "# Brindlewick library FAQ\n\n## When is it open?\n\nFrom 9 to 7 on weekdays.",
        "Brindlewick library FAQ\n\n## How many books?\n\nUp to 12 at a time.",
    ]
    assert list(chunk_markdown("no headings here\n\nat all", 400)) == [
        "no headings here\n\nat all"]
    for chunk in chunk_markdown(doc.replace("Up to 12", "Up to 12 " + "word " * 80), 120):
        assert chunk.startswith(("# Brindlewick", "Brindlewick library FAQ")) and len(chunk) <= 120
