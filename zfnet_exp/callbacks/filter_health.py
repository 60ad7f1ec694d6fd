"""Paper Fig. 6 during training: the first-layer filters as an RGB grid (``diag/filters/conv1``) and
filter-health curves (``health/<layer>/<metric>``: dead fraction, sparsity, RMS spread, conv1 aliasing).

Activation statistics come for free from the validation pass: forward hooks keep a running per-channel
maximum (a channel is dead iff its maximum over the val set is <= 0, which is exactly what
:func:`~zfnet_exp.diagnostics.filters.dead_fraction` computes on the full activations) and running counts
of zero activations (sparsity over the whole val set). The few numbers are reduced across DDP ranks on
every rank (max / sum), the weight-based metrics come from :func:`filter_health` unchanged, and scalars are
logged with ``pl_module.log`` (same value on every rank, so no sync is needed); rank 0 logs the grid (and
its numbers as JSON).

The grid (:func:`zfnet_exp.figures.fig6.filter_figure`) shows each filter at about ``cell_px`` pixels (integer
nearest-neighbour enlargement: one square per weight) under a title with this epoch's numbers beside the
picture: the aliasing index against its references (smooth ~0, white noise ~0.80), the dead-filter count
(never active on the validation set; those filters framed red) and the low-RMS count; the W&B caption repeats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import lightning as L
import torch

from ..diagnostics.filters import filter_health
from ..diagnostics.layers import conv_layer_names
from ..figures import emit, fig6
from ..utils.options import at_least, option_rules
from ..viz import ImageSink
from ._util import capture_first, diagnostic_due


@option_rules(every_n_epochs=at_least(1), cell_px=at_least(8))
class FilterHealth(L.Callback):
    def __init__(self, layers: Sequence[str] | None = None, every_n_epochs: int = 1, cell_px: int = 96):
        self.layers = list(layers) if layers else None
        self.every_n_epochs = every_n_epochs
        self.cell_px = int(cell_px)
        self._hooks: ExitStack | None = None
        self._acts: dict | None = None
        self._max: dict[str, torch.Tensor] = {}
        self._zeros: dict[str, torch.Tensor] = {}
        self._count: dict[str, torch.Tensor] = {}
        self.last_metrics: dict[str, float] = {}

    def _layers(self, model) -> list[str]:
        return self.layers or conv_layer_names(model)

    def _active(self, trainer) -> bool:
        return diagnostic_due(trainer, self.every_n_epochs)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not self._active(trainer):
            return
        self._max, self._zeros, self._count = {}, {}, {}
        self._hooks = ExitStack()
        self._acts = self._hooks.enter_context(capture_first(pl_module.model, self._layers(pl_module.model)))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._acts is not None:
            self._acts.clear()

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._hooks is None:
            return
        for layer, a in self._acts.items():
            m = a.transpose(0, 1).flatten(1).amax(1).float()
            self._max[layer] = m if layer not in self._max else torch.maximum(self._max[layer], m)
            z = (a <= 0).sum().double()
            self._zeros[layer] = self._zeros.get(layer, 0) + z
            self._count[layer] = self._count.get(layer, 0) + torch.tensor(
                float(a.numel()), dtype=torch.float64, device=a.device
            )
        self._acts.clear()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._hooks is None:
            return
        self._hooks.close()
        self._hooks = None
        model = pl_module.model
        layers = self._layers(model)
        acts = {}
        for layer in layers:
            if layer not in self._max:  # this rank saw no batch: the channel count is still needed to gather
                continue
            # collectives on every rank (a rank without batches would diverge; Lightning gives every rank >= 1)
            m = pl_module.all_gather(self._max[layer].contiguous())
            m = m.amax(0) if m.dim() == 2 else m
            acts[layer] = m[None, :, None, None]  # [1, C, 1, 1]: dead_fraction only needs the per-channel max
            zeros = pl_module.all_gather(self._zeros[layer]).sum()
            count = pl_module.all_gather(self._count[layer]).sum()
            self._zeros[layer] = float(zeros / count.clamp_min(1))
        metrics = filter_health(model, acts, layers)
        for layer in acts:
            metrics[f"health/{layer}/sparsity"] = self._zeros[layer]  # exact over the whole val set
        self.last_metrics = metrics
        for key, value in metrics.items():
            pl_module.log(key, float(value), sync_dist=False, on_epoch=True, on_step=False)
        if trainer.is_global_zero:
            self._log_grid(trainer, model, layers, metrics, acts)

    def _log_grid(self, trainer, model, layers, metrics: dict, acts: dict) -> None:
        """The conv1 grid with its numbers (see the module docstring)."""
        fig = fig6.filter_figure(model, layers, metrics, acts, trainer.current_epoch + 1, cell=self.cell_px)
        if fig is not None:
            emit(ImageSink.from_trainer(trainer), fig, trainer.global_step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None
