# SPDX-License-Identifier: Apache-2.0
"""The one error type for bad input: it always names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["InputError", "find_input_error", "config_error_line"]


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


_CONFIG_FAILURES = ("Failed to instantiate component", "Failed to evaluate ConfigExpression")


def config_error_line(exc: BaseException | None) -> str | None:
    """One line for an error raised while MONAI's bundle parser built a config item (a bad override such as a
    network size the class refuses), or ``None`` for any other error.

    MONAI wraps the cause in ``RuntimeError("Failed to instantiate component '<target>' ...")``; the line names the
    component and the innermost cause.
    """
    seen: set[int] = set()
    where, cause = None, exc
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        msg = str(exc)
        if where is None and isinstance(exc, RuntimeError) and msg.startswith(_CONFIG_FAILURES):
            where = msg.splitlines()[0]
        cause = exc
        exc = exc.__cause__ or exc.__context__
    if where is None or cause is None:
        return None
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{where}: {type(cause).__name__}: {detail}"
