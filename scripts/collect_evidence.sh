#!/usr/bin/env bash
# The runbook's evidence collection: health, readiness, metrics (text and JSON, with ADMIN_TOKEN), processes,
# disk, memory, filtered environment, Docker state and container log when Docker is there, and the gateway's log
# file if given. Secrets are redacted. Prints the path of the resulting tar.gz.
# Usage: ./scripts/collect_evidence.sh [--url http://localhost:3000] [--output /tmp] [--log-file FILE]
set -euo pipefail

if command -v libervia >/dev/null 2>&1; then
    exec libervia evidence "$@"
fi
exec "${PYTHON:-python3}" -m libervia evidence "$@"
