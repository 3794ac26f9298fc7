"""A 404 taken for a lost job only when the same API answers another call (plugin kit).

When the provider answers 404 for a job or its results, the core ends the job and asks
the user before paying for its requests again (:class:`~overnight.ResultsGone`). A wrong
base URL or a proxy answers 404 for everything, so a plugin first asks the same API
something cheap (a listing of one job): only if that answers is the 404 about the object.
"""

from __future__ import annotations

from typing import Any, Callable

from overnight.errors import ResultsGone


def confirm_gone(exc: BaseException, probe: Callable[[], Any], what: str) -> BaseException:
    """The exception to raise for the 404 ``exc``: ``ResultsGone(what)`` when ``probe()`` (another
    call to the same API) answers, else ``exc`` itself (nothing is taken for lost).

    Raise it ``from None``: the SDK's error may carry a URL or headers.
    """
    try:
        probe()
    except Exception:
        return exc
    return ResultsGone(what)
