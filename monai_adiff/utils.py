# SPDX-License-Identifier: Apache-2.0
"""Small shared helpers: atomic file writes."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
from collections.abc import Callable

__all__ = ["atomic_write", "atomic_write_text", "dist_rank_world"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_temporaries(folder: str, name: str, suffix: str) -> None:
    """Remove temporaries of ``name`` left by writers on this host that were killed before their rename.

    Only files whose writer process is gone are removed, so a concurrent writer of the same path keeps its own.
    """
    host = socket.gethostname()
    pattern = os.path.join(glob.escape(folder), glob.escape(f".{name}.{host}.") + "*" + glob.escape(".tmp" + suffix))
    for stale in glob.glob(pattern):
        pid = os.path.basename(stale)[len(f".{name}.{host}.") :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                os.remove(stale)
            except FileNotFoundError:
                pass


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> str:
    """Write ``path`` through ``write(tmp_path)`` to a temporary file in the same folder, then rename.

    A reader never sees a half-written file, and an interrupted job leaves the previous version intact. The
    temporary is a hidden file named after the target, the host and the writing process, so the next successful
    write of the same path removes what a killed writer left behind.
    ``suffix`` ends the temporary name (e.g. ``.nii.gz``) for writers that infer the format from the extension.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    prefix = f".{name}.{socket.gethostname()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _remove_stale_temporaries(folder, name, suffix)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Atomically write a text file (UTF-8)."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, _write)


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the ``torch.distributed`` process group, (0, 1) without one.

    Read from ``torch.distributed`` itself rather than ``ignite.distributed``, which caches the absence of a group
    when first asked before a bundle's ``initialize`` step creates one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
