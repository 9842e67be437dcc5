"""Event log benchmark: durable appends vs the costs they avoid, verification vs raw hashing, opening a big log.

    python bench/eventlog_bench.py [--dir DIR] [--seconds 2] [--verify-events 200000] [--open-events 1000000]

Prints, measured in one run on the same disk:

1. appends/s with 1, 16 and 64 concurrent writers (one event per append), for
   * ``durable``: the store as deployed, fsync before acknowledging, concurrent appends sharing one fsync;
   * ``no fsync``: ``FileEventStore(durable=False)``, a switch that exists only for this comparison;
   * ``fsync/event``: ``FileEventStore(group_commit=False)``, one fsync per append (what group commit avoids);
2. verification throughput (full check from genesis, through the store and offline) vs reading the same bytes and
   doing only ``orjson.loads`` + SHA-256 per line;
3. the time to open a tenant with ``--open-events`` events and rebuild its state, with and without a snapshot.

Targets (issue 4): 64 writers durable >= 50 % of no fsync; verify >= 50 % of raw.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from libervia.eventlog.chain import build_entries, encode_line
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.verify import ChainCheck, verify_full
from libervia.storage import EventDraft, LogHead, Snapshot, TenantEventLog
from libervia_plugins.storage_files.eventlog import FileEventStore, LogFile

SIGNER = CheckpointSigner(b"bench-checkpoint-key-0123456789abcdef")
PAYLOAD = {"agente": "agt_123", "escopo": ["leitura", "escrita"], "limite": 1000, "nota": "operação de teste"}


def draft(n: int) -> EventDraft:
    return EventDraft("MANDATO_CONCEDIDO", "Mandato", f"man_{n}", {**PAYLOAD, "n": n}, actor="key_bench",
                      request_id=f"req_{n}")


# --- appends -----------------------------------------------------------------------------------------------------

async def append_rate(logs: Sequence[TenantEventLog], writers: int, seconds: float) -> float:
    """Appends per second: ``writers`` tasks, spread over ``logs``, each appending one event at a time."""
    stop = time.perf_counter() + seconds
    done = 0

    async def writer(w: int) -> None:
        nonlocal done
        log = logs[w % len(logs)]
        n = 0
        while time.perf_counter() < stop:
            await log.append([draft(w * 1_000_000 + n)])
            n += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*[writer(w) for w in range(writers)])
    return done / (time.perf_counter() - started)


async def appends_per_second(base: Path, writers: int, seconds: float, **switches: Any) -> float:
    store = FileEventStore(base, SIGNER, checkpoint_every=0, **switches)
    rate = await append_rate([await store.open_log("bench")], writers, seconds)
    await store.close()
    return rate


async def bench_appends(root: Path, seconds: float) -> list[tuple[int, dict[str, float]]]:
    modes: dict[str, dict[str, bool]] = {
        "durable": {},
        "no fsync": {"durable": False},
        "fsync/event": {"group_commit": False},
    }
    rows = []
    for writers in (1, 16, 64):
        rates = {}
        for name, switches in modes.items():
            base = root / f"appends-{writers}-{name.replace('/', '-').replace(' ', '-')}"
            rates[name] = await appends_per_second(base, writers, seconds, **switches)
            shutil.rmtree(base)
        rows.append((writers, rates))
    return rows


# --- a big log written directly ----------------------------------------------------------------------------------

def write_log(base: Path, count: int) -> Path:
    """A valid log of ``count`` events written straight to disk (appending them one by one would take long)."""
    path = base / "tenants" / "bench" / "eventlog" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    head = LogHead(0, None, None)
    with open(path, "wb") as handle:
        for start in range(0, count, 50_000):
            entries = build_entries("bench", head, [draft(n) for n in range(start, min(count, start + 50_000))])
            handle.write(b"".join(encode_line(e) for e in entries))
            head = LogHead(entries[-1]["seq"], entries[-1]["hash"], entries[-1]["ts"])
    return path


def timed(func: Callable[[], Any], repeat: int = 3) -> float:
    """Best of ``repeat`` runs: the least disturbed by whatever else the machine is doing."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - started)
    return best


def raw_hash_and_parse(path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for line in chunk.split(b"\n"):  # chunk edges split a line; irrelevant for the cost
                if line:
                    try:
                        orjson.loads(line)
                    except orjson.JSONDecodeError:
                        pass
                    hashlib.sha256(line).hexdigest()


def offline_check(path: Path) -> None:
    check = ChainCheck("bench", [], SIGNER)
    with LogFile.open_readonly(path) as log_file:
        for chunk in log_file.iter_lines(0, log_file.size()):
            check.feed_lines(chunk.lines)
    assert check.finish()["valid"]


async def store_check(base: Path) -> float:
    store = FileEventStore(base, SIGNER, checkpoint_every=0)
    log = await store.open_log("bench")
    started = time.perf_counter()
    result = await verify_full(log, [], SIGNER)
    elapsed = time.perf_counter() - started
    assert result["valid"]
    await store.close()
    return elapsed


async def bench_verify(root: Path, count: int) -> dict[str, float]:
    base = root / "verify"
    path = write_log(base, count)
    size_mb = path.stat().st_size / 1e6
    raw_hash_and_parse(path)  # warm the page cache so every contender reads from memory
    raw = timed(lambda: raw_hash_and_parse(path))
    offline = timed(lambda: offline_check(path))
    through_store = min([await store_check(base) for _ in range(3)])
    shutil.rmtree(base)
    return {"events": count, "MB": size_mb, "raw": size_mb / raw, "offline": size_mb / offline,
            "store": size_mb / through_store}


# --- opening -----------------------------------------------------------------------------------------------------

async def open_and_rebuild(base: Path, use_snapshot: bool) -> tuple[float, float, int]:
    """Seconds to open the log, seconds to open and read everything a rebuild needs, and entries read."""
    store = FileEventStore(base, SIGNER, checkpoint_every=0)
    started = time.perf_counter()
    log = await store.open_log("bench")
    opened = time.perf_counter() - started
    from_seq = 1
    if use_snapshot:
        snapshot = await log.load_snapshot()
        assert snapshot is not None
        from_seq = snapshot.seq + 1
    read = 0
    async for _ in log.entries(from_seq):
        read += 1
    rebuilt = time.perf_counter() - started
    await store.close()
    return opened, rebuilt, read


async def bench_open(root: Path, count: int) -> dict[str, tuple[float, float, int]]:
    base = root / "open"
    write_log(base, count)
    store = FileEventStore(base, SIGNER, checkpoint_every=0)
    log = await store.open_log("bench")
    [at] = [e async for e in log.entries(count - 1000, count - 1000)]
    await log.save_snapshot(Snapshot(at["seq"], at["hash"], b"projection state"))
    await store.close()
    results = {"without snapshot": await open_and_rebuild(base, False),
               "with snapshot": await open_and_rebuild(base, True)}
    shutil.rmtree(base)
    return results


# --- report ------------------------------------------------------------------------------------------------------

async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each append measurement")
    parser.add_argument("--verify-events", type=int, default=200_000)
    parser.add_argument("--open-events", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="eventlog-bench-", dir=args.dir))
    try:
        appends = await bench_appends(root, args.seconds)
        verify = await bench_verify(root, args.verify_events)
        opening = await bench_open(root, args.open_events)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("\nappends/s (one event per append)")
    print(f"{'writers':>8} {'durable':>10} {'no fsync':>10} {'fsync/event':>12} {'durable/no fsync':>17} "
          f"{'durable/fsync-per-event':>24}")
    for writers, rates in appends:
        print(f"{writers:>8} {rates['durable']:>10.0f} {rates['no fsync']:>10.0f} {rates['fsync/event']:>12.0f} "
              f"{rates['durable'] / rates['no fsync']:>16.0%} {rates['durable'] / rates['fsync/event']:>23.1f}x")
    print(f"\nverification of {verify['events']:,} events ({verify['MB']:.0f} MB), MB/s")
    print(f"  raw orjson.loads + SHA-256 per line    {verify['raw']:8.1f}")
    for label, key in (("full verify, offline (libervia verify)", "offline"),
                       ("full verify, through the store (API)", "store")):
        print(f"  {label:<38} {verify[key]:8.1f}  ({verify[key] / verify['raw']:.0%} of raw)")
    print(f"\nopening a tenant with {args.open_events:,} events")
    for name, (opened, rebuilt, read) in opening.items():
        print(f"  {name:<17}: open {opened * 1000:7.1f} ms, open + read for rebuild {rebuilt * 1000:9.1f} ms "
              f"({read:,} entries read)")
    durable64 = dict(appends)[64]
    print(f"\ntargets: 64 writers durable/no fsync = {durable64['durable'] / durable64['no fsync']:.0%} (>= 50%), "
          f"verify/raw = {verify['offline'] / verify['raw']:.0%} offline, "
          f"{verify['store'] / verify['raw']:.0%} through the store (>= 50%)")


if __name__ == "__main__":
    asyncio.run(main())
