"""Run the tests from a checkout without installing the package (CI runs them from the gateway's repo)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
