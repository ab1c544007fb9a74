# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: tiny hand-made NIfTI cases and the optional real BraTS dev set."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# tests must stay fast and reproducible on 2 cores
torch.set_num_threads(min(2, torch.get_num_threads()))

# BraTS files store LPS-flipped axes: a non-RAS affine is the realistic default for our fixtures
LPS_AFFINE = np.array([[-1.0, 0, 0, 47.0], [0, -1.0, 0, 47.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def brats_dir() -> Path | None:
    """The real BraTS 2018 dev cases, when this checkout sits beside ../shared/data."""
    env = os.environ.get("MONAI_ADIFF_BRATS_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "brats18-dev"
    return path if path.is_dir() and any(path.iterdir()) else None


@pytest.fixture(autouse=True)
def _restore_logging_handlers():
    """A bundle run applies its ``logging.conf`` (a root handler on the ``sys.stdout`` of that moment: a test's
    capture, closed afterwards), and MONAI's ``StatsHandler`` gives its logger one too. Take every handler a test
    added off again, so later tests do not log into a closed stream."""

    def snapshot() -> dict[str, list[logging.Handler]]:
        loggers = {"": logging.getLogger()}
        loggers.update({n: lg for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)})
        return {n: list(lg.handlers) for n, lg in loggers.items()}

    before, level = snapshot(), logging.getLogger().level
    yield
    for name, handlers in snapshot().items():
        logger = logging.getLogger(name or None)
        for h in handlers:
            if h not in before.get(name, []):
                logger.removeHandler(h)
        for h in before.get(name, []):
            if h not in logger.handlers:  # a logging.conf replaces the root's handlers
                logger.addHandler(h)
    logging.getLogger().setLevel(level)


@pytest.fixture
def brats_root() -> Path:
    path = brats_dir()
    if path is None:
        pytest.skip("real BraTS data not present (../shared/data/brats18-dev or $MONAI_ADIFF_BRATS_DIR)")
    return path


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def make_case_arrays(shape=(24, 24, 16), lesion: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """A ball-shaped 'brain' with a bright cubic 'lesion' in a few slices (z 6..8); no brain in slices 0 and -1."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    brain = (x**2 + y**2 + z**2) < 0.85
    brain[..., 0] = brain[..., -1] = False
    seg = np.zeros(shape, np.int16)
    if lesion:
        seg[10:14, 10:14, 6:9] = 2
        seg[11:13, 11:13, 7] = 4
        seg &= brain * np.int16(7)
    out = {}
    for i, m in enumerate(("flair", "t1", "t1ce", "t2")):
        img = brain * (100.0 + 10 * i + rng.normal(0, 5, shape))
        if lesion and m in ("flair", "t2"):
            img = np.where(seg > 0, img * 2.0, img)
        out[m] = np.clip(img, 0, None).astype(np.int16)
    out["seg"] = seg
    return out


def write_case(
    root: Path,
    case: str,
    shape=(24, 24, 16),
    lesion: bool = True,
    seed: int = 0,
    affine: np.ndarray = LPS_AFFINE,
    skip: tuple[str, ...] = (),
) -> dict:
    arrays = make_case_arrays(shape, lesion, seed)
    item = {"case": case}
    for key, arr in arrays.items():
        if key in skip:
            continue
        p = save_nifti(root / case / f"{case}_{key}.nii.gz", arr, affine)
        item["label" if key == "seg" else key] = str(p)
    return item


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Three small good cases (two with lesions) in the BraTS layout."""
    root = tmp_path / "tiny"
    for i, lesion in enumerate((True, False, True)):
        write_case(root, f"Case_{i}", lesion=lesion, seed=i)
    return root
