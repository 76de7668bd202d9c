"""Trained probes the prober runs on its own passes, saved as small JSON files.

* ``LinearProbe``: a logistic regression on standardised features of one layer and pooling
  (``knowgate.agents.hidden_states.Pass.pooled``): the hidden state itself, or its logit-lens
  decoding (top log-probability, entropy, margin: a nonlinear read of the same state). Its signal is the logit of P(the answerer is
  right), so the policy's logistic maps can use it as it is.
* ``Combiner``: a logistic regression over named signals (token signals, logit lens, probe
  logits) computed earlier in the same pass, each read on its own scale (``rescale``): the
  combined, calibrated signal.

``ProbeSet.load(directory)`` reads what ``knowgate probe train`` wrote (``probes.json`` lists the
files); the default prober loads the set shipped beside the world's fast model. A set whose
manifest says ``reads: evidence`` was trained on a model's readings of the evidence (the prompt
with passages, and the answer the model gave from it): ``knowgate.agents.prober.EvidenceReader``
runs it on the critic's answers after a search.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from knowgate.agents.hidden_states import LensRead, Pass, Stage
from knowgate.errors import UserError
from knowgate.signal_scales import Scale, rescale
from knowgate.signals import SIGNALS, TRAINED_PROBE, SignalSpec

MANIFEST = "probes.json"
# hidden: the pooled hidden state itself; lens: its logit-lens decoding (``lens_features``).
Family = Literal["hidden", "lens"]
# question: the probes read the closed-book prompt (and a draft); evidence: the prompt with the
# passages a model read, and the answer it gave from them.
Reads = Literal["question", "evidence"]
_CLAMP = 30.0


class _Standardised(BaseModel):
    """A logistic regression on standardised inputs: ``coef . (x - mean) / scale + intercept``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    validation_auroc: float | None = None
    train_examples: int = 0


class LinearProbeSpec(_Standardised):
    """A saved linear probe: where it reads, its standardisation and weights, how it scored."""

    name: str
    stage: Stage
    layer: int = Field(ge=0)
    pooling: str
    features: Family = "hidden"
    model: str


class CombinerSpec(_Standardised):
    """A saved combiner: a logistic regression over named signals, each rescaled (``scales``,
    one per feature; empty: all ``raw``) and standardised."""

    name: str
    stage: Stage
    features: list[str]
    scales: list[Scale] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_scale_per_feature(self) -> CombinerSpec:
        if self.scales and len(self.scales) != len(self.features):
            raise ValueError(f"{len(self.scales)} scales for {len(self.features)} features")
        return self

    def feature_scales(self) -> list[Scale]:
        """One scale per feature (a spec saved before scales existed reads every one raw)."""
        return self.scales or ["raw"] * len(self.features)


class Manifest(BaseModel):
    """``probes.json``: the model the probes read and the files that hold them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    probes: list[str]
    combiners: list[str] = Field(default_factory=list)
    reads: Reads = "question"
    report: dict[str, Any] = Field(default_factory=dict)


class LinearProbe:
    """A ``HiddenStateProbe``: the logit of P(correct) from one layer's pooled hidden state."""

    def __init__(self, spec: LinearProbeSpec) -> None:
        import torch

        if not (len(spec.mean) == len(spec.scale) == len(spec.coef)):
            raise UserError(f"probe {spec.name}: mean, scale and coef differ in length")
        self.spec = spec
        self.name = spec.name
        self.stage: Stage = spec.stage
        self.layer = spec.layer  # the hidden state it reads (``HiddenStateProbe``)
        # A lens probe's read: the prober asks ``run_passes`` for its features, computed with the
        # pass's own signals (``Pass.lens_cache``), instead of decoding it again here.
        self.lens_read: LensRead | None = (spec.stage, spec.layer, spec.pooling) \
            if spec.features == "lens" else None
        # Fold the standardisation into the weights once: w' = coef / scale.
        coef = torch.tensor(spec.coef, dtype=torch.float32)
        self._weight = coef / torch.tensor(spec.scale, dtype=torch.float32)
        self._weights = self._weight.tolist()  # for features already Python floats
        self._bias = spec.intercept - float((self._weight * torch.tensor(spec.mean)).sum())

    def __call__(self, forward: Pass) -> float:
        """The probe's logit for this pass.

        Raises:
            UserError: The pass does not fit the probe (another hidden size, no answer).
        """
        import torch

        cached = forward.lens_cache.get(self.lens_read) if self.lens_read else None
        if cached is not None:  # a few Python floats: a Python dot product beats torch ops
            self._check_width(len(cached))
            return _clamp(sum(w * x for w, x in zip(self._weights, cached, strict=True))
                          + self._bias)
        with torch.inference_mode():  # the lens runs the model's head: no autograd wanted
            vector = forward.pooled(self.stage, self.spec.layer, self.spec.pooling)
            if self.spec.features == "lens":
                vector = forward.lens(self.spec.layer, vector)
            self._check_width(vector.shape[-1])
            weight = self._weight.to(vector.device)
            return _clamp(float((vector.float() * weight).sum()) + self._bias)

    def _check_width(self, features: int) -> None:
        """Raises ``UserError`` when the pass gives another number of features than trained on."""
        if features != self._weight.shape[0]:
            raise UserError(f"probe {self.name} expects {self._weight.shape[0]} features, "
                            f"the pass gives {features}")


@dataclass(frozen=True)
class Combiner:
    """The combined signal: a calibrated logistic map over signals of the same pass."""

    spec: CombinerSpec

    @property
    def name(self) -> str:
        """The signal it writes."""
        return self.spec.name

    @property
    def stage(self) -> Stage:
        """``query``: before any answer; ``answer``: with a draft."""
        return self.spec.stage

    def __call__(self, values: dict[str, float]) -> float | None:
        """The logit of P(correct), or ``None`` when a feature is missing."""
        if any(f not in values for f in self.spec.features):
            return None
        z = self.spec.intercept + sum(
            c * (float(rescale(values[f], r)) - m) / s for f, r, m, s, c in
            zip(self.spec.features, self.spec.feature_scales(), self.spec.mean, self.spec.scale, self.spec.coef,
                strict=True))
        return _clamp(z)


@dataclass(frozen=True)
class ProbeSet:
    """The probes and combiners one prober runs, read from a directory."""

    probes: list[LinearProbe] = field(default_factory=list)
    combiners: list[Combiner] = field(default_factory=list)
    model: str = ""
    reads: Reads = "question"

    @classmethod
    def load(cls, directory: Path | str) -> ProbeSet:
        """Read ``probes.json`` and the files it lists.

        Raises:
            UserError: The directory, the manifest or a probe file is missing or invalid.
        """
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"no {MANIFEST} in {directory}: train probes with "
                            f"`knowgate probe train`")
        manifest = read_spec(manifest_path, Manifest)
        probes = [LinearProbe(read_spec(directory / n, LinearProbeSpec)) for n in manifest.probes]
        combiners = [Combiner(read_spec(directory / n, CombinerSpec)) for n in manifest.combiners]
        if manifest.reads == "evidence" and any(p.stage != "answer" for p in probes):
            raise UserError(f"{manifest_path}: a probe of the reading of evidence reads the "
                            f"answer given from it (stage 'answer')")
        loaded = cls(probes=probes, combiners=combiners, model=manifest.model,
                     reads=manifest.reads)
        for spec in loaded.declarations():
            try:
                SIGNALS.declare(spec)
            except ValueError as exc:
                raise UserError(f"{directory}: {exc}") from exc
        return loaded

    def declarations(self) -> list[SignalSpec]:
        """The signals these probes and combiners write (``knowgate.signals``)."""
        def stage(name: Stage) -> Any:
            return "question" if name == "query" else "draft"

        def what(name: Stage) -> str:
            return "before any answer" if name == "query" else "of the draft"

        def maps(name: Stage) -> tuple[str, ...]:
            # A probe predicts the closed-book draft's correctness: calibrate tries it in that
            # map, and the question's probe also in the map deciding to search before drafting.
            return ("query", "closed_book") if name == "query" else ("closed_book",)

        if self.reads == "evidence":
            # What the critic answered from the passages: calibrate tries it in the critic map.
            return [SignalSpec(name=s.name, stage="verdict", producer=TRAINED_PROBE,
                               meaning=f"logit of P(the answer read from the evidence is right) "
                                       f"from a {kind} on the hidden states of the reading "
                                       f"model over the passages and its answer",
                               maps=("critic",))
                    for kind, s in (*(("linear probe", p) for p in self.probes),
                                    *(("trained combiner", c) for c in self.combiners))]
        return [
            *(SignalSpec(name=p.name, stage=stage(p.stage), producer=TRAINED_PROBE,
                         meaning=f"logit of P(correct) from a linear probe on the prober's "
                                 f"hidden states, {what(p.stage)}", maps=maps(p.stage))
              for p in self.probes),
            *(SignalSpec(name=c.name, stage=stage(c.stage), producer=TRAINED_PROBE,
                         meaning=f"logit of P(correct) combining the prober's signals "
                                 f"{what(c.stage)} (a trained combiner)", maps=maps(c.stage))
              for c in self.combiners),
        ]


def save_json(path: Path, spec: BaseModel) -> None:
    """Write one spec (or the manifest) as indented JSON, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(spec.model_dump_json(indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_spec(path: Path, model: type[Any]) -> Any:
    """Read one spec file (or the manifest) as ``model``.

    Raises:
        UserError: The file is missing or invalid.
    """
    if not path.is_file():
        raise UserError(f"probe file not found: {path}")
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: invalid probe file: {exc}") from exc


def _clamp(z: float) -> float:
    if math.isnan(z):
        return 0.0
    return max(-_CLAMP, min(_CLAMP, z))
