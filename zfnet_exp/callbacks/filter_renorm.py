"""Apply the paper's filter renormalization after every optimizer step (see ``models.renorm``)."""

from __future__ import annotations

import lightning as L

from ..models.renorm import conv_modules, renormalize_filters
from ..utils.options import greater_than, option_rules


@option_rules(radius=greater_than(0, "a positive RMS radius (the paper's 0.1)"))
class FilterRenormalization(L.Callback):
    def __init__(self, radius: float = 0.1, layers: list[str] | None = None):
        self.radius = float(radius)
        self.layers = list(layers) if layers else None
        self._last_step = -1
        self.clipped_total = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        conv_modules(pl_module, self.layers)  # fail at start, not mid-epoch, on a wrong layer name
        # no rescaling before the first optimizer step (under gradient accumulation the first batches end at
        # the starting step): filters change only in an optimizer step
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # global_step counts optimizer steps, so with gradient accumulation we clip once per real update
        if trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        self.clipped_total += renormalize_filters(pl_module, self.radius, self.layers)
