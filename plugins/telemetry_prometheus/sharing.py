"""Metrics summed over the gateway processes of one machine, through one small file per process.

Every process that shares the directory (by default ``<BASE_DIR>/telemetry``: workers of one ``serve``, or
separate gateways on one BASE_DIR) publishes its own totals to ``<pid>-<random>.json`` (written whole, then
renamed over the previous one, so a reader never sees half a file) at most every ``interval_s`` and only when
they changed, and reads the other files whose inode, size or mtime changed since it last looked. A scrape on
any process then answers the machine's totals without touching the disk.

prometheus-client's multiprocess mode was the other candidate: it keeps every series in an mmap'd file per
process and metric type and re-reads and re-parses all of them on every scrape, which at 1,000 tenants and a
few workers costs more than the 3 ms a scrape may take; here a scrape reads nothing, and the others' totals are
at most ``interval_s`` old, far inside any Prometheus scrape interval.

The file of a process that died stays and stays counted, so no counter goes down when a worker dies. At start a
process folds the files of dead processes into ``retired.json`` (under a lock, listing what it folded so that
no reader counts a file twice while it is being removed), so restarts do not accumulate files. Gauges of a dead
process are not counted: ``active_instances`` is summed over the processes that are alive. Processes must see
each other's pids (one machine, one pid namespace).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from libervia_plugins.telemetry_prometheus.metrics import Totals

RETIRED = "retired.json"


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class SharedTotals:
    """This process's file in the shared directory, and what the other files hold."""

    def __init__(self, directory: Path, bucket_count: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.bucket_count = bucket_count
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}.json"
        self.path = directory / self.name
        self._seen: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._published_version = -1

    def publish(self, own: Totals, version: int, active_instances: int) -> None:
        if version == self._published_version:
            return
        data = {"pid": os.getpid(), "buckets": self.bucket_count, "active_instances": active_instances,
                **own.to_json()}
        _write_atomically(self.path, orjson.dumps(data))
        self._published_version = version

    def _read_others(self) -> bool:
        """Re-read the files that changed; whether any did (or one went away)."""
        changed = False
        present = set()
        for entry in os.scandir(self.directory):
            name = entry.name
            if not name.endswith(".json") or name.startswith(".") or name == self.name:
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            present.add(name)
            stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            known = self._seen.get(name)
            if known is not None and known[0] == stamp:
                continue
            try:
                parsed = orjson.loads(Path(entry.path).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # replaced or removed while we read: the next round sees the new one
            if isinstance(parsed, dict):
                self._seen[name] = (stamp, parsed)
                changed = True
        for gone in set(self._seen) - present:
            del self._seen[gone]
            changed = True
        return changed

    def collect(self) -> tuple[Totals | None, int]:
        """The others' summed totals when they changed since the last call (else None), and the number of
        Core instances the live ones run."""
        changed = self._read_others()
        counted = self._counted()
        active = sum(int(data.get("active_instances", 0)) for name, data in counted
                     if name != RETIRED and _alive(data.get("pid")))
        if not changed:
            return None, active
        totals = Totals(self.bucket_count)
        for _, data in counted:
            totals.merge(Totals.from_json(data, self.bucket_count))
        return totals, active

    def _counted(self) -> list[tuple[str, dict[str, Any]]]:
        retired = self._seen.get(RETIRED)
        folded = set(retired[1].get("merged", [])) if retired else set()
        return [(name, data) for name, (_, data) in self._seen.items()
                if name not in folded and data.get("buckets") == self.bucket_count]

    @contextlib.contextmanager
    def _retired(self) -> Iterator[tuple[Path, dict[str, Any], Totals]]:
        """``retired.json`` under the directory's lock: its path, its document and its totals."""
        with open(self.directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            retired_path = self.directory / RETIRED
            try:
                retired = orjson.loads(retired_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                retired = {}
            totals = Totals.from_json(retired, self.bucket_count) if retired.get("buckets") == self.bucket_count \
                else Totals(self.bucket_count)
            yield retired_path, retired, totals

    def _write_retired(self, path: Path, merged: list[str], totals: Totals) -> None:
        _write_atomically(path, orjson.dumps({"pid": 0, "buckets": self.bucket_count, "merged": merged,
                                              **totals.to_json()}))

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop a purged tenant's series from what dead processes left (each live process drops its own), so
        that a new tenant of the same id does not start from the old one's counts. Dead processes' files not
        folded yet are folded first: they are counted until then."""
        with self._retired() as (path, retired, totals):
            folded = self._fold_dead(retired, totals)
            if not retired and not folded:
                return
            totals.drop_tenant(tenant_id)
            self._finish_retired(path, retired, totals, folded)

    def retire_dead(self) -> None:
        """Fold the files of processes that are gone into ``retired.json`` and remove them."""
        with self._retired() as (path, retired, totals):
            folded = self._fold_dead(retired, totals)
            if folded:
                self._finish_retired(path, retired, totals, folded)

    def _fold_dead(self, retired: dict[str, Any], totals: Totals) -> list[Path]:
        """Add the files of processes that are gone to ``totals`` (each once); the files folded."""
        already = set(retired.get("merged", []))
        folded = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name in (RETIRED, self.name):
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if _alive(data.get("pid")):
                continue
            if path.name not in already and data.get("buckets") == self.bucket_count:
                totals.merge(Totals.from_json(data, self.bucket_count))
            folded.append(path)
        return folded

    def _finish_retired(self, path: Path, retired: dict[str, Any], totals: Totals, folded: list[Path]) -> None:
        """Write ``retired.json``, then remove the files it now holds (named in it until they are gone)."""
        merged = [p.name for p in folded] if folded else list(retired.get("merged", []))
        self._write_retired(path, merged, totals)
        for folded_path in folded:
            with contextlib.suppress(FileNotFoundError):
                folded_path.unlink()

