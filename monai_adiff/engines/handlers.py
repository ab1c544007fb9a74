# SPDX-License-Identifier: Apache-2.0
"""Small Ignite handlers that MONAI bundles can list under ``train#handlers``.

MONAI's engines call ``handler.attach(engine)`` on every listed handler; Ignite's ``ProgressBar.attach`` takes its
``output_transform`` at attach time, so it cannot be configured from a bundle config directly. This wrapper can.
"""

from __future__ import annotations

from collections.abc import Callable

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

__all__ = ["ProgressBarHandler"]


class ProgressBarHandler:
    """An Ignite ``ProgressBar`` configured at construction, attached by MONAI's engines.

    Args:
        output_transform: maps ``engine.state.output`` to a number or dict shown beside the bar (e.g. the loss).
        persist: keep the finished bar of each epoch on screen.
        desc: bar label.
        disable: ``None`` shows the bar only on a terminal.
    """

    def __init__(
        self,
        output_transform: Callable | None = None,
        persist: bool = False,
        desc: str | None = None,
        disable: bool | None = None,
    ) -> None:
        self.output_transform = output_transform
        # disable=None: tqdm's own rule, no bar when stderr is not a terminal (logs stay readable)
        self.bar = ProgressBar(persist=persist, desc=desc, disable=disable)

    def attach(self, engine: Engine) -> None:
        self.bar.attach(engine, output_transform=self.output_transform, event_name=Events.ITERATION_COMPLETED)
