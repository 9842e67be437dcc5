"""Finding, registering and configuring plugins.

Order of registration (pluggy calls the last registered first, so later ones can override earlier ones):

1. built-ins from ``libervia_plugins``: the ones every gateway runs, plus the one named by each slot setting
   (``storage``, ``rate_limiter``, ``telemetry``);
2. installed distributions' ``libervia`` entry points;
3. dotted module paths listed in ``plugins.load``.

Names in ``plugins.block`` are never registered. Then every hook implementation must match a spec
(``check_pending``), every slot must be filled by a registered plugin, and each plugin's settings section must
validate against the schema it declares. Every problem is collected and reported at once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from loguru import logger

from libervia import PROJECT_NAME, hookspecs
from libervia.schemas import problems as schema_problems
from libervia.settings import Settings, mask_secrets

ENTRY_POINT_GROUP = PROJECT_NAME

# Built-ins that every gateway registers (unless blocked), in registration order.
BUILTIN_CORE = (
    "health",
    "auth_admin_token",
    "auth_tenant_keys",
    "admin_api",
    "audit_api",
    "core_api",
    "query_api",
    "policy_default",
)

# Settings that name the plugin filling a slot, and the hook a plugin must implement to fill it.
SLOTS: dict[str, tuple[str, ...]] = {
    "storage": ("libervia_storage",),
    "rate_limiter": ("libervia_rate_limiter",),
    "telemetry": ("libervia_render_metrics", "libervia_observe_requests"),
}
BUILTIN_SLOT_PLUGINS = {
    "storage": ("storage_files", "storage_postgres"),
    "rate_limiter": ("ratelimit_memory", "ratelimit_redis"),
    "telemetry": ("telemetry_prometheus",),
}


@dataclass
class LoadedPlugins:
    pm: pluggy.PluginManager
    origins: dict[str, str] = field(default_factory=dict)   # plugin name -> "builtin" | "entrypoint:dist" | "settings"
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> list[dict[str, Any]]:
        """What ``libervia plugins`` prints: name, origin, hooks, validated config (secrets masked)."""
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            schema = self.schemas.get(name)
            rows.append({
                "name": name,
                "origin": self.origins.get(name, "unknown"),
                "module": getattr(plugin, "__name__", type(plugin).__name__),
                "hooks": hooks,
                "schema": schema.get("$id") or schema.get("title") if schema else None,
                "config": mask_secrets(self.configs.get(name, {})),
            })
        return rows


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(settings: Settings) -> tuple[LoadedPlugins, list[str]]:
    """Register every plugin the settings ask for; return them and the list of problems (empty when fine)."""
    pm = new_plugin_manager()
    loaded = LoadedPlugins(pm)
    found: list[str] = []
    plugins_cfg = settings.section("plugins")
    blocked = set(plugins_cfg.get("block", []))
    for name in blocked:
        pm.set_blocked(name)

    for name in _builtin_names(settings, found):
        if name in blocked:
            continue
        _register(loaded, f"libervia_plugins.{name}", name, "builtin", found)

    _load_entry_points(loaded, blocked, found)

    for dotted in plugins_cfg.get("load", []):
        if dotted in blocked:
            continue
        _register(loaded, dotted, dotted, "settings", found)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        found.append(f"plugins: {exc.plugin_name if hasattr(exc, 'plugin_name') else ''}: {exc}".replace(": : ", ": "))

    found += _check_slots(loaded, settings)
    found += _validate_configs(loaded, settings)
    return loaded, found


def _builtin_names(settings: Settings, found: list[str]) -> list[str]:
    names = list(BUILTIN_CORE)
    for slot, candidates in BUILTIN_SLOT_PLUGINS.items():
        chosen = settings.get(slot) or ""
        if chosen in candidates:
            names.append(chosen)
    return names


def _register(loaded: LoadedPlugins, module_path: str, name: str, origin: str, found: list[str]) -> None:
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:
        setting = "plugins.load" if origin == "settings" else "plugins"
        found.append(f"{setting}: plugin {name!r} cannot be imported ({type(exc).__name__}: {exc})")
        return
    if origin == "settings":
        # A listed module may name itself (PLUGIN_NAME) so that its settings section and its block-list entry
        # are the same whether it is listed by path or installed with an entry point.
        name = getattr(module, "PLUGIN_NAME", name)
        if loaded.pm.is_blocked(name):
            return
    _register_object(loaded, module, name, origin, found)


def _register_object(loaded: LoadedPlugins, plugin: object, name: str, origin: str, found: list[str]) -> None:
    if loaded.pm.is_registered(plugin) or loaded.pm.has_plugin(name):
        return
    try:
        loaded.pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        found.append(f"plugins: plugin {name!r} is invalid: {exc}")
        return
    loaded.origins[name] = origin


def _load_entry_points(loaded: LoadedPlugins, blocked: set[str], found: list[str]) -> None:
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in blocked:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                found.append(f"plugins: entry point {ep.name!r} of {dist.metadata['name']} cannot be loaded "
                             f"({type(exc).__name__}: {exc})")
                continue
            _register_object(loaded, plugin, ep.name, f"entrypoint:{dist.metadata['name']}", found)


def _check_slots(loaded: LoadedPlugins, settings: Settings) -> list[str]:
    found = []
    pm = loaded.pm
    for slot, hooks in SLOTS.items():
        chosen = settings.get(slot) or ""
        providers = sorted({impl.plugin_name for impl in getattr(pm.hook, hooks[0]).get_hookimpls()})
        if not chosen:
            if slot == "storage":
                found.append("storage: a storage plugin must be named")
            elif providers:
                names = ", ".join(providers)
                found.append(f"{slot}: is empty but plugin(s) {names} provide it; block them or name one")
            continue
        plugin = pm.get_plugin(chosen)
        if plugin is None:
            found.append(f"{slot}: unknown plugin {chosen!r} (not built in, installed or listed in plugins.load)")
            continue
        missing = [hook for hook in hooks if not _implements(pm, chosen, hook)]
        if missing:
            found.append(f"{slot}: plugin {chosen!r} does not implement {', '.join(missing)}")
        others = [p for p in providers if p != chosen]
        if others:
            found.append(f"{slot}: plugin(s) {', '.join(others)} also provide it; block them or name one of them")
    return found


def _implements(pm: pluggy.PluginManager, plugin_name: str, hook: str) -> bool:
    return any(impl.plugin_name == plugin_name for impl in getattr(pm.hook, hook).get_hookimpls())


def _validate_configs(loaded: LoadedPlugins, settings: Settings) -> list[str]:
    found: list[str] = []
    sections = settings.section("plugin")
    declared: set[str] = set()
    for impl in loaded.pm.hook.libervia_config_schema.get_hookimpls():
        name = impl.plugin_name
        declared.add(name)
        try:
            schema: Any = impl.function()
        except Exception as exc:
            found.append(f"plugin.{name}: its config schema cannot be loaded ({type(exc).__name__}: {exc})")
            continue
        if schema is None:
            continue
        config = dict(sections.get(name) or {})
        for problem in schema_problems(config, schema, fill_defaults=True):
            found.append(f"plugin.{name}: {problem['path']}: {problem['message']}")
        loaded.configs[name] = config
        loaded.schemas[name] = schema
    for name in sections:
        if not loaded.pm.has_plugin(name):
            # Keeping the section of a plugin that another environment uses is normal; say so, do not refuse.
            logger.warning(f"plugin.{name}: settings given for a plugin that is not loaded; ignored")
        elif name not in declared:
            found.append(f"plugin.{name}: plugin {name!r} declares no configuration schema")
    return found
