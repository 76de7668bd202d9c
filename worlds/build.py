"""Build a world end to end: generate, train the tokenizer and both models, save, index, check."""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knowgate.agents.prompting import training_text
from knowgate.errors import UserError
from knowgate.worlds.generator import GeneratedWorld, WorldSpec, generate_world
from knowgate.worlds.schema import LocalModelSpec, Use, WorldCard
from knowgate.worlds.templates import RELATIONS
from knowgate.worlds.tokenizer import train_tokenizer
from knowgate.worlds.trainer import (
    FAST_RECIPE,
    SLOW_RECIPE,
    ModelRecipe,
    ReadingSampler,
    TrainReport,
    train_model,
)
from knowgate.worlds.world import World, write_jsonl

# Progress callback: (task, done, total, figures). Tasks: "fast", "slow" (epochs).
Progress = Callable[[str, int, int, dict[str, float]], None]

# A generated world serves its two trained models in the format they were trained on. Prices: a
# critic call costs 50x a fast call (same tokens), as a small hosted model against a large one.
TRAINED_MODELS = {
    "fast": LocalModelSpec(dir="models/fast", prompt="plain", prices=(0.15, 0.60)),
    "slow": LocalModelSpec(dir="models/slow", prompt="plain", prices=(7.5, 30.0)),
}


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What to build: the world spec and each model's recipe. ``create`` makes the usual ones."""

    spec: WorldSpec
    fast: ModelRecipe
    slow: ModelRecipe
    name: str
    vocab_size: int = 1200

    @classmethod
    def create(cls, seed: int = 7, facts: int | None = None,
               max_epochs: int | None = None) -> BuildPlan:
        """The plan ``knowgate world build`` runs; the defaults build the shipped world.

        Args:
            seed: Seeds the generator, the fast model (``seed``) and the slow model (``seed + 1``).
            facts: About this many evaluated facts; ``None`` is the shipped size.
            max_epochs: Cap on training epochs (quick worlds for tests).
        """
        spec = WorldSpec.for_facts(facts, seed=seed) if facts else WorldSpec(seed=seed)
        plan = cls(
            spec=spec,
            fast=dataclasses.replace(FAST_RECIPE, seed=seed),
            slow=dataclasses.replace(SLOW_RECIPE, seed=seed + 1),
            name="synthetic" if facts is None else f"world{facts}",
        )
        return plan if max_epochs is None else plan.with_max_epochs(max_epochs)

    def with_max_epochs(self, epochs: int) -> BuildPlan:
        """The same plan with both models capped at ``epochs`` (for quick test worlds)."""
        return dataclasses.replace(
            self,
            fast=dataclasses.replace(self.fast, max_epochs=epochs,
                                     check_every=min(self.fast.check_every, epochs)),
            slow=dataclasses.replace(self.slow, max_epochs=epochs,
                                     check_every=min(self.slow.check_every, epochs)),
        )


def _tokenizer_texts(world: GeneratedWorld) -> list[str]:
    texts = [p.text for p in world.corpus]
    for fact in world.facts:
        relation = RELATIONS[fact.relation]
        for template in (*relation.train, *relation.paraphrase):
            texts.append("".join(training_text(template.format(s=fact.subject), fact.value)))
    return texts


def _save_model(model: Any, tokenizer: Any, out: Path) -> None:
    """Save fp16 safetensors: half the bytes, and what ships is what the check measures."""
    import torch

    model.to(torch.float16)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    model.to(torch.float32)


def build_world(out: Path, plan: BuildPlan | None = None, progress: Progress | None = None,
                overwrite: bool = False) -> World:
    """Generate a world, train its models and write it to ``out`` (``plan``: ``BuildPlan.create()``).

    The world is written to ``<out>.partial`` and moved to ``out`` only once complete.

    Raises:
        UserError: ``out`` exists and is not empty, and ``overwrite`` is false.
    """
    import torch

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out needs a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace it")
    plan = plan or BuildPlan.create()
    started = time.perf_counter()
    generated = generate_world(plan.spec)
    tokenizer = train_tokenizer(_tokenizer_texts(generated), vocab_size=plan.vocab_size)

    reading = ReadingSampler(generated.practice, generated.pools)
    known = {
        "fast": generated.facts_for(Use.FAST_KNOWN),
        "slow": generated.facts_for(Use.FAST_KNOWN, Use.SLOW_KNOWN),
    }
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    reports: dict[str, TrainReport] = {}
    for recipe in (plan.fast, plan.slow):
        def on_epoch(epoch: int, figures: dict[str, float], name: str = recipe.name,
                     total: int = recipe.max_epochs) -> None:
            if progress is not None:
                progress(name, epoch, total, figures)

        model, report = train_model(recipe, tokenizer, known[recipe.name], reading, on_epoch)
        _save_model(model, tokenizer, staging / "models" / recipe.name)
        reports[recipe.name] = report

    write_jsonl(staging / "facts.jsonl", generated.facts)
    write_jsonl(staging / "corpus.jsonl", generated.corpus)
    for split, questions in generated.questions.items():
        write_jsonl(staging / "questions" / f"{split}.jsonl", questions)
    card = WorldCard(
        name=plan.name,
        seed=plan.spec.seed,
        spec=dataclasses.asdict(plan.spec),
        counts=generated.stats,
        models={
            name: {
                **dataclasses.asdict(report),
                "bytes_on_disk": sum(
                    f.stat().st_size for f in (staging / "models" / name).iterdir()
                ),
            }
            for name, report in reports.items()
        },
        local_models=TRAINED_MODELS,
        build={
            "seconds": round(time.perf_counter() - started, 1),
            "vocab_size": len(tokenizer),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        },
    )
    (staging / "world.json").write_text(json.dumps(card.model_dump(), indent=2) + "\n",
                                        encoding="utf-8")
    # Only a finished world appears at ``out``: an interrupted build leaves a ``.partial`` dir
    # and, with --overwrite, the previous world stays in place until this point.
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return World(out)
