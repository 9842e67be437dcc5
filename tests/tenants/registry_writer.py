"""Child process for the crash test: hammers the file registry with updates until it is killed."""

import asyncio
import sys
from pathlib import Path

from libervia_plugins.storage_files.registry import FileRegistryStore


async def main(base_dir: str) -> None:
    store = FileRegistryStore(Path(base_dir))
    store.prepare()
    n = 0
    while True:
        n += 1

        def mutate(doc: dict, n: int = n) -> None:
            doc["tenants"][f"tenant-{n % 50:03d}"] = {"id": f"tenant-{n % 50:03d}", "name": "x" * (n % 3000),
                                                     "status": "active", "createdAt": str(n), "keys": []}
            doc["counter"] = n

        await store.update(mutate)
        print(n, flush=True)


asyncio.run(main(sys.argv[1]))
