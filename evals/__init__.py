"""Batch evaluation: datasets, the resumable runner and its response cache, grading, metrics,
baselines (the oracle and the explore graph), calibration, the HTML report and the Ray backend.

Entry points: ``knowgate eval run | summary | report`` and ``knowgate calibrate`` (``cli.py``),
or ``knowgate.evals.runner.run_eval`` and ``knowgate.evals.calibrate.calibrate`` from Python.
"""
