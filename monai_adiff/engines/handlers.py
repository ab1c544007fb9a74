# SPDX-License-Identifier: Apache-2.0
"""Small Ignite handlers that MONAI bundles can list under ``train#handlers``.

Ignite's ``ProgressBar`` shows one bar per epoch, so a long training never says when it will end, and its
``output_transform`` is taken at attach time, so it cannot be configured from a bundle config. This handler shows
one bar over the whole run (every epoch, from where a resumed run starts) with tqdm's ETA, configured at
construction and attached by MONAI's engines.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events
from tqdm.auto import tqdm

__all__ = ["ProgressBarHandler"]


def _postfix(value: Any) -> dict[str, str]:
    """``{name: "0.0312"}`` for tqdm's postfix from a number, a 0-d tensor or a dict of them."""
    items = value.items() if isinstance(value, dict) else [("output", value)]
    out = {}
    for k, v in items:
        v = v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v
        if isinstance(v, numbers.Number):
            out[str(k)] = f"{v:.4g}"
    return out


class ProgressBarHandler:
    """One progress bar over a whole engine run, with the time left.

    Args:
        output_transform: maps ``engine.state.output`` to a number or dict shown beside the bar (e.g. the loss).
        persist: keep the finished bar on screen.
        desc: bar label.
        disable: ``None`` shows the bar only on a terminal (logs stay readable).
    """

    def __init__(
        self,
        output_transform: Callable | None = None,
        persist: bool = False,
        desc: str | None = None,
        disable: bool | None = None,
    ) -> None:
        self.output_transform = output_transform
        self.persist, self.desc, self.disable = persist, desc, disable
        self.bar: tqdm | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        # no EXCEPTION_RAISED handler: Ignite re-raises only when none is registered
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _started(self, engine: Engine) -> None:
        self._close(engine)
        length = engine.state.epoch_length
        total = None if length is None or engine.state.max_epochs is None else length * engine.state.max_epochs
        # a resumed run starts where it stopped: the rate and ETA count only this run's iterations
        self.bar = tqdm(
            total=total, initial=engine.state.iteration, desc=self.desc, leave=self.persist, disable=self.disable
        )

    def _iteration(self, engine: Engine) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if self.output_transform is not None and engine.state.output is not None:
            self.bar.set_postfix(_postfix(self.output_transform(engine.state.output)), refresh=False)

    def _close(self, engine: Engine) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
