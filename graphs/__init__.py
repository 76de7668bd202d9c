"""knowgate.graphs."""
