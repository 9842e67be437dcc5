"""The embedded store's side of restore and migration through the storage protocol: ``import_log`` (whole,
resumable, refusing a diverging log) and ``set_aside``."""

from __future__ import annotations

from pathlib import Path

import pytest

from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.storage import CorruptStoreError, FileArchiving, LogImporter
from libervia_plugins.storage_files import FilesStorage
from tests.ops.test_backup_restore import KEY, append_batches

SIGNER = CheckpointSigner(KEY)


async def entries_of(base_dir: Path, tenant: str) -> list[dict]:
    storage = FilesStorage(base_dir, SIGNER, 16, 0)
    await storage.start()
    try:
        log = await storage.events.open_log(tenant)
        return [entry async for entry in log.entries(1)]
    finally:
        await storage.close()


async def iterate(entries: list[dict]):  # type: ignore[no-untyped-def]
    for entry in entries:
        yield entry


async def test_import_log_is_whole_resumable_and_refuses_another_log(tmp_path: Path) -> None:
    await append_batches(tmp_path / "source", {"acme": [20]})
    entries = await entries_of(tmp_path / "source", "acme")
    target = FilesStorage(tmp_path / "target", SIGNER, 16, 0)
    assert isinstance(target, LogImporter) and isinstance(target, FileArchiving)
    await target.start()
    try:
        assert await target.import_log("acme", iterate(entries[:12]), []) == 12
        assert await target.import_log("acme", iterate(entries), []) == 8
        assert await target.import_log("acme", iterate(entries), []) == 0
        await append_batches(tmp_path / "other", {"acme": [25]})
        with pytest.raises(CorruptStoreError):
            await target.import_log("acme", iterate(await entries_of(tmp_path / "other", "acme")), [])
    finally:
        await target.close()
    assert await entries_of(tmp_path / "target", "acme") == entries
    assert not list((tmp_path / "target").rglob(".import-*")), "no temporary file left behind"


async def test_set_aside_keeps_the_old_content_and_leaves_an_empty_store(tmp_path: Path) -> None:
    await append_batches(tmp_path / "data", {"acme": [5]})
    storage = FilesStorage(tmp_path / "data", SIGNER, 16, 0)
    await storage.start()
    try:
        aside = Path(await storage.set_aside())
        assert await storage.events.tenant_ids() == []
        assert (aside / "tenants" / "acme" / "eventlog" / "events.jsonl").is_file()
    finally:
        await storage.close()
