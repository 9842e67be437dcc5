"""Operator tooling behind the ``libervia`` subcommands the runbook's scripts call.

* :mod:`libervia.ops.backup`: ``libervia backup`` (``scripts/run_backup_frio.sh``), a consistent signed backup of
  ``BASE_DIR`` taken while the gateway serves;
* :mod:`libervia.ops.restore`: ``libervia restore`` (``scripts/restore_backup.sh``), verify, restore, re-verify;
* :mod:`libervia.ops.evidence`: ``libervia evidence`` (``scripts/collect_evidence.sh``), the runbook's evidence
  collection with secrets redacted;
* :mod:`libervia.ops.archive`: the backup archive format both backup and restore speak.

The CLI imports these modules lazily: none of them is needed to serve requests.
"""
