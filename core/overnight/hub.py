"""Loading from the Hugging Face Hub without a raw traceback or a long wait when offline.

``datasets.load_dataset`` retries an unreachable Hub for tens of seconds, then fails
with a traceback that names neither what was being loaded nor the way out. Before
loading, one TCP connection to the Hub (``HF_ENDPOINT``) is tried with a short timeout;
if it fails, the run stops with a :class:`~overnight.ConfigurationError` naming the
dataset and ``HF_HUB_OFFLINE``. With ``HF_HUB_OFFLINE=1`` the check is skipped and
``datasets`` reads its local cache.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator
from urllib.parse import urlsplit

from overnight.errors import ConfigurationError, OvernightError

__all__ = ["CONNECT_TIMEOUT", "hub_errors", "hub_reachable"]

#: Seconds to wait for the Hub to accept a connection before calling it unreachable.
CONNECT_TIMEOUT = 5.0


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or \
        os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(endpoint: str | None = None, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """``None`` if the Hub accepts a TCP connection, else why not (one line)."""
    url = urlsplit(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"


def _advice(step: str | None, repo_id: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"step {step!r}: the Hugging Face dataset {repo_id!r} cannot be loaded: {why}. "
        "Connect to the network and run again, or, if the dataset is in your local Hugging Face "
        "cache, set HF_HUB_OFFLINE=1 to load it from there."
    )


@contextlib.contextmanager
def hub_errors(step: str | None, repo_id: str) -> Iterator[None]:
    """Check the Hub can be reached (unless offline mode is on), and explain a failed load."""
    if not _offline():
        why = hub_reachable()
        if why is not None:
            raise _advice(step, repo_id, why)
    try:
        yield
    except OvernightError:
        raise
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise _advice(step, repo_id, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # datasets' own errors: DatasetNotFoundError, ValueError for a bad split, ...
        if type(exc).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError", "HfHubHTTPError"):
            raise ConfigurationError(
                f"step {step!r}: the Hugging Face dataset {repo_id!r} cannot be loaded: {exc}"
            ) from exc
        raise
