"""The tenant event log's format, shared by every event store: the chain rule, checkpoints and verification.

* :mod:`libervia.eventlog.chain`: canonical JSON, the hash rule, event ids, building entries from drafts.
* :mod:`libervia.eventlog.checkpoints`: HMAC-signed checkpoints that pin a log against truncation and rewrites.
* :mod:`libervia.eventlog.group_commit` and :mod:`libervia.eventlog.stores`: what every store shares (the
  group-commit queue, chaining the next group on the head, the append guard, the open-logs registry).
* :mod:`libervia.eventlog.verify`: full and fast verification, export manifests, replay aggregates, offline check.

Stores (``plugins/storage_files``, ``plugins/storage_postgres``) only decide where bytes live; what an entry is and
how it is proven comes from here. ``docs/EVENTLOG.md`` describes the format for people re-verifying a log by hand.
"""

from libervia.eventlog.chain import ENTRY_FIELDS, build_entries, canonical_json, entry_hash, new_event_id
from libervia.eventlog.checkpoints import CheckpointSigner, derive_checkpoint_key

__all__ = [
    "ENTRY_FIELDS",
    "CheckpointSigner",
    "build_entries",
    "canonical_json",
    "derive_checkpoint_key",
    "entry_hash",
    "new_event_id",
]
