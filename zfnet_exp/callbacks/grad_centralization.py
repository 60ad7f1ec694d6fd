"""Apply gradient centralization before every optimizer step (see ``models.grad_centralization``)."""

from __future__ import annotations

import lightning as L

from ..models.grad_centralization import centralize_gradients


class GradientCentralization(L.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        centralize_gradients(pl_module)
