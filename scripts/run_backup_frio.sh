#!/usr/bin/env bash
# Consistent, signed backup of BASE_DIR (registry, every tenant log, checkpoints, snapshots) into a tar.gz.
# Safe while the gateway serves. Needs the same LIBERVIA_AUTH_PEPPER (or LIBERVIA_CHECKPOINT_KEY) as the gateway:
# the archive is signed with its checkpoint key, and only that key can restore it.
# Usage: ./scripts/run_backup_frio.sh [--base-dir DIR] [--output DIR]     (default output: BASE_DIR/../backups)
# Prints the archive's path.
set -euo pipefail

if command -v libervia >/dev/null 2>&1; then
    exec libervia backup "$@"
fi
exec "${PYTHON:-python3}" -m libervia backup "$@"
