"""knowgate.evals."""
