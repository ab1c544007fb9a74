# SPDX-License-Identifier: Apache-2.0
"""The one error type for bad input: it always names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["InputError", "find_input_error"]


class InputError(ValueError):
    """Bad input data: unreadable file, wrong dimensionality, non-finite voxels, empty foreground, ...

    Args:
        path: the offending file (or folder); may be ``None`` for in-memory data.
        problem: what is wrong with it, in words a user can act on.

    The message reads ``"<path>: <problem>"`` so a batch job can list failures one per line.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


def find_input_error(exc: BaseException | None) -> InputError | None:
    """The :class:`InputError` behind ``exc``, if any.

    MONAI's ``Compose`` re-raises every transform error as ``RuntimeError("applying transform ...")`` chained to the
    original one; this walks the ``__cause__``/``__context__`` chain to recover the message that names the file.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
