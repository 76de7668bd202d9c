"""A knowledge world on disk: its card, facts, corpus, question splits and models.

Layout of a world directory::

    world.json                  the card: spec, seed, sizes, training and measured figures
    facts.jsonl                 every fact with its use (which class, or reading practice)
    corpus.jsonl                one passage per entity: what a search can find
    questions/{split}.jsonl     calibration, test (and paraphrase) questions with ground truth
    models/{fast,slow}/         a trained world's transformers checkpoints with their tokenizer
    policy.json                 the world's fitted policy, when it has one

The card's ``local_models`` say how each model is served: a directory of the world, or a GGUF
file shipped in packages and converted once into the model cache (``Settings.model_cache``).
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
from knowgate.plugins import WORLD_GROUP, PluginFailure, load_entry_points
from knowgate.worlds.schema import CorpusPassage, Fact, LocalModelSpec, Question, WorldCard

if TYPE_CHECKING:  # heavy imports (chromadb, litellm, torch) stay out of import time
    from knowgate.agents.local_provider import LocalProvider
    from knowgate.agents.model_files import Progress
    from knowgate.settings import Settings
    from knowgate.tools.searcher import ChromaSearcher

SPLITS = ("calibration", "test", "paraphrase")
MODELS = ("fast", "slow")
DEFAULT_WORLD = "factbook"
"""The world knowgate runs when the settings name none: real models reading real text."""
_Record = TypeVar("_Record", bound=BaseModel)


def shipped_world_dir(name: str) -> Path:
    """The directory of a world shipped inside the package."""
    return Path(__file__).resolve().parent / name


def default_world_dir() -> Path:
    """The directory of the default world (``DEFAULT_WORLD``)."""
    return shipped_world_dir(DEFAULT_WORLD)


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
        path: The world directory, or the name of a shipped world (``knowgate world list``);
            ``None`` means the default world.

    Raises:
        WorldError: The directory has no ``world.json`` or a file in it is invalid.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = resolve_world_dir(path)
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

    @property
    def splits(self) -> list[str]:
        """The question splits this world has (``calibration``, ``test`` ...)."""
        return [s for s in SPLITS if (self.path / "questions" / f"{s}.jsonl").is_file()]

    def questions(self, split: str) -> list[Question]:
        """The questions of one split (``calibration``, ``test`` or ``paraphrase``)."""
        if split not in SPLITS:
            raise WorldError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return read_jsonl(self.path / "questions" / f"{split}.jsonl", Question)

    def local_model(self, name: str) -> LocalModelSpec:
        """How the ``fast`` or ``slow`` model is served (its source, prompt style, prices)."""
        if name not in MODELS:
            raise WorldError(f"unknown world model {name!r}; choose one of {', '.join(MODELS)}")
        spec = self.card.local_models.get(name)
        if spec is None:
            raise WorldError(f"the {self.name} world declares no {name!r} model")
        return spec

    def model_dir(self, name: str, cache_dir: Path | None = None,
                  on_progress: Progress | None = None) -> Path:
        """Directory of the ``fast`` or ``slow`` model, converting a packaged GGUF model into
        ``cache_dir`` on first use (``on_progress(stage, done, total)`` meanwhile).

        Raises:
            WorldError: The model is missing.
            UserError: Its packages are not installed.
        """
        spec = self.local_model(name)
        if spec.gguf is not None:
            from knowgate.agents.model_files import converted_model

            named = None if on_progress is None else (
                lambda stage, done, total: on_progress(f"{stage} {spec.gguf.name}", done, total))
            return converted_model(spec.gguf, cache_dir or default_model_cache(), named)
        path = self.path / str(spec.dir)
        if not (path / "config.json").is_file():
            raise WorldError(f"world model {name!r} is missing: no {path / 'config.json'}")
        return path

    @property
    def policy_path(self) -> Path | None:
        """The world's own fitted policy file, if it ships one."""
        return self.path / self.card.policy if self.card.policy else None

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
        from knowgate.roles import Passage
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

    def prices(self, settings: Settings) -> dict[str, tuple[float, float]]:
        """Dollars per million (input, output) tokens of each local model: the card's, where
        ``settings.local_prices`` does not override them."""
        own = {name: spec.prices for name, spec in self.card.local_models.items()}
        return {**own, **settings.local_prices}

    def serve_models(self, settings: Settings,
                     on_progress: Progress | None = None) -> LocalProvider:
        """Serve this world's models to litellm as ``local/fast`` and ``local/slow``.

        Returns the registered ``LocalProvider``; device, batching, the model cache and price
        overrides come from ``settings``. Models load on first use.
        """
        from knowgate.agents.local_provider import LocalProvider, register_local_provider

        names = [name for name in MODELS if name in self.card.local_models]
        provider = LocalProvider(
            {name: self.model_dir(name, settings.model_cache, on_progress) for name in names},
            device=settings.device,
            batch_size=settings.local_batch_size,
            batch_wait_ms=settings.local_batch_wait_ms,
            prefill_cache_mb=settings.local_prefill_cache_mb,
            prompt_styles={name: self.local_model(name).prompt for name in names},
        )
        per_token = {name: (p_in / 1e6, p_out / 1e6)
                     for name, (p_in, p_out) in self.prices(settings).items()}
        register_local_provider(provider, per_token)
        return provider

    def update_card(self, **sections: dict[str, Any]) -> None:
        """Merge sections (``check=...``, ``build=...``) into ``world.json`` and save it."""
        data = self.card.model_dump()
        for key, value in sections.items():
            data[key] = value
        self.card = WorldCard.model_validate(data)
        (self.path / "world.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def shipped_worlds() -> list[str]:
    """Names of the worlds shipped inside the package."""
    root = Path(__file__).resolve().parent
    return sorted(p.name for p in root.iterdir() if (p / "world.json").is_file())


# Worlds of installed packages (``knowgate.worlds`` entry points), loaded once per process.
_PLUGIN_WORLDS: tuple[dict[str, Path], list[PluginFailure]] | None = None


def _plugin_world_dir(name: str, value: Any) -> Path:
    if name in shipped_worlds():
        raise ValueError(f"{name!r} is the name of a shipped world")
    path = Path(value() if callable(value) else value)
    if not (path / "world.json").is_file():
        raise WorldError(f"{path} has no world.json")
    return path


def plugin_worlds() -> tuple[dict[str, Path], list[PluginFailure]]:
    """``(name -> directory, failures)`` of the worlds installed packages declare."""
    global _PLUGIN_WORLDS
    if _PLUGIN_WORLDS is None:
        _PLUGIN_WORLDS = load_entry_points(WORLD_GROUP, _plugin_world_dir)
    return _PLUGIN_WORLDS


def world_names() -> list[str]:
    """Every world a name can select: the shipped ones, then the plugins', sorted."""
    return shipped_worlds() + sorted(plugin_worlds()[0])


def resolve_world_dir(spec: Path | str | None) -> Path:
    """The directory a world setting names: a shipped world's name, or a directory.

    Raises:
        WorldError: Neither a shipped world nor an existing directory.
    """
    if spec is None:
        return default_world_dir()
    text = str(spec)
    if text in shipped_worlds():
        return shipped_world_dir(text)
    installed, failures = plugin_worlds()
    if text in installed:
        return installed[text]
    for failure in failures:
        if failure.name == text:
            raise WorldError(failure.message())
    path = Path(spec)
    if path.is_dir():
        return path
    raise WorldError(f"{text} is not a knowgate world (no such directory), nor the name of a "
                     f"shipped or installed world ({', '.join(world_names())})")


def default_model_cache() -> Path:
    """Where converted models live when the settings name no ``model_cache``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("knowgate")) / "models"
