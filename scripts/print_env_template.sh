#!/usr/bin/env bash
# Print the gateway's environment template: every variable it reads, required ones first, with defaults.
# Usage: ./scripts/print_env_template.sh [> contrib/libervia.env]
set -euo pipefail

if command -v libervia >/dev/null 2>&1; then
    exec libervia env-template "$@"
fi
# Not installed as a command (e.g. a source checkout): run the package with whichever Python is given.
exec "${PYTHON:-python3}" -m libervia env-template "$@"
