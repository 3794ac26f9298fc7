"""Fixtures for overnight-mistral's tests: overnight's published ones (an isolated home, a plugin registry)."""

from overnight.plugin_testing import overnight_home, registry  # noqa: F401  (fixtures)
