"""What a plugin's ``connect`` returns: its checked settings and the SDK client (plugin kit).

``connect`` must be cheap and touch no network, and a run whose batch step is already
stored calls no other hook, so the SDK (often the slowest import of a run) is imported
and its client built only when a hook first asks for :attr:`Connection.sdk`, once, even
from several threads. The core never opens it: it hands it back as ``client``::

    @hookimpl
    def connect(provider, options):
        return Connection(resolve(options), build_client)   # resolve: the checks; no SDK yet

    @hookimpl
    def check(provider, job, client, timeout):
        return status_of(client.sdk.batches.retrieve(job.remote_id))

Its ``repr`` names the settings' class only: a connection printed by mistake shows no key.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

S = TypeVar("S")


class Connection(Generic[S]):
    """The settings a plugin resolved from one LLM's client options, and their SDK client."""

    __slots__ = ("settings", "_build", "_sdk", "_lock")

    def __init__(self, settings: S, build: Callable[[S], Any]) -> None:
        #: The checked settings (a frozen value; keep credentials in :func:`overnight.client_options.secret` fields).
        self.settings = settings
        self._build = build
        self._sdk: Any = None
        self._lock = threading.Lock()

    @property
    def sdk(self) -> Any:
        """The SDK client, built from :attr:`settings` on first use and kept for the run."""
        if self._sdk is None:
            with self._lock:
                if self._sdk is None:
                    self._sdk = self._build(self.settings)
        return self._sdk

    def __repr__(self) -> str:
        return f"Connection({type(self.settings).__name__})"
