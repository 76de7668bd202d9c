"""knowgate."""
