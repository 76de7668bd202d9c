"""knowgate.agents."""
