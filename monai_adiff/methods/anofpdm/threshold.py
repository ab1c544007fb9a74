# SPDX-License-Identifier: Apache-2.0
"""AnoFPDM's dynamic threshold: the per-slice quantile level of Algorithm 1 (Che et al. 2025)."""

from __future__ import annotations

__all__ = ["fpdm_quantile"]


def fpdm_quantile(m_te: float, m_max: float, a: float = 0.90, b: float = 0.98) -> float:
    """The quantile level of AnoFPDM's dynamic threshold (Che et al. 2025, Algorithm 1).

    ``range = reverse(linspace(a, b, 101))``, ``M_s = clamp(M_te / M_max, 0, 1)``, ``index = round(M_s, 2) * 100``,
    return ``range[index]``: the stronger the divergence between the guided and unguided predictions (a larger
    anomaly), the lower the quantile, so more pixels are segmented. The index rounds to nearest (the public code
    truncates after a float round, which is off by one at some values).

    Args:
        m_te: the sample's largest divergence ``M_te`` (at the end step ``t_e``).
        m_max: the largest ``M_te`` over the validation samples (from calibration).
        a: lowest quantile (for ``M_te >= M_max``).
        b: highest quantile (for ``M_te = 0``).

    Returns:
        the quantile level in [a, b].
    """
    if m_max <= 0:
        raise ValueError(f"m_max must be > 0, got {m_max}")
    if not 0.0 <= a <= b <= 1.0:
        raise ValueError(f"need 0 <= a <= b <= 1, got a={a}, b={b}")
    ratio = min(max(float(m_te) / float(m_max), 0.0), 1.0)
    index = int(round(ratio * 100))
    # linspace(a, b, 101) reversed, entry `index`, written so it is exact where the decimal is (e.g. 0.94)
    return (a * index + b * (100 - index)) / 100
