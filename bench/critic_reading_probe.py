"""Can the critic's own hidden states tell a right reading of the evidence from a wrong one?

The factbook critic (Gemma-3-270M) reads the top passage and answers; the policy judges that
answer from its token confidence and the answer-text features (``critic_*`` in the critic map)
at a cross-validated AUROC of about 0.86, and that judgement is what limits triage's utility
(README, "What is not met yet"). This bench measures, on the critic readings of an explore run
(the candidates made after one search), a linear probe on the critic model's hidden states over
the prompt it read plus its answer (mean over the answer's tokens, or its last token), layer by
layer, 5-fold cross-validated by country, beside:

* the policy's own features of the same candidates (the critic map's inputs), and both together;
* the **relation-only baseline**: the right-rate of the question's relation on the other folds
  (``knowgate.agents.probe_report.relation_rates``, as the probe report's);
* the **untrained control**: the same probe on an untrained copy of the model (same
  architecture, random weights), which reads the words of the prompt and answer and nothing the
  model knows.

Nothing here ships: it measures whether a reading probe is worth building into the prober.
Prints one JSON object.

Run: ``python bench/critic_reading_probe.py RUNS/explore-calibration``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from knowgate.agents.local_lm import LocalLM  # noqa: E402
from knowgate.agents.probe_report import relation_rates  # noqa: E402
from knowgate.agents.probe_training import auroc, untrained_copy  # noqa: E402
from knowgate.agents.prompting import answer_messages  # noqa: E402
from knowgate.evals.probe_labels import readings_from_run  # noqa: E402
from knowgate.evals.records import read_records  # noqa: E402
from knowgate.settings import load_settings  # noqa: E402
from knowgate.worlds.world import World  # noqa: E402

# The critic map's inputs (worlds/factbook/policy.json) and the search's scores.
POLICY_FEATURES = ("critic_logit", "evidence_match", "critic_evidence_match", "critic_agreement",
                   "critic_clause_overlap", "critic_echo", "search_top_score", "search_support")


def readings(run: Path) -> list[dict]:
    """The critic's answer after a search per question (``readings_from_run``: its text,
    whether it is right, the passages it read), with the policy's features of that answer."""
    features = {}
    for record in read_records(run):
        found = [c for c in record.candidates if c.source == "critic" and c.searched and c.answer]
        if found:
            features[record.id] = min(found, key=lambda c: len(c.path)).features
    return [{"question": r.question, "answer": r.answer, "right": int(r.correct),
             "passages": r.passages, "group": r.group, "relation": r.relation or "?",
             "features": [features[r.id].get(f, 0.0) for f in POLICY_FEATURES]}
            for r in readings_from_run(run)]


def hidden_states(lm: LocalLM, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per reading and layer: the mean hidden state over the answer's tokens, and the last
    token's (arrays of shape readings x layers x width)."""
    means, lasts = [], []
    for row in rows:
        prompt = lm.render(answer_messages(row["question"], row["passages"], lm.prompt_style))
        prompt_ids = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = lm.tokenizer(prompt + " " + row["answer"], add_special_tokens=False)["input_ids"]
        answer = max(1, len(ids) - len(prompt_ids))
        with torch.no_grad():
            out = lm.model(torch.tensor([ids], device=lm.device), output_hidden_states=True)
        states = torch.stack(out.hidden_states)[:, 0].float()
        means.append(states[:, -answer:].mean(dim=1).cpu().numpy())
        lasts.append(states[:, -1].cpu().numpy())
    return np.stack(means), np.stack(lasts)


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float) -> np.ndarray:
    """Cross-validated P(right), folds split by country."""
    p = np.zeros(len(y))
    for train, test in GroupKFold(5).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        p[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return p


def layer_table(states: np.ndarray, features: np.ndarray, y: np.ndarray, groups: np.ndarray
                ) -> dict[int, dict[str, float | None]]:
    """AUROC of the probe at each layer, alone and with the policy's features."""
    table = {}
    for layer in range(states.shape[1]):
        p = out_of_fold(states[:, layer], y, groups, c=0.05)
        logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
        both = out_of_fold(np.c_[features, logit], y, groups, c=1.0)
        table[layer] = {"probe": auroc(y, p), "with_features": auroc(y, both)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an explore run of the factbook world")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(world="factbook")
    world = World("factbook")
    rows = readings(args.run)
    y = np.array([r["right"] for r in rows])
    groups = np.array([r["group"] for r in rows])
    features = np.array([r["features"] for r in rows])
    relations = np.array([r["relation"] for r in rows])
    spec = world.local_model("slow")
    lm = LocalLM(world.model_dir("slow", cache_dir=settings.model_cache), "cpu", spec.prompt, 0)
    out: dict = {"readings": len(rows), "right": int(y.sum()),
                 "policy_features": auroc(y, out_of_fold(features, y, groups, c=1.0)),
                 "relation_only": auroc(y, relation_rates(relations, y, groups))}
    control = untrained_copy(lm)  # the same prompt, read by random weights
    for name, model in (("trained", lm), ("untrained_control", control)):
        means, lasts = hidden_states(model, rows)
        out[name] = {"answer_mean": layer_table(means, features, y, groups),
                     "answer_last": layer_table(lasts, features, y, groups)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
