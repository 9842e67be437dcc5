"""docs/openapi.json is exactly what the loaded routes and request schemas generate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gateway_process import REPO_ROOT, base_env


def test_openapi_document_is_current(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "libervia", "openapi"], env=base_env(tmp_path / "data", 3000),
                            capture_output=True, text=True, timeout=60, check=True)
    generated = json.loads(result.stdout)
    committed = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    assert generated == committed, "regenerate with: libervia openapi > docs/openapi.json"
    assert generated["paths"]["/api/v1/decisoes"]["post"]["requestBody"]
    assert "/api/v1/tenants/{tenant}/decisoes" in generated["paths"]
