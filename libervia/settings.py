"""Settings: dynaconf layers, the runbook's bare environment names, and eager validation.

Layers, lowest first: the schema's defaults, ``settings.toml`` ``[default]``, its table for the active
environment, ``.secrets.toml``, the bare environment names of the runbook, then ``LIBERVIA_*`` variables.
Everything is validated against ``schemas/settings.schema.json`` before the gateway accepts a request; each
problem is one line naming the setting, and start-up stops with exit code 2 (:class:`StartupError`).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynaconf import Dynaconf

from libervia.errors import StartupError
from libervia.schemas import load_schema, problems
from libervia.secret_names import is_secret_name

ENV_PREFIX = "LIBERVIA"
ENVIRONMENTS = ("development", "production", "test")

# The runbook's bare names. Their values are taken as raw strings: dynaconf would parse them as TOML, which
# turns an all-digit token into an integer and a value starting with "@" into a dynaconf directive.
BARE_NAMES: dict[str, str] = {
    "ADMIN_TOKEN": "admin_token",
    "BASE_DIR": "base_dir",
    "PORT": "port",
    "HOST": "host",
    "LOG_LEVEL": "log_level",
    "CORS_ORIGINS": "cors_origins",
    "LIBERVIA_AUTH_PEPPER": "auth_pepper",
}
# Prefixed names whose values are secrets or plain strings, also taken raw.
RAW_PREFIXED = ("ADMIN_TOKEN", "AUTH_PEPPER", "CHECKPOINT_KEY", "BASE_DIR", "HOST")
# Variables of ours that are not settings (URL: the gateway the admin subcommands talk to).
META_VARIABLES = {"ENV", "SETTINGS", "SETTINGS_FILE", "TRACE_PLUGINS", "URL"}
SECRET_SETTINGS = ("admin_token", "auth_pepper", "checkpoint_key")


@dataclass(frozen=True)
class Settings:
    """Validated settings. ``raw`` holds every key (defaults filled); the common ones are attributes."""

    raw: dict[str, Any] = field(repr=False)
    env: str
    host: str
    port: int
    base_dir: Path
    log_level: str
    cors_origins: tuple[str, ...]
    admin_token: str = field(repr=False)
    auth_pepper: str = field(repr=False)
    max_body_bytes: int
    shutdown_timeout_s: float
    min_free_disk_mb: int
    source_files: tuple[str, ...]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def section(self, key: str) -> dict[str, Any]:
        return dict(self.raw.get(key) or {})


def mask_secrets(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: ("***" if is_secret_key(str(k)) and v else mask_secrets(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(item) for item in data]
    return data


is_secret_key = is_secret_name


def choose_environment(environ: Mapping[str, str]) -> tuple[str, list[str]]:
    raw = environ.get(f"{ENV_PREFIX}_ENV") or environ.get("NODE_ENV") or "development"
    env = raw.strip().lower()
    if env not in ENVIRONMENTS:
        name = f"{ENV_PREFIX}_ENV" if environ.get(f"{ENV_PREFIX}_ENV") else "NODE_ENV"
        return "development", [f"{name}: must be one of {', '.join(ENVIRONMENTS)} (got {raw!r})"]
    return env, []


def _settings_files(environ: Mapping[str, str], settings_file: str | None) -> list[Path]:
    explicit = settings_file or environ.get(f"{ENV_PREFIX}_SETTINGS_FILE") or environ.get(f"{ENV_PREFIX}_SETTINGS")
    main = Path(explicit) if explicit else Path.cwd() / "settings.toml"
    return [main, main.with_name(".secrets.toml")]


def _from_files(files: list[Path], env: str) -> dict[str, Any]:
    existing = [str(path) for path in files if path.is_file()]
    if not existing:
        return {}
    loaded = Dynaconf(
        settings_files=existing,
        environments=True,
        env=env,
        merge_enabled=True,
        loaders=[],  # environment variables are layered below, with our own rules
        core_loaders=["TOML"],
    )
    return _lower_keys(loaded.as_dict(env=env))


def _lower_keys(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k).lower(): _lower_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_lower_keys(v) for v in data]
    return data


def _from_prefixed_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``LIBERVIA_<NAME>`` and ``LIBERVIA_<TABLE>__<KEY>``, values parsed as TOML like dynaconf does."""
    holder = Dynaconf(loaders=[], environments=False, core_loaders=[])
    result: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(f"{ENV_PREFIX}_"):
            continue
        key = name[len(ENV_PREFIX) + 1:]
        if key in META_VARIABLES or not key:
            continue
        parsed: Any = value if key in RAW_PREFIXED else _parse_env_value(holder, value)
        path = [part.lower() for part in key.split("__")]
        target = result
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[path[-1]] = parsed
    return result


def _parse_env_value(holder: Dynaconf, value: str) -> Any:
    from dynaconf.utils.parse_conf import parse_conf_data

    try:
        return parse_conf_data(value, tomlfy=True, box_settings=holder)
    except Exception:
        # dynaconf's parser raises on some odd inputs; the raw string then reaches validation as it is.
        return value


def _from_bare_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    result: dict[str, Any] = {}
    found: list[str] = []
    for name, key in BARE_NAMES.items():
        if name in environ:
            result[key] = environ[name]
    if "port" in result:
        text = result["port"].strip()
        if text.isdigit():
            result["port"] = int(text)
        else:
            found.append(f"PORT: must be an integer in 1..65535 (got {result['port']!r})")
            del result["port"]
    if "cors_origins" in result:
        result["cors_origins"] = [o.strip() for o in result["cors_origins"].split(",") if o.strip()]
    if "log_level" in result:
        result["log_level"] = result["log_level"].strip().lower()
    return result, found


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# Names a deployer recognises in a problem line: the runbook's variable where there is one.
_DISPLAY = {
    "auth_pepper": "LIBERVIA_AUTH_PEPPER",
    "admin_token": "ADMIN_TOKEN",
    "base_dir": "BASE_DIR",
    "port": "PORT",
    "host": "HOST",
    "log_level": "LOG_LEVEL",
    "cors_origins": "CORS_ORIGINS",
}


def _describe_problem(problem: dict[str, Any]) -> str:
    path: str = problem["path"]
    message: str = problem["message"]
    key = path[2:].split(".")[0].split("[")[0] if path.startswith("$.") else ""
    if path == "$" and "is a required property" in message:
        key = message.split("'")[1]
        name = _DISPLAY.get(key, key)
        return f"{name}: is required but not set"
    if "Additional properties are not allowed" in message:
        unknown = message.split("(", 1)[1].split(" were unexpected")[0].split(" was unexpected")[0]
        names = [part.strip().strip("'") for part in unknown.split(",")]
        where = f"{path[2:]}." if path != "$" else ""
        known = _known_names(path)
        return "; ".join(f"{where}{n}: unknown setting{_suggestion(where, n, known)}" for n in names)
    name = _DISPLAY.get(key, path[2:] or "settings")
    if key in SECRET_SETTINGS:
        # jsonschema quotes the offending value; a secret must not reach the terminal or a log.
        message = _secret_message(key, message)
    return f"{name}: {message}"


def _known_names(path: str) -> list[str]:
    """The setting names allowed at ``path`` (``$`` or ``$.auth``...), from the settings schema."""
    node: Mapping[str, Any] = load_schema("settings")
    for part in path[2:].split(".") if path != "$" else []:
        node = node.get("properties", {}).get(part, {})
    return sorted(node.get("properties", {}))


def _suggestion(where: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        return ""
    env = f"{ENV_PREFIX}_{(where.replace('.', '__') + close[0]).upper()}"
    return f" (did you mean {where}{close[0]}, variable {env}?)"


def _secret_message(key: str, message: str) -> str:
    if "is too short" in message:
        return "is too short (at least 32 characters)"
    return "is not a valid value"


def _network_problems(data: Mapping[str, Any]) -> list[str]:
    found = []
    for entry in (data.get("auth") or {}).get("trusted_proxies") or []:
        try:
            ipaddress.ip_network(str(entry), strict=False)
        except ValueError:
            found.append(f"auth.trusted_proxies: {entry!r} is not an IP network (CIDR such as 10.0.0.0/8)")
    return found


def load_settings(environ: Mapping[str, str] | None = None, settings_file: str | None = None,
                  *, check_base_dir: bool = True) -> Settings:
    """Load and validate every layer; raise :class:`StartupError` listing every problem."""
    environ = os.environ if environ is None else environ
    env, found = choose_environment(environ)
    files = _settings_files(environ, settings_file)
    try:
        data = _from_files(files, env)
    except Exception as exc:
        raise StartupError([f"settings file {files[0]}: cannot be read: {exc}"]) from exc
    bare, bare_problems = _from_bare_env(environ)
    found += bare_problems
    data = _merge(data, bare)
    data = _merge(data, _from_prefixed_env(environ))
    data["env"] = env
    found += [_describe_problem(p) for p in problems(data, "settings", fill_defaults=True)]
    if not found:
        found += _network_problems(data)
    if found:
        raise StartupError(found)
    base_dir = Path(data["base_dir"]).expanduser().resolve()
    if check_base_dir:
        problem = ensure_writable_dir(base_dir)
        if problem:
            raise StartupError([f"BASE_DIR: {problem}"])
    return Settings(
        raw=data,
        env=env,
        host=data["host"],
        port=data["port"],
        base_dir=base_dir,
        log_level=data["log_level"],
        cors_origins=tuple(data["cors_origins"]),
        admin_token=data["admin_token"],
        auth_pepper=data["auth_pepper"],
        max_body_bytes=data["max_body_bytes"],
        shutdown_timeout_s=float(data["shutdown_timeout_s"]),
        min_free_disk_mb=data["min_free_disk_mb"],
        source_files=tuple(str(p) for p in files if p.is_file()),
    )


def ensure_writable_dir(path: Path) -> str | None:
    """Create ``path`` if needed and prove it writable with a durable probe file; a problem sentence or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return f"{path} cannot be created or written ({exc.strerror or exc})"
    return None


def free_disk_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / (1024 * 1024)
