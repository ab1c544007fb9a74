# SPDX-License-Identifier: Apache-2.0
"""The one definition of the small network that trains on a CPU.

The bundles' ``cpu_args.json``, the demo and the tests all derive their network from :func:`cpu_overrides`; the
bundle composer writes it into every bundle's ``configs/cpu_args.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["cpu_overrides", "CPU_SPATIAL_SIZE", "CPU_CHANNELS"]

#: the CPU recipe's slice size and UNet widths (the bundles' ``cpu_args.json``)
CPU_SPATIAL_SIZE = 64
CPU_CHANNELS = (16, 32, 64)


def cpu_overrides(spatial_size: int = CPU_SPATIAL_SIZE, channels: Sequence[int] = CPU_CHANNELS) -> dict[str, Any]:
    """Config overrides that shrink a bundle's paper-size UNet to a network that trains on a laptop CPU.

    The same keys work on the command line (``--network_def#channels "[32, 64, 64]"``) and in an ``args_file``;
    bundle READMEs list them. Attention stays on the lowest resolution only.
    """
    channels = [int(c) for c in channels]
    n = len(channels)
    return {
        "spatial_size": int(spatial_size),
        "network_def#channels": channels,
        "network_def#attention_levels": [False] * (n - 1) + [True],
        "network_def#num_head_channels": [0] * (n - 1) + [channels[-1] // 2],
        "network_def#num_res_blocks": 1,
        "network_def#norm_num_groups": 8,
        "network_def#use_flash_attention": False,
    }
