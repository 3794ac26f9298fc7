"""Reading how long a provider asks a client to wait, from the headers of a 429 or 5xx.

Shared by the plugins' ``generate`` hooks and the kit's ``create_once``: each SDK exposes the response headers, the
spelling differs little (``retry-after-ms`` is OpenAI's and Anthropic's SDKs' own
extension; ``Retry-After`` is RFC 9110: seconds or an HTTP date).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Mapping

#: A wait longer than this is not believed (a misconfigured proxy); the core's backoff applies.
MAX_WAIT = 3600.0


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after``; None when absent or unreadable."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    millis = _number(lowered.get("retry-after-ms"))
    if millis is not None:
        return min(millis / 1000.0, MAX_WAIT)
    raw = lowered.get("retry-after")
    seconds = _number(raw)
    if seconds is None and isinstance(raw, str) and raw.strip():
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = max(0.0, when.timestamp() - time.time())
    return None if seconds is None else min(seconds, MAX_WAIT)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number else None  # NaN is not a wait
