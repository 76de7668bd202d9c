"""The prober's cost as a ratio to one bare forward pass of the same input.

For test questions of the synthetic world (with the fast model's closed-book answer as the draft,
the way the graph probes a draft), it times, one input at a time after a warm-up:

* bare: tokenise the rendered input and run ``model(input_ids)``, nothing else;
* prober: ``TransformersProber.signals`` with the default set-up (hidden states, token signals,
  logit lens, the shipped probes and combiners).

Both run in the same process on the same inputs, interleaved, and the ratio of medians is
printed for the question alone (before any answer) and for the question with its draft.
The bare pass keeps the model's defaults (a KV cache, logits at every position); the prober's own
pass builds no cache and runs the head only from the last prompt position on (at least 4
positions), since it reads nothing else. So a second ratio is printed against a bare pass with
those same options ("lean"): that one is what reading the hidden states alone adds.
Run: ``python bench/probe_overhead.py [--n N] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from knowgate.agents.hidden_states import encode
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.prober import TransformersProber
from knowgate.agents.probes import ProbeSet
from knowgate.worlds.world import World


def bare(lm: LocalLM, question: str, answer: str | None) -> None:
    import torch

    prompt, tail = encode(lm, question, answer)
    with lm.lock, torch.inference_mode():
        lm.model(input_ids=torch.tensor([prompt + tail], device=lm.device))
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_lean(lm: LocalLM, question: str, answer: str | None) -> None:
    """The bare pass with the prober's forward options: no KV cache, logits from the last
    prompt position on (at least 4)."""
    import torch

    prompt, tail = encode(lm, question, answer)
    with lm.lock, torch.inference_mode():
        lm.model(input_ids=torch.tensor([prompt + tail], device=lm.device), use_cache=False,
                 logits_to_keep=min(len(prompt) + len(tail), max(4, len(tail) + 1)))
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="inputs timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 steadies timings on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    world = World("synthetic")
    # Every pass whole: this measures one pass's cost (bench/performance.py measures sharing).
    lm = LocalLM(world.model_dir("fast"), args.device, prefill_cache_mb=0)
    probes = ProbeSet.load(world.path / "probes")
    prober = TransformersProber.with_probes(lm, probes)
    questions = world.questions("test")[:args.n]
    drafts = [g.text for g in lm.generate(
        [lm.render([{"role": "user", "content": q.question}]) for q in questions],
        max_new_tokens=8)]
    for q, d in list(zip(questions, drafts, strict=True))[:30]:  # warm-up
        bare(lm, q.question, d)
        prober.signals(q.question, d)
    print(f"{len(questions)} inputs, device {lm.device}, {len(probes.probes)} probes, "
          f"{len(probes.combiners)} combiners")
    for label, with_draft in (("question alone", False), ("question + draft", True)):
        times: dict[str, list[float]] = {"bare": [], "lean": [], "prober": []}
        for q, d in zip(questions, drafts, strict=True):
            answer = d if with_draft else None
            for name, run in (("bare", lambda q=q, a=answer: bare(lm, q.question, a)),
                              ("lean", lambda q=q, a=answer: bare_lean(lm, q.question, a)),
                              ("prober", lambda q=q, a=answer: prober.signals(q.question, a))):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        b, lean, p = (statistics.median(times[k]) for k in ("bare", "lean", "prober"))
        print(f"{label:17s} bare forward {b * 1000:.3f} ms   lean forward {lean * 1000:.3f} ms   "
              f"prober {p * 1000:.3f} ms   ratio {p / b:.3f}x vs bare, {p / lean:.3f}x vs lean "
              f"(median; mean ratio vs bare "
              f"{statistics.mean(times['prober']) / statistics.mean(times['bare']):.3f}x)")


if __name__ == "__main__":
    main()
