"""A serving process collects less often and leaves start-up's objects out of full collections."""

from __future__ import annotations

import subprocess
import sys


def test_configure_for_serving_freezes_start_up_and_raises_thresholds() -> None:
    # In a child: freezing is process-wide and would change this test process's own collector.
    code = ("import gc; from libervia.garbage_collection import THRESHOLDS, configure_for_serving; "
            "before = gc.get_freeze_count(); configure_for_serving(); "
            "assert gc.get_threshold() == THRESHOLDS, gc.get_threshold(); "
            "assert gc.get_freeze_count() > before + 1000, gc.get_freeze_count(); print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
