"""``libervia verify`` on the embedded store: tenant logs checked from the files alone, without a gateway.

The chain rule and checkpoint checks are the host's (:class:`libervia.eventlog.verify.ChainCheck`); this module
only knows where the files are and how to read them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libervia.eventlog.checkpoints import CheckpointSigner
from libervia.eventlog.verify import ChainCheck
from libervia_plugins.storage_files.layout import FileLayout
from libervia_plugins.storage_files.reading import LogFile, read_checkpoint_file

if TYPE_CHECKING:
    from tqdm import tqdm


def offline_verify(base_dir: Path, tenant_ids: list[str] | None, signer: CheckpointSigner,
                   progress: bool) -> int:
    """Verify tenant logs on disk without a running gateway (``libervia verify``); 0 if all valid, else 1.

    Reads the files only: a torn tail is reported, not quarantined (the gateway quarantines it when it next opens
    the log). ``tenant_ids=None`` means every tenant with a log or with checkpoints. ``progress`` allows a byte
    progress bar on stderr, shown only when stderr is a terminal.
    """
    layout = FileLayout(Path(base_dir))
    names = tenant_ids if tenant_ids is not None else layout.known_tenants()
    if not names:
        print(f"no tenant event logs under {layout.base_dir}")
        return 0
    exit_code = 0
    for tenant in names:
        try:
            paths = layout.tenant(tenant, create=False)
        except ValueError as exc:
            print(f"tenant {tenant}: INVALID: {exc}")
            exit_code = 1
            continue
        checkpoints = read_checkpoint_file(paths.checkpoints)
        if not paths.events.exists() and tenant_ids is not None and not checkpoints:
            print(f"tenant {tenant}: INVALID: no event log at {paths.events}")
            exit_code = 1
            continue
        check = ChainCheck(tenant, checkpoints, signer)
        torn = 0
        if paths.events.exists():
            with LogFile.open_readonly(paths.events) as log_file:
                end = log_file.size()
                bar = _progress_bar(tenant, end, progress)
                try:
                    for chunk in log_file.iter_lines(0, end):
                        if bar is not None:
                            bar.update(chunk.next_offset - chunk.start)
                        if not check.feed_lines(chunk.lines):
                            break
                finally:
                    if bar is not None:
                        bar.close()
                torn = log_file.torn_tail_bytes(end)
        result = check.finish()
        if result["valid"]:
            print(f"tenant {tenant}: valid, {result['totalVerified']} events, head {result['headHash']}")
        else:
            exit_code = 1
            print(f"tenant {tenant}: INVALID at seq {result['firstInvalidIndex']}: {result['reason']}")
        if torn:
            print(f"tenant {tenant}: warning: torn last line of {torn} bytes (an unacknowledged write); the "
                  "gateway moves it to eventlog/quarantine/ when it opens the log")
    return exit_code


def _progress_bar(tenant: str, total: int, progress: bool) -> tqdm[Any] | None:
    """A byte progress bar on stderr, only when asked and stderr is a terminal (tqdm's ``disable=None``)."""
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=tenant, file=sys.stderr, leave=False, disable=None)
