"""Apply gradient centralization before every optimizer step (see ``models.grad_centralization``)."""

from __future__ import annotations

import lightning as L

from ..models.grad_centralization import centralize_gradients


class GradientCentralization(L.Callback):
    """``skip_first_conv``: leave the first convolution's gradient as it is. Its inputs are signed pixels, not
    ReLU outputs, so the reason for centring (dying ReLUs downstream) does not apply there, and removing each
    filter's mean gradient removes the lowest spatial frequency (the DC term), the very part that makes colour
    blobs and smooth filters."""

    def __init__(self, skip_first_conv: bool = False):
        self.skip_first_conv = bool(skip_first_conv)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        centralize_gradients(pl_module, skip_first_conv=self.skip_first_conv)
