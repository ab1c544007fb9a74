# SPDX-License-Identifier: Apache-2.0
"""A hyperintensity prior for anomaly maps: weight or gate a map by how bright the FLAIR voxel is in its own scan.

Brain tumours and most white-matter lesions are hyperintense on FLAIR. A reconstruction map also lights up where
the network merely blurs normal tissue (cortex, ventricle borders, dark CSF); weighting the map by the FLAIR
intensity relative to the scan's brain keeps the bright residuals and damps the dark ones, inside each scan, so the
ranking of voxels within a scan improves (what the per-patient AUPRC measures). Not in any of the bundled papers:
an option, off by default, measured by cross-validation before a CPU recipe turns it on. MONAI has no transform
that scales one image by a statistic of another inside a mask, hence this one.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = ["HyperintensityPrior", "PRIOR_MODES"]

#: ``"weight"``: ``map * clip((I - median) / (q_high - median), 0, 1)``; ``"gate"``: ``map * (I > median)``
PRIOR_MODES = ("weight", "gate")


class HyperintensityPrior(Transform):
    """Scale a map by the FLAIR intensity of each voxel relative to the brain of the same scan.

    With ``m`` the median and ``h`` the ``high_quantile`` of the FLAIR intensity over the brain voxels of the
    image (the whole volume, or the one slice given), the map becomes:

    - ``"weight"``: ``map * clip((I - m) / (h - m), 0, 1)``: voxels at or below the brain's median count for
      nothing, voxels at the scan's brightest ``1 - high_quantile`` fully;
    - ``"gate"``: ``map * (I > m)``: only voxels brighter than the brain's median count.

    Args:
        mode: one of :data:`PRIOR_MODES`.
        channel: channel of the image holding FLAIR (the bundles' first modality).
        high_quantile: the quantile ``h`` of the weight's upper end (``"weight"`` only).

    Raises:
        ValueError: an unknown mode or a quantile outside (0.5, 1].
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mode: str = "weight", channel: int = 0, high_quantile: float = 0.99) -> None:
        if mode not in PRIOR_MODES:
            raise ValueError(f"HyperintensityPrior: mode must be one of {PRIOR_MODES}, got {mode!r}")
        if not 0.5 < float(high_quantile) <= 1.0:
            raise ValueError(f"HyperintensityPrior: high_quantile must lie in (0.5, 1], got {high_quantile}")
        self.mode = mode
        self.channel = int(channel)
        self.high_quantile = float(high_quantile)

    def weight(self, image: NdarrayOrTensor, brain: NdarrayOrTensor) -> torch.Tensor:
        """The weight (1, *spatial) of ``image`` (C, *spatial) inside ``brain`` (1 or C, *spatial); 0 outside."""
        x = convert_to_tensor(image, track_meta=False).float()[self.channel]
        b = (convert_to_tensor(brain, track_meta=False) > 0).any(dim=0).to(x.device)
        if b.shape != x.shape:
            raise ValueError(f"brain mask spatial shape {tuple(b.shape)} != image shape {tuple(x.shape)}")
        if not b.any():
            return torch.zeros_like(x)[None]
        inside = x[b]
        m = inside.median()
        if self.mode == "gate":
            return ((x > m) & b).float()[None]
        h = torch.quantile(inside, self.high_quantile)
        w = ((x - m) / (h - m).clamp_min(1e-6)).clamp(0, 1)
        return (w * b)[None]

    def __call__(
        self, img: NdarrayOrTensor, image: NdarrayOrTensor | None = None, brain: NdarrayOrTensor | None = None
    ) -> NdarrayOrTensor:
        """``img`` (the map, C x *spatial) times the weight of ``image`` in ``brain``."""
        if image is None or brain is None:
            raise ValueError("HyperintensityPrior needs the image and the brain mask")
        amap = convert_to_tensor(img, track_meta=False)
        w = self.weight(image, brain).to(amap.device, amap.dtype)
        if w.shape[1:] != amap.shape[1:]:
            raise ValueError(f"image spatial shape {tuple(w.shape[1:])} != map shape {tuple(amap.shape[1:])}")
        return convert_to_dst_type(amap * w, dst=img)[0]
