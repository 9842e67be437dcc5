"""A gateway-like writer in its own process, for the crash and multi-process tests of the file event store.

    python append_writer.py BASE_DIR TENANT TAG BATCHES CONCURRENCY [--wait]

``CONCURRENCY`` tasks append batches of 1 to 3 events to ``TENANT`` until ``BATCHES`` batches are stored (0 = until
killed). After each append returns (that is, once it is durable), one JSON line goes to stdout:
``{"batch": "<TAG>-<k>", "seqs": [...], "ids": [...]}``. The tests kill this process with SIGKILL at random points
and then check that every batch it acknowledged is in the log, whole. With ``--wait`` it opens the log, prints
``ready`` and waits for a line on stdin before appending, so that several writers can start at the same moment.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

import orjson

from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.storage import EventDraft
from libervia_plugins.storage_files.eventlog import FileEventStore

KEY = b"crash-test-checkpoint-key-0123456789"


async def main(base_dir: Path, tenant: str, tag: str, batches: int, concurrency: int, wait: bool) -> None:
    store = FileEventStore(base_dir, CheckpointSigner(KEY), checkpoint_every=500)
    log = await store.open_log(tenant)
    counter = itertools.count()
    out = sys.stdout.buffer
    if wait:
        out.write(b"ready\n")
        out.flush()
        await asyncio.to_thread(sys.stdin.readline)

    async def worker() -> None:
        while True:
            k = next(counter)
            if batches and k >= batches:
                return
            size = 1 + k % 3
            batch = f"{tag}-{k}"
            drafts = [EventDraft("CRASH_TEST", "Batch", batch, {"batch": batch, "size": size, "i": i, "pad": "x" * 200})
                      for i in range(size)]
            stored = await log.append(drafts)
            out.write(orjson.dumps({"batch": batch, "seqs": [e["seq"] for e in stored],
                                    "ids": [e["id"] for e in stored]}) + b"\n")
            out.flush()

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    await store.close()


if __name__ == "__main__":
    base, tenant_id, writer_tag, count, tasks = sys.argv[1:6]
    asyncio.run(main(Path(base), tenant_id, writer_tag, int(count), int(tasks), "--wait" in sys.argv[6:]))
