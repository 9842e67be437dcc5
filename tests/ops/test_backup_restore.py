"""Backup and restore of a real BASE_DIR written by the real embedded store: round trip, crash leftovers,
tampering, non-empty targets, and a backup taken while the store keeps appending."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import orjson
import pytest

from libervia.eventlog.chain import build_entries, encode_line
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.ops.archive import MANIFEST_NAME, SIGNATURE_NAME, sign_manifest
from libervia.ops.restore import (
    EXIT_ARCHIVE_REFUSED,
    EXIT_OK,
    EXIT_TARGET_NOT_EMPTY,
    EXIT_VERIFY_FAILED,
)
from libervia.storage import EventDraft, LogHead, Snapshot
from libervia_plugins.storage_files.eventlog import PENDING_WRITE, FileEventStore
from tests.ops.offline import run_backup, run_restore

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def drafts(count: int, tag: str = "") -> list[EventDraft]:
    return [EventDraft(evento="SITUACAO_CRIADA", entidade="SituacaoDecisoria", entidade_id=f"sit-{tag}{n}",
                       payload={"n": n, "texto": "decisão"}, actor="key_test", request_id=f"req-{tag}{n}")
            for n in range(count)]


def store(base_dir: Path) -> FileEventStore:
    # A checkpoint every 16 entries, so backups always carry checkpoints that restore must verify.
    return FileEventStore(base_dir, CheckpointSigner(KEY), checkpoint_every=16)


async def append_batches(base_dir: Path, batches: dict[str, list[int]], snapshot: str | None = None) -> None:
    events = store(base_dir)
    try:
        for tenant, sizes in batches.items():
            log = await events.open_log(tenant)
            for size in sizes:
                await log.append(drafts(size))
            if tenant == snapshot:
                head = await log.head()
                await log.save_snapshot(Snapshot(seq=head.seq, hash=head.hash, state=os.urandom(4096)))
    finally:
        await events.close()


def build_base_dir(base_dir: Path) -> None:
    config = base_dir / "config"
    config.mkdir(parents=True)
    registry = {"tenants": {"acme": {"id": "acme", "status": "active"},
                            "globex": {"id": "globex", "status": "suspended"}}}
    (config / "tenants.json").write_bytes(orjson.dumps(registry))
    (config / "key_usage.json").write_bytes(orjson.dumps({"key_abc": "2026-11-29T12:00:00.000Z"}))
    (config / "tenants.lock").touch()
    asyncio.run(append_batches(base_dir, {"acme": [40, 7], "globex": [3]}, snapshot="acme"))
    quarantine = base_dir / "tenants/globex/eventlog/quarantine"
    quarantine.mkdir()
    (quarantine / "20261129T120000000Z-1-abcdef.jsonl").write_bytes(b'{"seq":4,"id":"evt_')


def last_entry(log: Path) -> dict:
    return orjson.loads(log.read_bytes().splitlines()[-1])


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` with its content, lock files included."""
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def data_files(root: Path) -> dict[str, bytes]:
    return {name: content for name, content in tree(root).items() if not name.endswith(".lock")}


def archive_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def rewrite_archive(archive: Path, target: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return target


@pytest.fixture
def source(tmp_path: Path) -> Path:
    base_dir = tmp_path / "data"
    build_base_dir(base_dir)
    return base_dir


@pytest.fixture
def archive(source: Path, tmp_path: Path) -> Path:
    return run_backup(source, tmp_path / "backups", KEY, progress=False)


def test_round_trip_restores_every_file_byte_for_byte(source: Path, archive: Path, tmp_path: Path):
    assert archive.name.startswith("libervia-backup-") and archive.name.endswith(".tar.gz")
    assert archive.stat().st_mode & 0o077 == 0, "the archive holds key hashes: owner-only"

    target = tmp_path / "restored"
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_OK

    assert data_files(target) == data_files(source)
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "no staging or aside directory left"


def test_manifest_lists_hashes_and_chain_heads(source: Path, archive: Path):
    members = archive_members(archive)
    manifest = orjson.loads(members[MANIFEST_NAME])
    assert members[SIGNATURE_NAME].decode().strip() == sign_manifest(members[MANIFEST_NAME], KEY)
    listed = {item["path"]: item for item in manifest["files"]}
    assert listed.keys() == data_files(source).keys()
    for path, content in data_files(source).items():
        assert listed[path]["size"] == len(content)
        assert members[f"data/{path}"] == content
    acme_last = last_entry(source / "tenants/acme/eventlog/events.jsonl")
    assert manifest["chains"]["acme"] == {"seq": 47, "hash": acme_last["hash"]}
    assert {"checkpoints/acme.jsonl", "checkpoints/globex.jsonl", "tenants/acme/snapshots/latest.snapshot"} <= \
        listed.keys()
    assert manifest["chains"]["globex"]["seq"] == 3
    assert manifest["base_dir"] == str(source.resolve()) and manifest["created_at"].endswith("Z")


def test_two_backups_in_the_same_second_do_not_overwrite_each_other(source: Path, tmp_path: Path):
    first = run_backup(source, tmp_path / "backups", KEY, progress=False)
    second = run_backup(source, tmp_path / "backups", KEY, progress=False)
    assert first != second and first.exists() and second.exists()
    assert not list((tmp_path / "backups").glob(".*")), "no partial file left behind"


def test_a_torn_last_line_is_archived_as_quarantine_not_as_log(source: Path, tmp_path: Path):
    log = source / "tenants/acme/eventlog/events.jsonl"
    whole = log.read_bytes()
    torn = b'{"seq":48,"id":"evt_torn'
    with log.open("ab") as out:
        out.write(torn)
    archive = run_backup(source, tmp_path / "backups", KEY, progress=False)

    members = archive_members(archive)
    assert members["data/tenants/acme/eventlog/events.jsonl"] == whole
    assert [content for name, content in members.items() if "acme/eventlog/quarantine/" in name] == [torn]
    target = tmp_path / "restored"
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_OK
    assert (target / "tenants/acme/eventlog/events.jsonl").read_bytes() == whole


def test_a_group_write_cut_by_a_crash_is_left_out_like_the_store_does(source: Path, tmp_path: Path):
    """A writer killed inside its write can leave whole lines of an unfinished group, announced by the pending
    record in events.lock; the backup must cut where the store itself will cut when it next takes the lock."""
    eventlog = source / "tenants/acme/eventlog"
    log = eventlog / "events.jsonl"
    before = log.read_bytes()
    head_entry = last_entry(log)
    head = LogHead(seq=head_entry["seq"], hash=head_entry["hash"], last_append_at=head_entry["ts"])
    group = b"".join(encode_line(entry) for entry in build_entries("acme", head, drafts(3, "crash-")))
    partial = b"".join(group.splitlines(keepends=True)[:2])  # ends exactly on a line boundary
    with (eventlog / "events.lock").open("r+b") as lock:
        lock.write(PENDING_WRITE.pack(len(before), len(group), head.hash.encode()))
    with log.open("ab") as out:
        out.write(partial)

    archive = run_backup(source, tmp_path / "backups", KEY, progress=False)
    members = archive_members(archive)
    manifest = orjson.loads(members[MANIFEST_NAME])
    assert members["data/tenants/acme/eventlog/events.jsonl"] == before
    assert manifest["chains"]["acme"] == {"seq": head.seq, "hash": head.hash}
    assert partial in [content for name, content in members.items() if "acme/eventlog/quarantine/" in name]

    # The store, opening the same files, settles on exactly what the backup captured.
    async def settle() -> LogHead:
        events = store(source)
        try:
            return await (await events.open_log("acme")).head()
        finally:
            await events.close()

    assert asyncio.run(settle()).seq == head.seq
    assert log.read_bytes() == before


@pytest.mark.parametrize("position", [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, -5, -1])
def test_a_flipped_byte_is_refused_and_the_target_untouched(archive: Path, tmp_path: Path, position: float):
    raw = bytearray(archive.read_bytes())
    index = int(len(raw) * position) if position > 0 else len(raw) + int(position)
    raw[index] ^= 0x20
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(bytes(raw))

    target = tmp_path / "live"
    build_base_dir(target)
    before = tree(target)
    assert run_restore(tampered, target, KEY, force=True, progress=False) == EXIT_ARCHIVE_REFUSED
    assert tree(target) == before
    assert sorted(p.name for p in target.iterdir()) == ["checkpoints", "config", "tenants"]


def test_refused_archive_does_not_create_a_missing_target(archive: Path, tmp_path: Path):
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(bytes(raw))
    target = tmp_path / "absent"
    assert run_restore(tampered, target, KEY, force=False, progress=False) == EXIT_ARCHIVE_REFUSED
    assert not target.exists()


def test_edited_file_with_the_original_manifest_is_refused(archive: Path, tmp_path: Path):
    members = archive_members(archive)
    name = "data/tenants/acme/eventlog/events.jsonl"
    members[name] = members[name].replace(b"decis", b"DECIS", 1)
    forged = rewrite_archive(archive, tmp_path / "forged.tar.gz", members)
    assert run_restore(forged, tmp_path / "t", KEY, force=False, progress=False) == EXIT_ARCHIVE_REFUSED
    assert not (tmp_path / "t").exists()


def test_edited_manifest_without_the_key_is_refused(archive: Path, tmp_path: Path):
    members = archive_members(archive)
    name = "data/tenants/acme/eventlog/events.jsonl"
    members[name] = members[name].replace(b"decis", b"DECIS", 1)
    manifest = orjson.loads(members[MANIFEST_NAME])
    for item in manifest["files"]:
        if item["path"] == name.removeprefix("data/"):
            item["sha256"] = hashlib.sha256(members[name]).hexdigest()
    members[MANIFEST_NAME] = orjson.dumps(manifest)
    members[SIGNATURE_NAME] = sign_manifest(members[MANIFEST_NAME], OTHER_KEY).encode()
    forged = rewrite_archive(archive, tmp_path / "forged.tar.gz", members)
    assert run_restore(forged, tmp_path / "t", KEY, force=False, progress=False) == EXIT_ARCHIVE_REFUSED


def test_a_member_outside_the_manifest_is_refused(archive: Path, tmp_path: Path):
    members = archive_members(archive)
    members["data/../escape.txt"] = b"x"
    forged = rewrite_archive(archive, tmp_path / "forged.tar.gz", members)
    assert run_restore(forged, tmp_path / "t", KEY, force=False, progress=False) == EXIT_ARCHIVE_REFUSED
    assert not (tmp_path / "escape.txt").exists()


def test_wrong_key_is_refused(archive: Path, tmp_path: Path):
    assert run_restore(archive, tmp_path / "t", OTHER_KEY, force=False, progress=False) == EXIT_ARCHIVE_REFUSED


def test_non_empty_target_is_refused_without_force(archive: Path, tmp_path: Path):
    target = tmp_path / "live"
    target.mkdir()
    (target / "notes.txt").write_text("operator's file")
    before = tree(target)
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_TARGET_NOT_EMPTY
    assert tree(target) == before


def test_force_moves_the_old_content_aside(source: Path, archive: Path, tmp_path: Path):
    target = tmp_path / "live"
    target.mkdir()
    (target / "config").mkdir()
    (target / "config" / "tenants.json").write_text('{"old": true}')
    (target / "notes.txt").write_text("operator's file")
    old = tree(target)

    assert run_restore(archive, target, KEY, force=True, progress=False) == EXIT_OK

    asides = [p for p in target.iterdir() if p.name.startswith(".pre-restore-")]
    assert len(asides) == 1
    assert tree(asides[0]) == old
    restored = {name: content for name, content in data_files(target).items()
                if not name.startswith(".pre-restore-")}
    assert restored == data_files(source)


def test_a_broken_chain_restores_but_fails_verification(source: Path, tmp_path: Path):
    log = source / "tenants/globex/eventlog/events.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    entry = orjson.loads(lines[1])
    entry["payload"]["n"] = 999  # an edit the stored hash no longer covers
    lines[1] = encode_line(entry)
    log.write_bytes(b"".join(lines))
    archive = run_backup(source, tmp_path / "backups", KEY, progress=False)

    target = tmp_path / "restored"
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_VERIFY_FAILED
    assert (target / "tenants/globex/eventlog/events.jsonl").read_bytes() == log.read_bytes()


async def test_backup_while_the_store_appends_keeps_every_acknowledged_event(source: Path, tmp_path: Path):
    events = store(source)
    log = await events.open_log("busy")
    acknowledged: list[int] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        while not stop.is_set():
            stored = await log.append(drafts(3, f"c{n}-"))
            acknowledged.append(stored[-1]["seq"])

    clients = [asyncio.create_task(client(n)) for n in range(8)]
    try:
        while len(acknowledged) < 40:
            await asyncio.sleep(0.001)
        acknowledged_before_backup = max(acknowledged)
        archive = await asyncio.to_thread(run_backup, source, tmp_path / "backups", KEY, False)
        appended_during_backup = len(acknowledged)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        await events.close()
    assert appended_during_backup > 40

    target = tmp_path / "restored"
    assert await asyncio.to_thread(run_restore, archive, target, KEY, False, False) == EXIT_OK
    restored = (target / "tenants/busy/eventlog/events.jsonl").read_bytes().splitlines()
    seqs = [orjson.loads(line)["seq"] for line in restored]
    assert seqs == list(range(1, len(seqs) + 1))
    assert seqs[-1] >= acknowledged_before_backup
    assert seqs[-1] % 3 == 0, "the backup cut the log inside a batch"


def test_archive_is_a_plain_tar_gz(archive: Path):
    with gzip.open(archive) as unzipped, tarfile.open(fileobj=unzipped, mode="r|") as tar:
        names = [member.name for member in tar]
    assert names[-2:] == [MANIFEST_NAME, SIGNATURE_NAME]
    assert all(name.startswith("data/") for name in names[:-2])
