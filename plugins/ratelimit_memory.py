"""Embedded rate limiter (the default): GCRA in a SQLite table that every gateway process on the machine shares.

Workers of one ``libervia serve --workers N`` (or several gateways over one ``BASE_DIR``) enforce one limit
between them: each key's state is one row of ``BASE_DIR/ratelimit.sqlite3``, decided and written by one UPSERT,
which SQLite serialises across processes. The database is in WAL mode with ``synchronous=OFF``: a limiter's state
need not survive a power cut (losing it means a full quota), so no hit waits for the disk, only for SQLite's
write lock, which is held for the few microseconds of one statement. Time is the wall clock (shared by every
process, and meaningful across restarts); keys are arbitrary strings (``tenant:<id>``, ``authfail:<address>``).

GCRA (the generic cell rate algorithm) keeps one number per key, the *theoretical arrival time* ``tat``: the
moment at which the key's quota would be whole again. With a limit of ``L`` requests per minute the emission
interval is ``T = 60 / L`` seconds (to the nanosecond, see :class:`Gcra`) and the tolerance ``tau = 60 - T``.
A request at time ``now`` is allowed when ``max(tat, now) + T - 60 <= now``; if it is, ``tat`` becomes
``max(tat, now) + T``. A rejected request leaves ``tat`` untouched, so it costs nothing.

Exact guarantee (for a key whose limit does not change):

* at most ``L`` requests are accepted back-to-back: a client idle for a minute may spend its whole minute at
  once, never more, and there is no window edge at which a second burst opens (the classic fixed-window flaw);
* in any interval of ``w`` seconds at most ``floor(L * (w + 60) / 60)`` requests are accepted: the burst plus
  what flowed back at the steady rate during ``w``. Over ``m`` minutes that is at most ``L * (m + 1)``, so the
  long-run rate is exactly ``L`` per minute;
* in particular a single 60-second sliding window can hold up to ``2L - 1`` accepted requests, but only right
  after an idle minute (a full burst, then the steady rate). A limiter that guarantees ``<= L`` in every
  sliding minute cannot also refill smoothly; it must remember every request of the last minute.

Size: a row whose ``tat`` has passed means "full quota", exactly like a missing row, so a sweep at most once per
clock-minute (per process) deletes it. A key lives at most about two minutes after its last accepted request.

Leases: a hit costs an UPSERT on the shared file, about 11 µs of the loop plus the write's system calls: measured
at a third of a key-authenticated read's CPU. A limit of ``2 * LEASE_FRACTION`` requests per minute or more is
therefore charged in leases (:class:`libervia.ratelimit.Leases`, which says exactly what the guarantee above
loses: at most one lease, a thousandth of the limit, per process): one transaction takes a lease's requests at
once and this process spends them with no further statement. A smaller limit is charged request by request,
exactly as described.

Why SQLite rather than shared memory and a file lock: it is in the standard library, it is crash-safe against a
worker killed mid-write, and a hit measured about 20 µs on this machine (40 µs with two processes hitting one
key at once; a dict costs 2 µs), against a few hundred µs for the request around it
(``bench/ratelimit_shared_bench.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from libervia import hookimpl, telemetry
from libervia.ratelimit import NS_PER_S, PERIOD_S, Gcra, Leases, RateDecision, lease_size
from libervia.schemas import load_schema

if TYPE_CHECKING:
    from libervia.gateway import Gateway

PLUGIN_NAME = "ratelimit_memory"
DATABASE_NAME = "ratelimit.sqlite3"
# A writer waits this long for another process's write lock (held for one statement) before the hit fails open:
# the wait blocks the event loop, so it must stay short.
BUSY_TIMEOUT_MS = 100
WARNING_INTERVAL_S = 30.0

# Mirrors Gcra.admit in one statement. SET expressions all see the old row, so ``hit`` and ``tat`` are decided
# on the same state; ``hit`` takes this call's unique nonce only when the request is allowed, which is how the
# caller tells "allowed" from "rejected" in what RETURNING gives back. Parameters are numbered, not named (binding
# a tuple skips a dict lookup per parameter on every hit): ?1 key, ?2 now, ?3 interval, ?4 window, ?5 nonce.
_HIT = """
INSERT INTO gcra (key, tat, hit) VALUES (?1, ?2 + ?3, ?5)
ON CONFLICT (key) DO UPDATE SET
  hit = CASE WHEN max(tat, ?2) + ?3 - ?4 <= ?2 THEN ?5 ELSE hit END,
  tat = CASE WHEN max(tat, ?2) + ?3 - ?4 <= ?2 THEN max(tat, ?2) + ?3 ELSE tat END
RETURNING tat, hit
"""


class MemoryRateLimiter:
    """GCRA limiter over SQLite, shared by every process that opens the same ``path``.

    ``path`` None keeps the state in a private in-memory database (one process: tests, benchmarks). ``clock``
    (seconds) is for tests; every process sharing a file must share the clock, which the wall clock is.
    """

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time,
                 on_backend_error: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._on_backend_error = on_backend_error
        self._next_warning = 0.0
        # isolation_level None: autocommit, each UPSERT is its own transaction. check_same_thread off because the
        # gateway may close from another thread than the one that opened; calls never overlap.
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None,
                                   timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS gcra (key TEXT PRIMARY KEY, tat INTEGER NOT NULL, "
                         "hit INTEGER NOT NULL) WITHOUT ROWID")
        # Unique across the processes sharing the file: the pid in the high bits, a counter below.
        self._nonces = itertools.count((os.getpid() & 0x3FFFFF) << 40)
        self._next_sweep = 0
        self._leases = Leases()
        # Per limit, its GCRA and lease size (tenants' limits are few; this runs on every request).
        self._plans: dict[int, tuple[Gcra, int]] = {}

    async def hit(self, key: str, limit_per_minute: int) -> RateDecision:
        return self.hit_now(key, limit_per_minute)

    def hit_now(self, key: str, limit_per_minute: int) -> RateDecision:
        """:meth:`hit` without a coroutine (the host calls this one on every request: nothing here waits)."""
        plan = self._plans.get(limit_per_minute)
        if plan is None:
            plan = self._plans[limit_per_minute] = (Gcra.of(limit_per_minute), lease_size(limit_per_minute))
        gcra, size = plan
        now = round(self._clock() * NS_PER_S)
        if now >= self._next_sweep:
            self._sweep(now)
        if not size:
            return self._hit_one(gcra, key, now)
        decision = self._leases.spend(gcra, key, now)
        if decision is not None:
            return decision
        try:
            granted, tat = self._take(gcra, key, now, size)
        except sqlite3.Error as exc:
            return self._failed_open(gcra, exc)
        return self._leases.taken(gcra, key, granted, tat, now)

    def _take(self, gcra: Gcra, key: str, now: int, size: int) -> tuple[int, int]:
        """Up to ``size`` requests from the shared state in one transaction: how many, and the key's ``tat``
        after them."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT tat FROM gcra WHERE key = ?", (key,)).fetchone()
            granted, base = gcra.grant(row[0] if row is not None else None, now, size)
            tat = base + granted * gcra.interval
            if granted:
                db.execute("INSERT INTO gcra (key, tat, hit) VALUES (?1, ?2, 0) "
                           "ON CONFLICT (key) DO UPDATE SET tat = ?2", (key, tat))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return granted, tat

    def _failed_open(self, gcra: Gcra, exc: sqlite3.Error) -> RateDecision:
        # The shared file is unusable (disk full, read-only, locked past the timeout): a rate limit must not
        # turn into a 500 for every request, so the request passes, as the Redis limiter's fail-open does.
        self._warn(exc)
        if self._on_backend_error is not None:
            self._on_backend_error("allowed")
        return gcra.decision(True, gcra.interval, 0)

    def _hit_one(self, gcra: Gcra, key: str, now: int) -> RateDecision:
        nonce = next(self._nonces)
        try:
            tat, hit = self._db.execute(_HIT, (key, now, gcra.interval, gcra.window, nonce)).fetchone()
        except sqlite3.Error as exc:
            return self._failed_open(gcra, exc)
        return gcra.decision(hit == nonce, tat, now)

    def _warn(self, exc: BaseException) -> None:
        moment = time.monotonic()
        if moment >= self._next_warning:
            self._next_warning = moment + WARNING_INTERVAL_S
            logger.warning("rate limiter: its shared state is unusable ({}: {}); requests are allowed until it "
                           "answers", type(exc).__name__, exc)

    def __len__(self) -> int:
        """Number of keys currently held (for tests of the size bound)."""
        return int(self._db.execute("SELECT count(*) FROM gcra").fetchone()[0])

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + PERIOD_S * NS_PER_S
        self._leases.prune(now)
        try:
            self._db.execute("DELETE FROM gcra WHERE tat <= ?", (now,))
        except sqlite3.Error as exc:
            # Like a hit, the sweep must not turn a locked or unusable file into a 500; the next one retries.
            self._warn(exc)

    def forget(self, key: str) -> None:
        """Drop ``key``'s state here and in the shared file (its tenant was purged: a new tenant of the same id
        starts with a whole quota)."""
        self._leases.drop(key)
        try:
            self._db.execute("DELETE FROM gcra WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            self._warn(exc)   # the row expires by itself within the minute

    async def close(self) -> None:
        self._db.close()


@hookimpl
def libervia_config_schema() -> dict[str, Any]:
    return load_schema(f"plugins/{PLUGIN_NAME}")


@hookimpl
def libervia_rate_limiter(gateway: Gateway) -> MemoryRateLimiter:
    configured = gateway.plugin_config(PLUGIN_NAME).get("path")
    path = Path(configured) if configured else Path(gateway.settings.base_dir) / DATABASE_NAME
    return MemoryRateLimiter(
        path, on_backend_error=lambda outcome: gateway.count(telemetry.RATE_LIMITER_ERROR, outcome=outcome))
