"""``LLM("provider/model", ...)``: which provider and model a task uses, and how.

The LLM holds the model name, the generation options and the client options (API
key, base URL, ...). Client options go to the provider plugin at call time and are
never persisted or part of a signature.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from overnight import online, plugins
from overnight.errors import (
    ConfigurationError,
    MissingCredentials,
    OfflineBatchGenerationNotFinished,
    RowProblem,
    ValidationError,
)
from overnight.executor import BatchExecutor
from overnight.models import (
    STANDARD_PARAMS, GenerationParams, PlannedRequest, RowResult, evolve, standard_param_problems,
)
from overnight.policy import RunPolicy
from overnight.polling import Backoff
from overnight.providers import Provider
from overnight.store import Store


class LLM:
    """A model served through a provider's batch API.

    ``model`` is ``"provider/model"`` (e.g. ``"openai/gpt-4o-mini"``); the provider is
    served by an installed plugin (``pip install overnight-<provider>``).
    ``offline_batch_generation_block_until_done`` makes a run wait up to that many
    seconds, polling with backoff, instead of stopping as soon as jobs are submitted.
    ``generation_kwargs`` holds ``max_tokens``, ``temperature``, ``top_p``, ``stop``,
    ``response_format``, ``seed`` and any option the provider declares. Other keyword
    arguments (``api_key``, ``base_url``, ...) are client options for the plugin.

    ``use_offline_batch_generation=False`` sends the requests through the provider's
    online API instead (plugins declaring ``Capabilities.online``), at most
    ``online_concurrency`` at once and within ``requests_per_minute`` /
    ``tokens_per_minute`` (default: the plugin's ``OnlineLimits``). In batch mode,
    ``online_fallback_after`` (seconds after the step's first submit) or ``deadline`` (a
    datetime or Unix seconds) is the deadline fallback: past it, the open batch jobs are
    cancelled, their results kept, and the requests still without one go online.

    After a run that did not finish, :attr:`jobs_ids` holds the pending remote job ids.
    """

    def __init__(
        self,
        model: str,
        *,
        use_offline_batch_generation: bool = True,
        offline_batch_generation_block_until_done: float | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        max_attempts: int = 3,
        poll_interval: float = 5.0,
        context_window: int | None = None,
        max_enqueued_tokens: int | None = None,
        max_queued_requests: int | None = None,
        prices: Mapping[str, float] | None = None,
        expected_output_tokens: int | None = None,
        online_concurrency: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        online_fallback_after: float | None = None,
        deadline: Any = None,
        **client_options: Any,
    ) -> None:
        provider, sep, model_name = model.partition("/")
        if not sep or not provider or not model_name:
            raise ConfigurationError(
                f"LLM model {model!r} must be written 'provider/model', e.g. 'openai/gpt-4o-mini'."
            )
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        for name, value in (("context_window", context_window), ("max_enqueued_tokens", max_enqueued_tokens),
                            ("max_queued_requests", max_queued_requests),
                            ("expected_output_tokens", expected_output_tokens),
                            ("online_concurrency", online_concurrency), ("requests_per_minute", requests_per_minute),
                            ("tokens_per_minute", tokens_per_minute)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
        #: Limits and money (see README "Limits and money"): the context window overriding the
        #: plugin's table, the account's queue figures, online prices per million tokens
        #: ({"input_mtok", "output_mtok"}) overriding the price library, and the output tokens
        #: expected per request before any is collected.
        self.context_window = context_window
        self.max_enqueued_tokens = max_enqueued_tokens
        self.max_queued_requests = max_queued_requests
        self.prices = dict(prices) if prices is not None else None
        self.expected_output_tokens = expected_output_tokens
        self.model = model
        self.provider = provider
        self.model_name = model_name
        #: Online mode and the deadline fallback (README "Online mode and the deadline fallback").
        self.use_offline_batch_generation = bool(use_offline_batch_generation)
        self.online_concurrency = online_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.online_fallback_after = _fallback_seconds(online_fallback_after)
        self.deadline = online.deadline_seconds(deadline)
        if not self.use_offline_batch_generation or self.online_fallback_after is not None \
                or self.deadline is not None:
            online.check_online_options(provider, online=not self.use_offline_batch_generation,
                                        fallback=self.online_fallback_after is not None or self.deadline is not None)
        self.offline_batch_generation_block_until_done = offline_batch_generation_block_until_done
        self.generation_kwargs = dict(generation_kwargs or {})
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.client_options = dict(client_options)
        self.jobs_ids: tuple[str, ...] = ()
        #: The provider :meth:`load` connected, handed to the run's :meth:`generate_offline`
        #: (the task loads when the run checks its steps), so a run connects once; in memory only.
        self._connected: Provider | None = None

    def __repr__(self) -> str:  # never shows client options: they may hold a key
        return f"LLM({self.model!r}, generation_kwargs={self.generation_kwargs!r})"

    def load(self) -> Provider:
        """Resolve the provider plugin and connect it: the client options checked, its client built; no network.

        The facade returned holds the client for this run only (see :mod:`overnight.providers`).
        """
        self._connected = None
        provider = plugins.get_registry().provider(self.provider)
        online.check_info(provider.info, online=not self.use_offline_batch_generation,
                          fallback=self.online_fallback_after is not None or self.deadline is not None)
        try:
            provider.connect(self.client_options)
        except MissingCredentials:
            from overnight.money import active_estimates

            if active_estimates() is None:  # an estimate calls no provider: it needs no key
                raise
            return provider
        self._connected = provider
        return provider

    def params(self) -> GenerationParams:
        """The generation options, split into standard ones and provider extras."""
        kwargs = dict(self.generation_kwargs)
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in STANDARD_PARAMS}
        return GenerationParams(**kwargs, extra=extra)

    def signature(self) -> dict[str, Any]:
        """What identifies this LLM's outputs, for step caching (no secrets)."""
        return {
            "model": self.model,
            "generation_kwargs": self.generation_kwargs,
            "max_attempts": self.max_attempts,
        }

    def generate_offline(
        self,
        planned: Iterable[PlannedRequest],
        *,
        store: Store,
        step: str,
        plan_id: str,
        policy: RunPolicy = RunPolicy(),
        raw: bool = True,
    ) -> Iterator[RowResult]:
        """Run the batch step's requests; results come back in plan order.

        Each request's model and generation options are set from this LLM; the caller
        gives the messages. ``policy`` holds the run's choices; this LLM adds its own
        (attempts, how long to wait, how often to check) unless the run set them.
        ``raw=False``: the results come back without the provider's raw answer
        (``Result.raw`` is None), which the store then does not read (at millions of
        rows, a few microseconds each).

        Raises :class:`~overnight.ValidationError` before any submission when a request
        is bad, and :class:`~overnight.OfflineBatchGenerationNotFinished` while jobs run.
        """
        # The provider the run's check connected (taken, so the next run connects again), else now.
        provider, self._connected = self._connected or self.load(), None
        problems = standard_param_problems(self.generation_kwargs)
        if problems:  # before GenerationParams, which would fail on some of them
            raise ValidationError([RowProblem(step, None, field, message) for field, message in problems])
        wait = policy.block_until_done if policy.block_until_done is not None \
            else self.offline_batch_generation_block_until_done
        policy = evolve(policy, max_attempts=self.max_attempts, block_until_done=wait,
                        backoff=Backoff(initial=self.poll_interval), context_window=self.context_window,
                        max_enqueued_tokens=self.max_enqueued_tokens, max_queued_requests=self.max_queued_requests,
                        prices=self.prices, expected_output_tokens=self.expected_output_tokens,
                        online=not self.use_offline_batch_generation, online_concurrency=self.online_concurrency,
                        requests_per_minute=self.requests_per_minute, tokens_per_minute=self.tokens_per_minute,
                        online_fallback_after=self.online_fallback_after, deadline=self.deadline)
        executor = BatchExecutor(store, provider, self.client_options, step=step, plan_id=plan_id, policy=policy,
                                 model=self.model_name, params=self.params(), raw=raw)
        try:
            results = executor.run(planned)
        except OfflineBatchGenerationNotFinished as exc:
            self.jobs_ids = exc.jobs_ids
            raise
        self.jobs_ids = ()
        return results


def _fallback_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ConfigurationError(f"online_fallback_after must be a number of seconds >= 0, got {value!r}")


class ProviderLLM(LLM):
    """An :class:`LLM` with its provider fixed by the class, as distilabel's ``OpenAILLM``.

    Each plugin exports one (``from overnight_openai import OpenAILLM``), so that
    ``OpenAILLM(model="gpt-4o-mini", use_offline_batch_generation=True)`` is
    ``LLM("openai/gpt-4o-mini", ...)``, with every argument of :class:`LLM`.
    """

    #: The provider this class serves (set by each subclass).
    provider_name: str = ""

    def __init__(self, model: str, **kwargs: Any) -> None:
        if not self.provider_name:
            raise ConfigurationError(f"{type(self).__name__} sets no provider_name")
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"{type(self).__name__}: model must be a model name, e.g. 'gpt-4o-mini'")
        prefix = f"{self.provider_name}/"
        super().__init__(model if model.startswith(prefix) else prefix + model, **kwargs)

    def __repr__(self) -> str:  # never shows client options: they may hold a key
        return f"{type(self).__name__}(model={self.model_name!r}, generation_kwargs={self.generation_kwargs!r})"
