# SPDX-License-Identifier: Apache-2.0
"""The one error type for bad input: it always names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["InputError"]


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
