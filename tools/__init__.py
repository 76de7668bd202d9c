"""knowgate.tools."""
