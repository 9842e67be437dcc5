"""A serving process hands the interpreter back to the event loop's thread sooner than CPython's default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_runner_every_serving_path_builds_shortens_the_switch_interval(tmp_path: Path) -> None:
    # In a child: the interval is process-wide. What is checked is the serving path (make_runner, used by the
    # single process and by every worker), not only the function that sets the interval.
    code = f"""
import sys
from aiohttp import web
from libervia.app import SCOPE_KEY
from libervia.gil_sharing import SWITCH_INTERVAL_S
from libervia.server import make_runner
from libervia.testing.gateway import build_settings
from pathlib import Path
assert sys.getswitchinterval() > SWITCH_INTERVAL_S
app = web.Application()
app[SCOPE_KEY] = None   # the runner is only built, never started
make_runner(app, build_settings({{}}, Path({str(tmp_path)!r})), 1.0)
assert sys.getswitchinterval() == SWITCH_INTERVAL_S, sys.getswitchinterval()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
