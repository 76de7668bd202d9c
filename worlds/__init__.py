"""knowgate.worlds."""
