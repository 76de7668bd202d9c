"""A knowledge world on disk: its card, facts, corpus, question splits and models.

Layout of a world directory::

    world.json                  the card: spec, seed, sizes, training and measured figures
    facts.jsonl                 every fact with its use (which class, or reading practice)
    corpus.jsonl                one passage per entity: what a search can find
    questions/{split}.jsonl     calibration, test and paraphrase questions with ground truth
    models/{fast,slow}/         transformers checkpoints (safetensors) with their tokenizer
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from knowgate import jsonl
from knowgate.errors import WorldError
from knowgate.worlds.schema import CorpusPassage, Fact, Question, WorldCard

if TYPE_CHECKING:  # heavy imports (chromadb, litellm, torch) stay out of import time
    from knowgate.agents.local_provider import LocalProvider
    from knowgate.settings import Settings
    from knowgate.tools.searcher import ChromaSearcher

SPLITS = ("calibration", "test", "paraphrase")
MODELS = ("fast", "slow")
_Record = TypeVar("_Record", bound=BaseModel)


def default_world_dir() -> Path:
    """The world shipped inside the package."""
    return Path(__file__).resolve().parent / "default"


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> int:
    """Write pydantic records one per line; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
            count += 1
    return count


def read_jsonl(path: Path, model: type[_Record]) -> list[_Record]:
    """Read and validate a JSONL file; a bad line raises ``WorldError`` naming file and line."""
    if not path.is_file():
        raise WorldError(f"missing world file: {path}")
    return [record for _, record in jsonl.read_jsonl(path, model, model.__name__, WorldError)]


class World:
    """A world directory, read lazily and validated on first use.

    Args:
        path: The world directory; ``None`` means the shipped default world.

    Raises:
        WorldError: The directory has no ``world.json`` or a file in it is invalid.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_world_dir()
        card_path = self.path / "world.json"
        if not card_path.is_file():
            raise WorldError(
                f"{self.path} is not a knowgate world (no world.json); "
                "build one with `knowgate world build --out DIR`"
            )
        try:
            self.card = WorldCard.model_validate_json(card_path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise WorldError(f"{card_path}: invalid world card: {exc}") from exc

    @property
    def name(self) -> str:
        """The world's name from its card."""
        return self.card.name

    @cached_property
    def facts(self) -> dict[str, Fact]:
        """Every fact by id."""
        return {f.id: f for f in read_jsonl(self.path / "facts.jsonl", Fact)}

    @cached_property
    def corpus(self) -> list[CorpusPassage]:
        """The corpus passages, in file order."""
        return read_jsonl(self.path / "corpus.jsonl", CorpusPassage)

    def questions(self, split: str) -> list[Question]:
        """The questions of one split (``calibration``, ``test`` or ``paraphrase``)."""
        if split not in SPLITS:
            raise WorldError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return read_jsonl(self.path / "questions" / f"{split}.jsonl", Question)

    def model_dir(self, name: str) -> Path:
        """Directory of the ``fast`` or ``slow`` model."""
        if name not in MODELS:
            raise WorldError(f"unknown world model {name!r}; choose one of {', '.join(MODELS)}")
        path = self.path / "models" / name
        if not (path / "config.json").is_file():
            raise WorldError(f"world model {name!r} is missing: no {path / 'config.json'}")
        return path

    @cached_property
    def corpus_digest(self) -> str:
        """Short hash of the corpus file: an index built from other text is never reused."""
        data = (self.path / "corpus.jsonl").read_bytes()
        return hashlib.sha256(data).hexdigest()[:12]

    def collection_name(self) -> str:
        """The chromadb collection this world's corpus is indexed in."""
        return f"world-{self.name}-{self.corpus_digest}"

    def gold_passage(self, question: Question) -> CorpusPassage | None:
        """The corpus passage that states the answer to ``question``, if the corpus has one."""
        passage_id = self.facts[question.fact_id].passage_id
        return self._passages_by_id.get(passage_id) if passage_id else None

    @cached_property
    def _passages_by_id(self) -> dict[str, CorpusPassage]:
        return {p.id: p for p in self.corpus}

    def searcher(self, data_dir: Path, device: str = "cpu", lexical_weight: float = 0.0,
                 candidates: int = 20,
                 on_progress: Callable[[int, int], None] | None = None,
                 client: Any = None) -> ChromaSearcher:
        """A ``ChromaSearcher`` over this world's corpus, indexing it on first use.

        Args:
            data_dir: Where the persistent chromadb lives (``settings.data_dir``).
            device: Device for the embedding model.
            lexical_weight: Word-overlap re-rank weight (see ``ChromaSearcher``).
            candidates: chromadb results the re-rank considers.
            on_progress: ``on_progress(done, total)`` while indexing (progress bars hook in).
            client: A chromadb client (a server's); by default the embedded one in ``data_dir``.
        """
        from knowgate.tools.passage import Passage
        from knowgate.tools.searcher import ChromaSearcher, chroma_client

        client = client if client is not None else chroma_client(data_dir / "chroma")
        searcher = ChromaSearcher(client, self.collection_name(),
                                  device=device, lexical_weight=lexical_weight,
                                  candidates=candidates)
        total = len(self.corpus)
        if searcher.count() != total:
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                if on_progress is not None:
                    on_progress(done, total)

            searcher.add((Passage(id=p.id, text=p.text) for p in self.corpus), on_batch=advance)
        return searcher

    def serve_models(self, settings: Settings) -> LocalProvider:
        """Serve this world's models to litellm as ``local/fast`` and ``local/slow``.

        Returns the registered ``LocalProvider``; device, batching and prices (dollars per
        million tokens, ``settings.local_prices``) come from ``settings``.
        """
        from knowgate.agents.local_provider import LocalProvider, register_local_provider

        provider = LocalProvider(
            {name: self.model_dir(name) for name in MODELS},
            device=settings.device,
            batch_size=settings.local_batch_size,
            batch_wait_ms=settings.local_batch_wait_ms,
        )
        per_token = {name: (p_in / 1e6, p_out / 1e6)
                     for name, (p_in, p_out) in settings.local_prices.items()}
        register_local_provider(provider, per_token)
        return provider

    def update_card(self, **sections: dict[str, Any]) -> None:
        """Merge sections (``check=...``, ``build=...``) into ``world.json`` and save it."""
        data = self.card.model_dump()
        for key, value in sections.items():
            data[key] = value
        self.card = WorldCard.model_validate(data)
        (self.path / "world.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
