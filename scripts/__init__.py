"""Developer and CI scripts; importable so tests can reuse the local services."""
