"""Read a user's own documents as passages for the chromadb searcher.

JSONL files hold ready-made passages, one ``{"id": ..., "text": ...}`` object per line; text and
Markdown files are cut into chunks on paragraph boundaries, so each chunk stays short enough for
the embedder (MiniLM reads about 256 word pieces) yet keeps whole paragraphs together where it can.
A Markdown file is cut at its section headings first, and every chunk after the first starts with
the document's title: a small reader given one chunk ("How many books can I borrow? Up to 12.")
must still know what it is about, as a Factbook passage keeps its entry's name.
Storing the passages is ``ChromaSearcher.add``'s job: it upserts by id, so re-reading the same
documents updates them instead of duplicating them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from knowgate.errors import UserError
from knowgate.jsonl import read_jsonl, read_text
from knowgate.roles import Passage

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
SUFFIXES = (".jsonl", *TEXT_SUFFIXES)

MARKDOWN_SUFFIXES = (".md", ".markdown")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")  # a blank (or whitespace-only) line
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s+|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class _Record(BaseModel):
    """One JSONL line; keys other than ``id`` and ``text`` are ignored (users keep metadata)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    text: str

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # An empty passage embeds to noise and can only ever be a wrong search hit.
        if not value.strip():
            raise ValueError("text is empty")
        return value


def read_documents(path: Path, chunk_chars: int = 1000) -> Iterator[Passage]:
    """Yield the passages in a file or a directory of documents.

    A directory is walked recursively in sorted order; files that are not ``.jsonl``, ``.txt``,
    ``.md`` or ``.markdown`` are skipped. JSONL records become passages as they are (they are not
    chunked). Text and Markdown files are split into chunks of at most ``chunk_chars`` characters
    on blank lines, falling back to sentence and then word boundaries for a longer paragraph; a
    word is cut only when it alone is longer than ``chunk_chars``. A chunk's id is
    ``<file path relative to PATH>#<chunk number from 0>``, or ``<file name>#<n>`` when PATH is
    the file itself.

    Args:
        path: A document file or a directory of them.
        chunk_chars: Most characters in one text chunk.

    Yields:
        Passages without scores, in file order.

    Raises:
        UserError: PATH does not exist or is an unsupported file, a JSONL line is not a valid
            record, a file is not UTF-8, or two passages share an id.
    """
    if chunk_chars < 1:
        raise UserError(f"chunk size must be at least 1 character, got {chunk_chars}")
    if not path.exists():
        raise UserError(f"no such file or directory: {path}")
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        named = [(f, f.relative_to(path).as_posix()) for f in files]
    elif path.suffix.lower() in SUFFIXES:
        named = [(path, path.name)]
    else:
        raise UserError(f"{path}: unsupported file type; use {', '.join(SUFFIXES)}")

    seen: dict[str, str] = {}  # id -> where it was first read, to name both places on a clash
    for file, name in named:
        if file.suffix.lower() == ".jsonl":
            found = _read_jsonl(file)
        else:
            split = chunk_markdown if file.suffix.lower() in MARKDOWN_SUFFIXES else chunk_text
            found = (
                (Passage(id=f"{name}#{n}", text=chunk), f"{file} (chunk {n})")
                for n, chunk in enumerate(split(read_text(file), chunk_chars))
            )
        for passage, place in found:
            if passage.id in seen:
                # An upsert would silently keep only the later text; the user must choose.
                raise UserError(
                    f"duplicate passage id {passage.id!r}: {seen[passage.id]} and {place}"
                )
            seen[passage.id] = place
            yield passage


def chunk_markdown(text: str, chunk_chars: int) -> Iterator[str]:
    """Split a Markdown document at its headings, then each section as ``chunk_text`` does.

    A section is a heading with the text up to the next heading; sections are never packed
    together. Every chunk but the first starts with the document's title (its first heading,
    without the ``#`` marks) and a blank line, within ``chunk_chars`` where the title leaves
    room. A document without headings is chunked as plain text.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADING.match(line)]
    if not starts:
        yield from chunk_text(text, chunk_chars)
        return
    title = _HEADING.sub("", lines[starts[0]]).strip()
    bounds = [0, *starts[1:], len(lines)] if starts[0] else [*starts, len(lines)]
    sections, carried = [], ""
    for begin, end in zip(bounds, bounds[1:], strict=False):
        section = carried + "\n".join(lines[begin:end]).strip()
        if all(not line.strip() or _HEADING.match(line) for line in section.splitlines()):
            carried = section + "\n\n"  # a heading alone goes with the next section
            continue
        sections.append(section)
        carried = ""
    if carried:
        sections.append(carried.strip())
    prefix = f"{title}\n\n"
    room = chunk_chars - len(prefix)
    for n, section in enumerate(sections):
        # The first section holds the title already; a title too long to repeat is not.
        if n == 0 or room < chunk_chars // 2:
            yield from chunk_text(section, chunk_chars)
        else:
            yield from (prefix + chunk for chunk in chunk_text(section, room))


def chunk_text(text: str, chunk_chars: int) -> Iterator[str]:
    """Split ``text`` into chunks of at most ``chunk_chars`` characters.

    Whole paragraphs (separated by blank lines) are packed together, joined by a blank line; a
    paragraph longer than the limit is split into sentences, a sentence longer than the limit
    into words, and a word longer than the limit into pieces. Pieces of one paragraph are
    re-joined with single spaces, so line breaks inside a long paragraph become spaces.

    Args:
        text: The document.
        chunk_chars: Most characters in one chunk.

    Yields:
        Non-empty chunks, in order.
    """
    chunk = ""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        units = [paragraph] if len(paragraph) <= chunk_chars else _split_long(paragraph, chunk_chars)
        separator = "\n\n"  # between paragraphs; pieces of one paragraph are joined by spaces
        for unit in units:
            if chunk and len(chunk) + len(separator) + len(unit) <= chunk_chars:
                chunk += separator + unit
            else:
                if chunk:
                    yield chunk
                chunk = unit
            separator = " "
    if chunk:
        yield chunk


def _split_long(paragraph: str, limit: int) -> list[str]:
    """Sentences of an over-long paragraph, then words of an over-long sentence, each <= limit."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        for word in sentence.split():
            # Only a single word longer than the whole limit is ever cut.
            pieces.extend(word[i : i + limit] for i in range(0, len(word), limit))
    return pieces


def _read_jsonl(file: Path) -> Iterator[tuple[Passage, str]]:
    """(passage, "file:line") for each non-blank line of a JSONL file."""
    for number, record in read_jsonl(file, _Record, "passage"):
        yield Passage(id=record.id, text=record.text), f"{file}:{number}"
