"""A serving process hands the interpreter back to the event loop's thread sooner than CPython's default."""

from __future__ import annotations

import subprocess
import sys


def test_configure_for_serving_shortens_the_switch_interval() -> None:
    # In a child: the interval is process-wide.
    code = ("import sys; from libervia.gil_sharing import SWITCH_INTERVAL_S, configure_for_serving; "
            "assert sys.getswitchinterval() > SWITCH_INTERVAL_S; configure_for_serving(); "
            "assert sys.getswitchinterval() == SWITCH_INTERVAL_S, sys.getswitchinterval(); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
