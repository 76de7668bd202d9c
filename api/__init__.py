"""knowgate.api."""
