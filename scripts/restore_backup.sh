#!/usr/bin/env bash
# Restore a backup made by run_backup_frio.sh into BASE_DIR. Stop the gateway first.
# Verifies the manifest signature and every file's SHA-256 before touching anything, refuses a non-empty
# BASE_DIR unless --force (the current content is then moved to BASE_DIR/.pre-restore-<time>-*/, never deleted),
# and verifies every tenant's chain after restoring. Exit code 0 only if all of that succeeded.
# Usage: ./scripts/restore_backup.sh <backup.tar.gz> [--force] [--base-dir DIR]
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 <backup.tar.gz> [--force] [--base-dir DIR]" >&2
    exit 64
fi
if command -v libervia >/dev/null 2>&1; then
    exec libervia restore "$@"
fi
exec "${PYTHON:-python3}" -m libervia restore "$@"
