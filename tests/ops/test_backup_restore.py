"""Backup and restore of a real BASE_DIR: round trip, tampering, non-empty targets, concurrent appends."""

from __future__ import annotations

import fcntl
import gzip
import io
import os
import tarfile
import threading
from pathlib import Path

import orjson
import pytest

from libervia.eventlog.chain import build_entries, encode_line
from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.ops.archive import MANIFEST_NAME, SIGNATURE_NAME, sign_manifest
from libervia.ops.backup import run_backup
from libervia.ops.restore import (
    EXIT_ARCHIVE_REFUSED,
    EXIT_OK,
    EXIT_TARGET_NOT_EMPTY,
    EXIT_VERIFY_FAILED,
    run_restore,
)
from libervia.storage import EventDraft, LogHead

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def draft(n: int) -> EventDraft:
    return EventDraft(evento="SITUACAO_CRIADA", entidade="SituacaoDecisoria", entidade_id=f"sit-{n}",
                      payload={"n": n, "texto": "decisão"}, actor="key_test", request_id=f"req-{n}")


class TenantLog:
    """Appends to a tenant's log the way the embedded store does: under events.lock, fsynced before release."""

    def __init__(self, base_dir: Path, tenant: str):
        self.tenant = tenant
        self.dir = base_dir / "tenants" / tenant / "eventlog"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "events.jsonl"
        self.lock = self.dir / "events.lock"
        self.lock.touch()
        self.head = LogHead(seq=0, hash=None, last_append_at=None)

    def append(self, count: int) -> list[dict]:
        fd = os.open(self.lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = build_entries(self.tenant, self.head, [draft(self.head.seq + i) for i in range(count)])
            with self.path.open("ab") as out:
                out.write(b"".join(encode_line(entry) for entry in entries))
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.close(fd)
        self.head = LogHead(seq=entries[-1]["seq"], hash=entries[-1]["hash"], last_append_at=entries[-1]["ts"])
        return entries


def checkpoint(base_dir: Path, log: TenantLog) -> None:
    signed = CheckpointSigner(KEY).sign(log.tenant, log.head.seq, log.head.hash)
    path = base_dir / "checkpoints" / f"{log.tenant}.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("ab") as out:
        out.write(orjson.dumps(signed.as_dict()) + b"\n")


def build_base_dir(base_dir: Path) -> dict[str, TenantLog]:
    config = base_dir / "config"
    config.mkdir(parents=True)
    registry = {"tenants": {"acme": {"id": "acme", "status": "active"}, "globex": {"id": "globex",
                                                                                   "status": "suspended"}}}
    (config / "tenants.json").write_bytes(orjson.dumps(registry))
    (config / "key_usage.json").write_bytes(orjson.dumps({"key_abc": "2026-11-29T12:00:00.000Z"}))
    (config / "tenants.lock").touch()
    logs = {name: TenantLog(base_dir, name) for name in ("acme", "globex")}
    logs["acme"].append(40)
    checkpoint(base_dir, logs["acme"])
    logs["acme"].append(7)
    logs["globex"].append(3)
    checkpoint(base_dir, logs["globex"])
    snapshots = base_dir / "tenants" / "acme" / "snapshots"
    snapshots.mkdir()
    (snapshots / "snapshot-40.bin").write_bytes(os.urandom(4096))
    quarantine = logs["globex"].dir / "quarantine"
    quarantine.mkdir()
    (quarantine / "torn-20261129T120000Z.bin").write_bytes(b'{"seq":4,"id":"evt_')
    return logs


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
    acme_last = orjson.loads((source / "tenants/acme/eventlog/events.jsonl").read_bytes().splitlines()[-1])
    assert manifest["chains"]["acme"] == {"seq": 47, "hash": acme_last["hash"]}
    assert manifest["chains"]["globex"]["seq"] == 3
    assert manifest["base_dir"] == str(source.resolve()) and manifest["created_at"].endswith("Z")


def test_two_backups_in_the_same_second_do_not_overwrite_each_other(source: Path, tmp_path: Path):
    first = run_backup(source, tmp_path / "backups", KEY, progress=False)
    second = run_backup(source, tmp_path / "backups", KEY, progress=False)
    assert first != second and first.exists() and second.exists()
    assert not list((tmp_path / "backups").glob(".*")), "no partial file left behind"


def test_torn_tail_is_left_out_of_the_backup(source: Path, tmp_path: Path):
    log = source / "tenants/acme/eventlog/events.jsonl"
    whole = log.read_bytes()
    with log.open("ab") as out:
        out.write(b'{"seq":48,"id":"evt_torn')
    archive = run_backup(source, tmp_path / "backups", KEY, progress=False)

    assert archive_members(archive)["data/tenants/acme/eventlog/events.jsonl"] == whole
    target = tmp_path / "restored"
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_OK
    assert (target / "tenants/acme/eventlog/events.jsonl").read_bytes() == whole


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
            import hashlib

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


def test_backup_while_a_writer_appends_keeps_every_acknowledged_event(source: Path, tmp_path: Path):
    log = TenantLog(source, "busy")
    log.append(1)
    acknowledged: list[int] = []
    stop = threading.Event()
    started = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            entries = log.append(3)
            acknowledged.append(entries[-1]["seq"])
            if len(acknowledged) == 20:
                started.set()
        started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert started.wait(timeout=60), "the writer never got going"
        acked_before_backup = acknowledged[-1]
        archive = run_backup(source, tmp_path / "backups", KEY, progress=False)
    finally:
        stop.set()
        thread.join()

    target = tmp_path / "restored"
    assert run_restore(archive, target, KEY, force=False, progress=False) == EXIT_OK
    restored = (target / "tenants/busy/eventlog/events.jsonl").read_bytes().splitlines()
    seqs = [orjson.loads(line)["seq"] for line in restored]
    assert seqs == list(range(1, len(seqs) + 1))
    assert seqs[-1] >= acked_before_backup
    assert seqs[-1] % 3 == 1, "the backup cut the log inside a batch"


def test_archive_is_a_plain_tar_gz(archive: Path):
    with gzip.open(archive) as unzipped, tarfile.open(fileobj=unzipped, mode="r|") as tar:
        names = [member.name for member in tar]
    assert names[-2:] == [MANIFEST_NAME, SIGNATURE_NAME]
    assert all(name.startswith("data/") for name in names[:-2])
