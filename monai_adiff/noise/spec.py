# SPDX-License-Identifier: Apache-2.0
"""One description of a diffusion noise (type + octave settings) shared by training and inference.

A model learns the noise it was trained on, so the prepare-batch of training and the inferer of detection must draw
the same field. Bundles define one ``noise`` component and hand it to both; the per-type defaults (the papers') live
only here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from monai_adiff.noise.factory import NOISE_TYPES, make_noise

__all__ = ["NoiseSpec", "NOISE_DEFAULTS"]

#: the papers' octave settings per noise type (AnoDDPM simplex: 6 octaves, persistence 0.8, first wavelength 64 px;
#: DTU-Net Tsimplex: 6, 0.9, 64); Gaussian noise has none
NOISE_DEFAULTS: dict[str, dict[str, Any]] = {
    "simplex": {"octaves": 6, "persistence": 0.8, "frequency": 64.0},
    "tsimplex": {"octaves": 6, "persistence": 0.9, "frequency": 64.0},
    "gaussian": {},
}


class NoiseSpec:
    """The noise a diffusion model is trained and run with; call it to draw a field.

    Args:
        noise_type: ``"simplex"`` (AnoDDPM), ``"tsimplex"`` (DTU-Net) or ``"gaussian"`` (DDPM).
        octaves: simplex octaves; ``None`` takes the type's default (:data:`NOISE_DEFAULTS`).
        persistence: amplitude ratio between octaves; ``None`` takes the type's default (0.8 simplex, 0.9 Tsimplex).
        frequency: wavelength of the first octave in pixels; ``None`` takes the type's default (64).

    Raises:
        ValueError: an unknown type, or octave settings given for Gaussian noise.
    """

    def __init__(
        self,
        noise_type: str = "simplex",
        octaves: int | None = None,
        persistence: float | None = None,
        frequency: float | None = None,
    ) -> None:
        kind = str(noise_type).lower()
        if kind not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
        given = {"octaves": octaves, "persistence": persistence, "frequency": frequency}
        if kind == "gaussian" and any(v is not None for v in given.values()):
            raise ValueError(f"gaussian noise has no octave settings, got {given}")
        self.noise_type = kind
        self.kwargs: dict[str, Any] = dict(NOISE_DEFAULTS[kind])
        for k, v in given.items():
            if v is not None:
                self.kwargs[k] = int(v) if k == "octaves" else float(v)

    @classmethod
    def of(cls, spec: NoiseSpec | str | Mapping[str, Any] | None) -> NoiseSpec:
        """A spec from a spec, a type name or a mapping of constructor arguments (``None``: Gaussian)."""
        if isinstance(spec, NoiseSpec):
            return spec
        if spec is None:
            return cls("gaussian")
        if isinstance(spec, str):
            return cls(spec)
        return cls(**dict(spec))

    def __call__(
        self,
        shape: Sequence[int],
        timesteps: torch.Tensor | int | float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A field of ``shape`` for ``timesteps`` (see :func:`~monai_adiff.noise.make_noise`)."""
        extra: dict[str, Any] = {} if seeds is None or self.noise_type == "gaussian" else {"seeds": seeds}
        return make_noise(
            self.noise_type, shape, timesteps, generator=generator, device=device, dtype=dtype, **self.kwargs, **extra
        )

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments (JSON-friendly)."""
        return {"noise_type": self.noise_type, **self.kwargs}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"NoiseSpec({args})"
