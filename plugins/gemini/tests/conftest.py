"""Fixtures for overnight-gemini's tests: overnight's published ones (an isolated home, a plugin registry)."""

from overnight.plugin_testing import overnight_home, registry  # noqa: F401  (fixtures)
