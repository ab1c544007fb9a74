# SPDX-License-Identifier: Apache-2.0
"""Writing anomaly outputs: NIfTI volumes and PNG overlays, atomically.

MONAI's ``SaveImage`` writes straight to the final file name (an interrupted job leaves a truncated file that looks
finished) and will happily overwrite the input when the output folder is the input folder. ``SaveNifti`` writes to a
temporary name and renames, and refuses to touch an input file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import TransformBackends

from monai_adiff.errors import InputError
from monai_adiff.utils import atomic_write

__all__ = ["SaveNifti", "save_overlay_png", "input_files"]


def input_files(img) -> list[str]:
    """The absolute paths a MetaTensor was loaded from (``meta["filename_or_obj"]``, one or a list)."""
    meta = getattr(img, "meta", None) or {}
    names = meta.get("filename_or_obj")
    if names is None:
        return []
    names = names if isinstance(names, (list, tuple)) else [names]
    return [os.path.realpath(str(n)) for n in names if n]


class SaveNifti(Transform):
    """Write a channel-first volume (C, X, Y, Z) as ``<output_dir>/<name>.nii.gz`` with its MetaTensor affine.

    Args:
        output_dir: output folder (created).
        channel: which channel to write (``None`` writes all channels as a 4D file).
        dtype: numpy dtype of the stored data (e.g. ``"uint8"`` for masks, ``"float32"`` for maps).
        protect: paths that must never be written (the input files); writing one raises :class:`InputError`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, output_dir: str, channel: int | None = 0, dtype: str = "float32", protect: Sequence[str] = ()
    ) -> None:
        self.output_dir = output_dir
        self.channel = channel
        self.dtype = np.dtype(dtype)
        self.protect = {os.path.realpath(p) for p in protect}

    def __call__(  # type: ignore[override]  # MONAI's Transform.__call__ takes one argument
        self, img: torch.Tensor, name: str, protect: Sequence[str] = ()
    ) -> str:
        path = os.path.realpath(os.path.join(self.output_dir, f"{name}.nii.gz"))
        guarded = self.protect | {os.path.realpath(p) for p in protect}
        if path in guarded:
            raise InputError(path, "refusing to overwrite an input file; choose another output folder")
        if isinstance(img, MetaTensor):
            affine = np.asarray(img.affine.detach().cpu(), dtype=np.float64)
            data = img.as_subclass(torch.Tensor)
        else:
            affine, data = np.eye(4), torch.as_tensor(img)
        arr = data.detach().cpu().numpy()
        arr = arr[self.channel] if self.channel is not None else np.moveaxis(arr, 0, -1)
        out = nib.Nifti1Image(arr.astype(self.dtype), affine)
        out.set_qform(affine, code=1)
        out.set_sform(affine, code=1)
        return atomic_write(path, lambda tmp: nib.save(out, tmp), suffix=".nii.gz")


def save_overlay_png(
    path: str,
    image: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None = None,
    label: np.ndarray | None = None,
    slice_scores: np.ndarray | None = None,
    num_slices: int = 3,
    title: str = "",
) -> str:
    """Save a PNG of the ``num_slices`` most anomalous axial slices: image with the predicted mask (red) and the
    ground truth (green) outlined, and the anomaly map beside it.

    Args:
        path: PNG file to write (atomically).
        image: (H, W, S) image in [-1, 1] (one channel).
        anomaly_map: (H, W, S) map.
        mask, label: optional (H, W, S) binary masks.
        slice_scores: (S,) scores choosing the slices (default: the map's per-slice maximum).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = anomaly_map.reshape(-1, anomaly_map.shape[-1]).max(0) if slice_scores is None else slice_scores
    order = [int(k) for k in np.argsort(-np.asarray(scores))[:num_slices]]
    vmax = float(np.percentile(anomaly_map[anomaly_map > 0], 99.5)) if (anomaly_map > 0).any() else 1.0
    fig, axes = plt.subplots(2, len(order), figsize=(3 * len(order), 6), squeeze=False)
    for j, k in enumerate(order):
        ax = axes[0, j]
        ax.imshow(np.rot90(image[..., k]), cmap="gray", vmin=-1, vmax=1)
        for m, colour in ((mask, "red"), (label, "lime")):
            if m is not None and m[..., k].any():
                ax.contour(np.rot90(m[..., k]), levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"slice {k}", fontsize=9)
        axes[1, j].imshow(np.rot90(anomaly_map[..., k]), cmap="inferno", vmin=0, vmax=vmax)
        axes[1, j].set_title(f"score {float(scores[k]):.3g}", fontsize=9)
        for a in axes[:, j]:
            a.axis("off")
    fig.suptitle(title + "  (red: predicted mask, green: ground truth)", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90), suffix=".png")
    finally:
        plt.close(fig)
