# SPDX-License-Identifier: Apache-2.0
"""The volume preprocessing chain shared by training datasets, bundle inference and the CLI.

One definition, so a model is always scored on slices prepared exactly as it was trained on. Bundle configs call
:func:`volume_preprocessing` (``"$monai_adiff.transforms.volume_preprocessing(...)"``) and wrap it in ``Compose``, so
``Invertd`` can undo its spatial steps.
"""

from __future__ import annotations

from monai.transforms import AsDiscreted, CopyItemsd, DeleteItemsd, LoadImaged, MapTransform, Orientationd, Resized

from monai_adiff.transforms.intensity.dictionary import (
    ScaleByPercentiled,
    ScaleToSymmetricRanged,
    StandardizeBackgroundd,
)
from monai_adiff.transforms.io.dictionary import LoadOptionalImaged
from monai_adiff.transforms.slices.dictionary import BrainMaskd, BrainSliceSelectiond, SliceLabeld
from monai_adiff.transforms.utility.dictionary import CheckImaged, SkullStrippedCheckd

__all__ = ["volume_preprocessing", "RAS_LABELS"]

# explicit axis labels: MONAI 1.6 warns when Orientation's default is left implicit
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def volume_preprocessing(
    image_key: str = "image",
    label_key: str = "label",
    brain_key: str = "brain",
    spatial_size: int | None = 128,
    percentile: float = 99.0,
    clip: bool = True,
    range_mode: str = "global",
    min_brain_fraction: float = 0.1,
    slice_rule: str = "area",
    num_channels: int | None = None,
    load: bool = True,
    baseline_key: str | None = None,
    brainmask_key: str = "brainmask",
    foreground_key: str | None = None,
    check_skull_stripped: bool = True,
) -> list[MapTransform]:
    """Dictionary transforms from NIfTI paths to a model-ready RAS volume with per-slice bookkeeping.

    Steps: load (modalities as channels) -> check (3D, channel count, finite, non-empty, label on the image grid) ->
    background to 0 and the brain positive (:class:`~monai_adiff.transforms.StandardizeBackground`: z-scored,
    offset or min-max scaled scans, or an explicit brain mask) -> refuse a whole head
    (:class:`~monai_adiff.transforms.SkullStrippedCheck`, unless a brain mask is given) -> binarise the label (whole
    tumour, ``label > 0``) ->
    reorient to RAS (axial slices on the last axis) -> per-slice brain selection and image-level labels (at the
    native resolution, so small lesions count) -> divide by the foreground percentile (clipped or not) -> in-plane
    resize to ``spatial_size`` -> brain mask -> map to [-1, 1]
    (``range_mode`` "global": fixed [0, 1] -> [-1, 1] after clipping, else per-volume min-max; "slice": per-slice
    min-max as AnoFPDM).

    The output dict holds ``image`` (C, H, W, S) in [-1, 1], ``label`` (1, H, W, S) when given, ``brain``
    (1, H, W, S) bool, ``brain_slices`` (S,) bool, ``brain_area`` (S,), ``slice_label``/``tumour_area`` (S,) when a
    label is given.

    Args:
        image_key: key of the image path(s); a list of paths loads as channels.
        label_key: key of the optional segmentation path.
        brain_key: output key of the brain mask.
        spatial_size: in-plane size (H = W) of the model; ``None`` keeps the native grid.
        percentile: foreground percentile of the intensity scaling.
        clip: clip at that percentile (then intensities lie in [0, 1]).
        range_mode: ``"global"`` or ``"slice"``, see :class:`~monai_adiff.transforms.ScaleToSymmetricRange`.
        min_brain_fraction: see :class:`~monai_adiff.transforms.BrainSliceSelection`.
        slice_rule: ``"area"`` (brain area above ``min_brain_fraction`` of the largest) or ``"intensity"`` (the
            public AnoFPDM code's contiguous range), see :class:`~monai_adiff.transforms.BrainSliceSelection`.
        num_channels: expected channel count (number of modalities) for the input check.
        load: start with ``LoadImaged`` (False when the dict already holds images, e.g. MONAI Label tensors).
        baseline_key: also write the intensity baseline of the evaluation protocol under this key: every channel
            divided by its 99th foreground percentile *with* clipping, in [0, 1], resized like the image, whatever
            the method's own scaling (so every bundle is compared with the same FLAIR-intensity baseline).
        brainmask_key: key of an optional brain-mask path (loaded when present; without it the brain is every voxel
            off the background).
        foreground_key: also keep the brain mask on the input's own grid and orientation under this key (to keep
            masks that are inverted back to the input grid inside the brain).
        check_skull_stripped: refuse a volume that looks like a whole head (off when the user says the scans are
            stripped).
    """
    keys = [image_key, label_key]
    xforms: list[MapTransform] = []
    if load:
        # the image with MONAI's loader, the optional files with ours (MONAI Label swaps LoadImaged for a loader that
        # requires every key)
        xforms += [
            LoadImaged(keys=image_key, ensure_channel_first=True, image_only=True),
            LoadOptionalImaged(keys=[label_key, brainmask_key]),
        ]
    fixed = range_mode == "global" and clip
    xforms += [
        CheckImaged(keys=image_key, label_key=label_key, spatial_dims=3, num_channels=num_channels),
        StandardizeBackgroundd(keys=image_key, mask_key=brainmask_key, foreground_key=foreground_key),
        SkullStrippedCheckd(keys=image_key, mask_key=brainmask_key, enabled=check_skull_stripped),
        DeleteItemsd(keys=brainmask_key),
        AsDiscreted(keys=label_key, threshold=0.5, allow_missing_keys=True),
        Orientationd(keys=keys, axcodes="RAS", labels=RAS_LABELS, allow_missing_keys=True),
        BrainSliceSelectiond(keys=image_key, min_fraction=min_brain_fraction, rule=slice_rule),
        SliceLabeld(keys=label_key, allow_missing_keys=True),
    ]
    if baseline_key:
        xforms += [
            CopyItemsd(keys=image_key, times=1, names=baseline_key),
            ScaleByPercentiled(keys=baseline_key, percentile=99.0, clip=True),
        ]
    xforms.append(ScaleByPercentiled(keys=image_key, percentile=percentile, clip=clip))
    if spatial_size is not None:
        size = (int(spatial_size), int(spatial_size), -1)
        xforms += [
            Resized(
                keys=[image_key, *([baseline_key] if baseline_key else [])],
                spatial_size=size,
                mode="trilinear",
                anti_aliasing=True,
            ),
            Resized(keys=label_key, spatial_size=size, mode="nearest", allow_missing_keys=True),
        ]
    xforms += [
        BrainMaskd(keys=image_key, output_key=brain_key),
        ScaleToSymmetricRanged(
            keys=image_key, mode=range_mode, vmin=0.0 if fixed else None, vmax=1.0 if fixed else None
        ),
    ]
    return xforms
