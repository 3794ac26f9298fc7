"""The typed facade through which the core calls a provider plugin.

One :class:`Provider` is bound to one provider name and the one plugin that declared
it. It checks what plugins return, and keeps secrets out of the errors they raise.

It also holds the plugin's client: :meth:`Provider.connect` calls the plugin's
``connect`` hook once and every later hook call that reaches the provider gets what it
returned as ``client``. The client lives in this object's memory only (one facade per
LLM run, or per CLI command): never in the store, a log, a repr or an error.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator, Mapping

from overnight.errors import ConfigurationError, OvernightError, ProviderError, redact
from overnight.models import ChatRequest, Chunk, JobRef, JobStatus, ProviderInfo, RemoteJob, Result

_SECRET_WORDS = ("key", "token", "secret", "password")
#: The hooks that call the provider, and so receive the client ``connect`` built.
_CLIENT_HOOKS = frozenset({"submit", "check", "fetch", "cancel", "find_job", "list_jobs", "generate"})


class Provider:
    """Calls the hooks of the plugin that serves :attr:`info.name`, and nothing else."""

    def __init__(self, info: ProviderInfo, hook: Callable[[str], Any]) -> None:
        self.info = info
        self.name = info.name
        self._hook = hook
        #: One hook caller per hook name (build_request is called once per request).
        self._callers: dict[str, Any] = {}
        #: Per-request hooks called without pluggy's dispatch (None: through pluggy).
        self._direct: dict[str, Callable[..., Any] | None] = {}
        #: The options ``connect`` was called with, and what it returned (see :meth:`connect`).
        self._connection: tuple[Mapping[str, Any], Any] | None = None
        self._connecting = threading.Lock()

    def __repr__(self) -> str:  # never the client: it holds a key
        return f"Provider({self.name!r})"

    def _secrets(self, options: Mapping[str, Any] | None) -> list[str]:
        found = [os.environ.get(var, "") for var in self.info.secret_env]
        for name, value in (options or {}).items():
            if any(word in name.lower() for word in _SECRET_WORDS) and isinstance(value, str):
                found.append(value)
        return [s for s in found if s]

    @contextlib.contextmanager
    def _guard(self, options: Mapping[str, Any] | None) -> Iterator[None]:
        """Re-raise an error whose message would leak a secret, redacted and unchained."""
        try:
            yield
        except Exception as exc:
            self._redacted(exc, options)
            raise

    def _redacted(self, exc: Exception, options: Mapping[str, Any] | None) -> None:
        """Raise ``exc`` again, redacted and unchained, if its message holds a secret."""
        secrets = self._secrets(options)
        text = str(exc)
        if secrets and redact(text, secrets) != text:
            cls = type(exc) if isinstance(exc, OvernightError) else ProviderError
            raise cls(f"{self.name}: {redact(text, secrets)}") from None

    def _caller(self, hook: str) -> Any:
        caller = self._callers.get(hook)
        if caller is None:
            caller = self._callers[hook] = self._hook(hook)
        return caller

    def _call(self, hook: str, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        caller = self._caller(hook)
        if options is not None:
            kwargs["options"] = options
            if hook in _CLIENT_HOOKS:
                kwargs["client"] = self._client(options)
        try:  # not _guard: a context manager per call costs more than build_request itself
            return caller(provider=self.name, **kwargs)
        except Exception as exc:
            self._redacted(exc, options)
            raise

    # -- the contract ------------------------------------------------------------------

    def connect(self, options: Mapping[str, Any]) -> None:
        """Have the plugin check ``options`` and build its client, once; no network.

        Raises what the plugin's ``connect`` raises (:class:`~overnight.MissingCredentials`,
        :class:`~overnight.ConfigurationError`). A plugin without ``connect`` is asked
        ``validate_options`` instead, and its hooks get ``client=None``.
        """
        if self._caller("connect").get_hookimpls():
            client = self._call("connect", options)
            if client is None:
                raise ConfigurationError(f"the {self.name} plugin's connect returned None, not a client")
        else:
            self._call("validate_options", options)
            client = None
        self._connection = (options, client)

    def _client(self, options: Mapping[str, Any]) -> Any:
        """What ``connect`` returned for ``options``; connects first if it was not called yet.

        The executor and the CLI connect once up front; a facade used without that (a test,
        a script calling hooks directly) connects on its first call, and again only when
        given other options.
        """
        connection = self._connection
        if connection is None or (connection[0] is not options and connection[0] != options):
            with self._connecting:
                connection = self._connection
                if connection is None or (connection[0] is not options and connection[0] != options):
                    self.connect(options)
                    connection = self._connection
        assert connection is not None
        return connection[1]

    def validate_options(self, options: Mapping[str, Any]) -> None:
        """Check ``options`` as a run would (:meth:`connect`, which keeps the client)."""
        self.connect(options)

    def _single_impl(self, hook: str) -> Callable[..., Any] | None:
        """``build_request`` as a plain function of the request, when pluggy would call just
        one plugin function with arguments the core has (no wrappers, no other
        implementation): calling it directly skips pluggy's dispatch, a good part of the
        cost of a build_request. ``None``: call it through pluggy."""
        if hook not in self._direct:
            impls = self._hook(hook).get_hookimpls()
            single = impls[0] if len(impls) == 1 else None
            self._direct[hook] = None
            if single is not None and not (single.hookwrapper or single.wrapper) \
                    and set(single.argnames) <= {"provider", "request"}:
                fn, name, names = single.function, self.name, single.argnames
                if names == ("provider", "request"):
                    self._direct[hook] = lambda request: fn(name, request)
                else:
                    self._direct[hook] = lambda request: fn(*[name if a == "provider" else request for a in names])
        return self._direct[hook]

    def build_request(self, request: ChatRequest) -> dict[str, Any]:
        direct = self._direct["build_request"] if "build_request" in self._direct else self._single_impl("build_request")
        if direct is None:
            line = self._call("build_request", request=request)
        else:
            try:
                line = direct(request)
            except Exception as exc:
                self._redacted(exc, None)
                raise
        if not isinstance(line, dict):
            raise ConfigurationError(
                f"the {self.name} plugin does not implement build_request (got {line!r})"
            )
        return line

    def submit(self, chunk: Chunk, options: Mapping[str, Any]) -> JobRef:
        ref = self._call("submit", options, chunk=chunk)
        if not isinstance(ref, JobRef) or not ref.remote_id:
            raise ProviderError(f"the {self.name} plugin's submit returned {ref!r}, not a JobRef")
        return ref

    def check(self, job: JobRef, options: Mapping[str, Any], *, timeout: float | None = None) -> JobStatus:
        status = self._call("check", options, job=job, timeout=timeout)
        if not isinstance(status, JobStatus):
            raise ProviderError(f"the {self.name} plugin's check returned {status!r}, not a JobStatus")
        return status

    def fetch(self, job: JobRef, options: Mapping[str, Any], *, timeout: float | None = None) -> Iterator[Result]:
        results = self._call("fetch", options, job=job, timeout=timeout)
        if results is None:
            raise ProviderError(f"the {self.name} plugin's fetch returned nothing for {job.remote_id}")
        with self._guard(options):
            yield from results

    def cancel(self, job: JobRef, options: Mapping[str, Any]) -> None:
        if not self.info.capabilities.cancel:
            raise ConfigurationError(f"the {self.name} plugin cannot cancel jobs")
        self._call("cancel", options, job=job)

    def find_job(self, tag: str, options: Mapping[str, Any], *, timeout: float | None = None) -> JobRef | None:
        if not self.info.capabilities.find_by_tag:
            raise ConfigurationError(f"the {self.name} plugin cannot find jobs by tag")
        return self._call("find_job", options, tag=tag, timeout=timeout)

    def list_jobs(self, options: Mapping[str, Any], *, horizon: float, limit: int,
                  skip: frozenset[str], tags: frozenset[str] = frozenset()) -> list[RemoteJob]:
        if not self.info.capabilities.list_jobs:
            raise ConfigurationError(f"the {self.name} plugin cannot list its jobs")
        jobs = self._call("list_jobs", options, horizon=horizon, limit=limit, skip=skip, tags=tags)
        if jobs is None:
            raise ConfigurationError(f"the {self.name} plugin declares list_jobs but implements no list_jobs hook")
        jobs = list(jobs)
        if not all(isinstance(j, RemoteJob) for j in jobs):
            raise ProviderError(f"the {self.name} plugin's list_jobs returned something else than RemoteJobs")
        return jobs

    def generate(self, request: dict[str, Any], options: Mapping[str, Any], *, model: str,
                 timeout: float | None = None) -> Result:
        """One request through the provider's online API (``Capabilities.online``)."""
        if not self.info.capabilities.online:
            raise ConfigurationError(f"the {self.name} plugin has no online API (Capabilities.online)")
        result = self._call("generate", options, request=request, timeout=timeout, model=model)
        if not isinstance(result, Result):
            raise ProviderError(
                f"the {self.name} plugin declares Capabilities.online but its generate hook returned "
                f"{result!r}, not a Result"
            )
        return result
