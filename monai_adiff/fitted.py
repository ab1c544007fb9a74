# SPDX-License-Identifier: Apache-2.0
"""Files fitted on a checkpoint (the healthy-quantile threshold, a calibration) and the checkpoint they belong to.

A fitted file records the SHA-256 of the checkpoint it was fitted on and the recipe settings it assumes
(:func:`fitted_on`); :func:`check_fitted` refuses a file fitted on another checkpoint, in one line naming both, and
warns when the run's settings differ from those it was fitted with. Without it a threshold left over from another
model beside a checkpoint would be applied silently; MONAI has no notion of such ties.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monai_adiff.errors import InputError

__all__ = ["checkpoint_fingerprint", "fitted_on", "check_fitted", "settings_dict", "FINGERPRINT_DIGITS"]

logger = logging.getLogger(__name__)

#: how many hex digits of the SHA-256 a fitted file records (64 bits: no two checkpoints of a user collide)
FINGERPRINT_DIGITS = 16
_fingerprints: dict[tuple[str, int, int], str] = {}


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """The first :data:`FINGERPRINT_DIGITS` hex digits of the SHA-256 of a checkpoint file (cached per file state).

    Raises:
        InputError: the file cannot be read.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _fingerprints:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            _fingerprints[key] = digest.hexdigest()[:FINGERPRINT_DIGITS]
    except OSError as e:
        raise InputError(path, f"checkpoint cannot be read ({e.strerror or e})") from e
    return _fingerprints[key]


def _plain(value: Any) -> Any:
    """A JSON-like copy of a config value (lists for tuples, a noise spec as its arguments)."""
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def settings_dict(settings: Sequence[Sequence[Any]] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``{id: plain value}`` from ``[[id, value], ...]`` (a resolved ``@recipe_config``) or a mapping; ids in ``#``
    form (MONAI rewrites ``#`` inside config strings to ``::``)."""
    pairs = settings.items() if isinstance(settings, Mapping) else (settings or [])
    return {str(k).replace("::", "#"): _plain(v) for k, v in pairs}


def fitted_on(
    checkpoint: str | os.PathLike | None, settings: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a fitted file records of its origin: ``{"checkpoint": {"file", "sha256"}, "settings": {...}}``."""
    out: dict[str, Any] = {}
    if checkpoint is not None and os.path.isfile(os.fspath(checkpoint)):
        out["checkpoint"] = {
            "file": os.path.basename(os.fspath(checkpoint)),
            "sha256": checkpoint_fingerprint(checkpoint),
        }
    if settings is not None:
        out["settings"] = settings_dict(settings)
    return out


def check_fitted(
    path: str | os.PathLike,
    record: Mapping[str, Any],
    checkpoint: str | os.PathLike | None,
    settings: Sequence[Sequence[Any]] | Mapping[str, Any] | None = None,
    ignore: Iterable[str] = (),
) -> None:
    """Check that a fitted file (``record``, read from ``path``) belongs to ``checkpoint`` and the run's settings.

    Args:
        path: the fitted file (named in messages).
        record: its content.
        checkpoint: the run's checkpoint (``None``: nothing to compare).
        settings: the run's settings (``[[id, value], ...]``); ids whose fitted value differs are warned about.
        ignore: settings the fitted file itself provides (a calibration's guidance, a threshold), not compared.

    Raises:
        InputError: the file was fitted on another checkpoint (one line naming both).
    """
    path = os.fspath(path)
    origin = record.get("checkpoint") if isinstance(record.get("checkpoint"), Mapping) else None
    if checkpoint is not None and os.path.isfile(os.fspath(checkpoint)):
        if origin is None or "sha256" not in origin:
            logger.warning("%s records no checkpoint: it cannot be checked against %s", path, os.fspath(checkpoint))
        else:
            mine = checkpoint_fingerprint(checkpoint)
            if origin["sha256"] != mine:
                raise InputError(
                    path,
                    f"was fitted on another checkpoint ({origin.get('file')} sha256 {origin['sha256']}), not on "
                    f"{os.fspath(checkpoint)} (sha256 {mine}); fit it again for this checkpoint (monai-adiff train, "
                    "or the bundle's calibrate / healthy_threshold workflow)",
                )
    fitted = record.get("settings") if isinstance(record.get("settings"), Mapping) else None
    if fitted is None or settings is None:
        return
    run = settings_dict(settings)
    skip = set(ignore)
    diff = [k for k in run if k in fitted and k not in skip and run[k] != fitted[k]]
    if diff:
        logger.warning(
            "%s was fitted with %s; this run uses %s: it may not fit this run's maps",
            path,
            ", ".join(f"{k}={json.dumps(fitted[k])}" for k in diff),
            ", ".join(f"{k}={json.dumps(run[k])}" for k in diff),
        )
