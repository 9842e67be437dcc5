"""``libervia evidence``: the runbook's evidence collection, in one archive, with secrets redacted.

Every item is collected independently: an incident is exactly when the gateway, Docker or a tool may be
missing or failing, so a failed item is recorded in ``summary.json`` with its error and never stops the rest.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson

from libervia import __version__
from libervia.clock import format_iso
from libervia.secret_names import BEARER_CREDENTIAL, is_secret_name

CONTAINER_NAME = "libervia-gateway"
REDACTED = "<redacted>"

_HTTP_TIMEOUT_S = 5
_COMMAND_TIMEOUT_S = 15
_LOG_TAIL_BYTES = 20 * 1024 * 1024
# Values shorter than this are not scrubbed from other files: replacing "1" or "yes" everywhere would
# destroy the evidence without protecting anything.
_MIN_SCRUB_LENGTH = 6


def run_evidence(url: str, admin_token: str | None, output_dir: Path, log_file: Path | None) -> Path:
    """Collect evidence about the gateway at ``url`` into ``output_dir/evidence-<time>.tar.gz``; return its path.

    The archive is readable by its owner only: metrics and process lists describe the deployment.
    """
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    prefix = f"evidence-{stamp}"
    base = url.rstrip("/")
    environ = dict(os.environ)
    secrets = _secret_values(environ, admin_token)

    def admin_get(path: str) -> tuple[bytes, str]:
        if not admin_token:
            raise _Unavailable("no admin token given")
        return _http_get(f"{base}{path}", {"Authorization": f"Bearer {admin_token}"})

    items: dict[str, Callable[[], bytes | tuple[bytes, str]]] = {
        "health.json": lambda: _http_get(f"{base}/health"),
        "ready.json": lambda: _http_get(f"{base}/health/ready"),
        "metrics.txt": lambda: admin_get("/internal/metrics"),
        "metrics.json": lambda: admin_get("/internal/metrics/json"),
        "operational.json": lambda: admin_get("/internal/health/operational"),
        "processes.txt": lambda: _run(["ps", "auxww"]),
        "disk.txt": lambda: _run(["df", "-h"]),
        "memory.txt": lambda: _run(["free", "-m"]),
        "sockets.txt": lambda: _run(["ss", "-s"]),
        "env-filtered.txt": lambda: redacted_environment(environ).encode(),
        "docker-ps.txt": lambda: _run(["docker", "ps", "-a"]),
        "docker-stats.txt": lambda: _run(["docker", "stats", "--no-stream"]),
        "container.log": lambda: _run(["docker", "logs", CONTAINER_NAME, "--since", "1h"], stderr_too=True),
    }
    if log_file is not None:
        items["gateway.log"] = lambda: _tail(log_file, _LOG_TAIL_BYTES)

    outcome: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    for name, collect in items.items():
        try:
            result = collect()
        except _Unavailable as exc:
            outcome[name] = f"skipped: {exc}"
            continue
        except Exception as exc:  # one broken source must not lose the others
            outcome[name] = f"error: {type(exc).__name__}: {exc}"
            continue
        content, note = result if isinstance(result, tuple) else (result, "ok")
        contents[name] = scrub(content, secrets)
        outcome[name] = note
    summary = {"collected_at": format_iso(started), "collector_version": __version__, "url": base,
               "admin_token_given": admin_token is not None, "log_file": str(log_file) if log_file else None,
               "items": outcome}
    contents["summary.json"] = scrub(orjson.dumps(summary, option=orjson.OPT_INDENT_2), secrets)
    return _write_archive(output_dir, prefix, contents)


def redacted_environment(environ: Mapping[str, str]) -> str:
    """``env`` output, sorted, with the value of every secret-looking variable replaced."""
    lines = []
    for name in sorted(environ):
        value = REDACTED if _is_secret_name(name) else environ[name]
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


_BEARER_BYTES = re.compile(BEARER_CREDENTIAL.pattern.encode(), BEARER_CREDENTIAL.flags & ~re.UNICODE)


def scrub(content: bytes, secrets: list[str]) -> bytes:
    """Replace every occurrence of any secret value in ``content``, and every bearer credential (a tenant key in
    another process's command line, say, which no setting names)."""
    for secret in secrets:
        content = content.replace(secret.encode(), REDACTED.encode())
    return _BEARER_BYTES.sub(b"Bearer " + REDACTED.encode(), content)


def _secret_values(environ: Mapping[str, str], admin_token: str | None) -> list[str]:
    values = {value for name, value in environ.items() if _is_secret_name(name)}
    if admin_token:
        values.add(admin_token)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted((v for v in values if len(v) >= _MIN_SCRUB_LENGTH), key=len, reverse=True)


# Environment variables with a secret name have their values replaced, here and wherever those values appear in
# any other collected file (a token pasted into a command line shows up in `ps aux`).
_is_secret_name = is_secret_name


class _Unavailable(Exception):
    """The source does not exist here (no Docker, no such tool); not an error of the collection."""


def _http_get(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    """The body exactly as served (so `jq` reads the file, as with the runbook's curl), and its status."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the operator's own URL
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310
            return response.read(), f"ok (HTTP {response.status})"
    except urllib.error.HTTPError as exc:
        # A 503 from /health/ready is itself evidence: keep its body, which names the failing check.
        return exc.read(), f"ok (HTTP {exc.code})"


def _run(argv: list[str], stderr_too: bool = False) -> bytes:
    if shutil.which(argv[0]) is None:
        raise _Unavailable(f"{argv[0]} is not installed")
    completed = subprocess.run(argv, capture_output=True, timeout=_COMMAND_TIMEOUT_S, check=False)
    output = completed.stdout + (completed.stderr if stderr_too else b"")
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {completed.returncode}: "
                           f"{completed.stderr.decode(errors='replace').strip()[:300]}")
    return output


def _tail(path: Path, limit: int) -> bytes:
    with path.open("rb") as source:
        size = os.fstat(source.fileno()).st_size
        source.seek(max(0, size - limit))
        return source.read()


def _write_archive(output_dir: Path, prefix: str, contents: dict[str, bytes]) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{prefix}-", suffix=".partial", dir=output_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for name, content in contents.items():
                    info = tarfile.TarInfo(f"{prefix}/{name}")
                    info.size = len(content)
                    info.mode = 0o600
                    info.mtime = int(time.time())
                    tar.addfile(info, io.BytesIO(content))
            raw.flush()
            os.fsync(raw.fileno())
        final = output_dir / f"{prefix}.tar.gz"
        counter = 0
        while True:
            try:
                os.link(tmp, final)  # never replaces an earlier collection
                return final
            except FileExistsError:
                counter += 1
                final = output_dir / f"{prefix}-{counter}.tar.gz"
    finally:
        tmp.unlink(missing_ok=True)
