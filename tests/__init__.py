"""knowgate.tests."""
