"""Plugin discovery: load provider plugins from the ``overnight`` entry-point group.

A plugin that fails to import, to declare its providers, or to name its hooks right (a
hook no hookspec declares is an error, not a silent no-op) is recorded in
:attr:`PluginRegistry.failures` and skipped; the others keep working. Only this module
and :mod:`overnight.providers` touch the pluggy plugin manager.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, cast

import pluggy
from attrs import frozen

from overnight import hookspecs
from overnight.errors import ConfigurationError, ProviderNotFound
from overnight.models import ProviderInfo

if TYPE_CHECKING:
    from overnight.providers import Provider

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "overnight"


@frozen
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    package: str | None
    error: str


@frozen
class PluginEntry:
    """A loaded plugin and the providers it declared."""

    name: str
    package: str | None
    version: str | None
    providers: tuple[ProviderInfo, ...]


class PluginRegistry:
    """The loaded plugins and the providers they serve.

    ``plugins`` are registered directly (tests, in-script plugins); with
    ``entrypoints=True`` the installed plugins are loaded too.
    """

    def __init__(self, plugins: Iterable[Any] = (), *, entrypoints: bool = True, lazy: bool = False) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._failures: list[PluginFailure] = []
        self._entries: list[PluginEntry] = []
        self._owner: dict[str, Any] = {}
        self._infos: dict[str, ProviderInfo] = {}
        #: Entry points listed but not imported yet (``lazy``).
        self._unloaded: list[importlib.metadata.EntryPoint] = []
        if entrypoints:
            self._unloaded = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            if not lazy:
                self._load_entrypoints()
        for plugin in plugins:
            self.register(plugin)

    @property
    def failures(self) -> list[PluginFailure]:
        """Plugins that could not be loaded, and why (every installed plugin is loaded first)."""
        self._load_entrypoints()
        return self._failures

    @property
    def entries(self) -> list[PluginEntry]:
        """The loaded plugins (every installed plugin is loaded first)."""
        self._load_entrypoints()
        return self._entries

    def _load_entrypoints(self, name: str | None = None) -> None:
        """Import the installed plugins still unloaded (only those named ``name`` if given).

        A lazy registry imports a plugin, and so its provider's SDK, only when a provider
        it may serve is asked for: a run that uses one provider imports one SDK.
        """
        for ep in [ep for ep in self._unloaded if name is None or ep.name == name]:
            self._unloaded.remove(ep)
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the host down
                self._fail(ep.name, dist, exc)
                continue
            self.register(plugin, name=ep.name, package=dist, version=version)

    def _fail(self, name: str, package: str | None, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("overnight plugin %r could not be loaded and is skipped: %s", name, error)
        self._failures.append(PluginFailure(name=name, package=package, error=error))

    def register(
        self,
        plugin: Any,
        *,
        name: str | None = None,
        package: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object (a module or any object with ``@hookimpl`` functions)."""
        # Modules register under their name; other objects under their id (pluggy's default).
        key = name or getattr(plugin, "__name__", None)
        name = key or type(plugin).__name__
        try:
            self._pm.register(plugin, name=key)
            self._check_pending(plugin, name)
            impls = [i for i in self._pm.hook.register_providers.get_hookimpls() if i.plugin is plugin]
            infos = tuple(info for impl in impls for info in (cast("Iterable[Any]", impl.function()) or ()))
            for info in infos:
                if not isinstance(info, ProviderInfo):
                    raise ConfigurationError(f"register_providers returned {info!r}, not a ProviderInfo")
                if info.name in self._infos:
                    raise ConfigurationError(
                        f"provider {info.name!r} is already served by plugin "
                        f"{self._pm.get_name(self._owner[info.name])!r}"
                    )
        except Exception as exc:
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._fail(name, package, exc)
            return
        for info in infos:
            self._infos[info.name] = info
            self._owner[info.name] = plugin
        self._entries.append(PluginEntry(name=name, package=package, version=version, providers=infos))

    def _check_pending(self, plugin: Any, name: str) -> None:
        """Refuse a hook implementation no hookspec declares (a misspelt ``chek``).

        pluggy registers such a function without complaint and never calls it, so the
        plugin would silently lack the hook. Every plugin registered before this one passed
        this check, so what ``check_pending`` finds belongs to ``plugin``.
        """
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            known = sorted(n for n in vars(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec"))
            unknown = sorted(
                hook for hook, caller in vars(self._pm.hook).items()
                if not hook.startswith("_") and not caller.has_spec()
                and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
            )
            problems = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{hook!r}{hint}")
            raise ConfigurationError(
                f"plugin {name!r} implements {', '.join(problems)}, which is not an overnight hook; "
                f"the hooks are {', '.join(known)}. Rename it, or mark it "
                "@hookimpl(optionalhook=True) if it serves a hook of a newer overnight."
            ) from None

    def implemented_hooks(self, provider: str) -> frozenset[str]:
        """The names of the hooks the plugin serving ``provider`` implements."""
        owner = self._owner[self.info(provider).name]
        return frozenset(
            hook for hook, caller in vars(self._pm.hook).items()
            if not hook.startswith("_") and any(i.plugin is owner for i in caller.get_hookimpls())
        )

    def hook_arguments(self, provider: str) -> dict[str, tuple[str, ...]]:
        """The arguments each hook of the plugin serving ``provider`` names (pluggy passes only those)."""
        owner = self._owner[self.info(provider).name]
        return {
            hook: tuple(impl.argnames)
            for hook, caller in vars(self._pm.hook).items() if not hook.startswith("_")
            for impl in caller.get_hookimpls() if impl.plugin is owner
        }

    @property
    def provider_names(self) -> list[str]:
        self._load_entrypoints()
        return sorted(self._infos)

    def info(self, provider: str) -> ProviderInfo:
        if provider not in self._infos and self._unloaded:
            # The plugin named like the provider first (overnight-openai is ``openai``), then the rest.
            self._load_entrypoints(provider)
            if provider not in self._infos:
                self._load_entrypoints()
        try:
            return self._infos[provider]
        except KeyError:
            raise ProviderNotFound(provider, self.provider_names) from None

    def provider(self, name: str) -> "Provider":
        """The typed facade through which the core calls the plugin serving ``name``."""
        from overnight.providers import Provider

        info = self.info(name)
        owner = self._owner[name]
        others = [p for p in self._pm.get_plugins() if p is not owner]
        return Provider(info, lambda hook: self._pm.subset_hook_caller(hook, remove_plugins=others))


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry of the installed plugins, each imported on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginRegistry(lazy=True)
        return _default


def set_registry(registry: PluginRegistry | None) -> PluginRegistry | None:
    """Replace the process-wide registry (``None`` reloads from entry points on next use).

    Returns the previous one, so tests can restore it.
    """
    global _default
    with _default_lock:
        previous, _default = _default, registry
        return previous

