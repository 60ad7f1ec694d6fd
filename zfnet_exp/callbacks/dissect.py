"""Network Dissection every epoch: how many units detect which concept, and when the detectors appear.

On the embedded ``shapes`` data every concept's pixels are known exactly (:mod:`zfnet_exp.data.concepts`), so
the dissection (:mod:`zfnet_exp.diagnostics.dissect`, NetDissect's procedure) can run during training. A fixed
seeded subset of ``num_images`` validation images is dissected in ``layers`` (default: the deepest three conv
layers) (the same images every epoch); their
activations are taken from the validation pass itself by forward hooks (``capture_first``), so the callback adds
no forward pass of its own (images the pass did not reach on this rank, e.g. a DDP shard, are run here). Masks
are at ``mask_size`` (default: half the network input, NetDissect's label resolution: 32 px at the default 64 px;
ZFNet's maps there are conv1 30x30, conv2 6x6, conv3-5 3x3) and are computed once per run.

Logged at each scheduled epoch (rank 0; no collective): scalars ``dissect/<layer>/detectors``,
``dissect/<layer>/unique_concepts`` and detectors per category ``dissect/<layer>/<category>`` (object, part,
edge, texture, colour, clutter); a table ``dissect/units`` (epoch, layer, unit, concept, category, IoU,
detector) through the sink; a figure per layer ``diag/<layer>/dissect`` (:mod:`zfnet_exp.figures.dissect`).
The top-9 and evolution callbacks head each map with this epoch's label and IoU through :func:`dissection_for`.
Other datasets than shapes have no concept masks here: the callback says so once and does nothing
(``analysis=dissect`` dissects VOC or Broden concepts offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from ..data.concepts import SHAPES_CONCEPTS, ShapesConcepts, label_maps
from ..data.normalize import normalized_split
from ..diagnostics.dissect import IOU_THRESHOLD, OPTION_RULES, QUANTILE, LayerDissection, dissect_batches
from ..diagnostics.layers import conv_layer_names, layer_label
from ..figures import dissect as figure
from ..figures import emit
from ..utils.options import at_least, option_rules
from ..utils.tensors import eval_mode, seeded_subset
from ..viz import ImageSink
from ._util import capture_first, diagnostic_due

# default layers: the deepest three conv stages (conv3-conv5 on ZFNet). conv1 (30x30 maps, every map above its
# threshold somewhere) and conv2 cost about 70% of the epoch-end work (measured), which would take the callback
# over 10% of a validation epoch; name them in ``layers`` to dissect them too
DEFAULT_DEPTH = 3


@option_rules(**OPTION_RULES, every_n_epochs=at_least(1), batch_size=at_least(1))
class Dissect(L.Callback):
    def __init__(
        self,
        layers: Sequence[str] | None = None,
        num_images: int = 200,
        mask_size: int | None = None,
        quantile: float = QUANTILE,
        iou_threshold: float = IOU_THRESHOLD,
        every_n_epochs: int = 1,
        seed: int = 0,
        batch_size: int = 50,
        top_units: int = 12,
        figures: bool = True,
        at_init: bool = True,
    ):
        self.layers = list(layers) if layers else None  # None: the deepest DEFAULT_DEPTH conv layers
        self.num_images = int(num_images)
        self.mask_size = mask_size
        self.quantile, self.iou_threshold = float(quantile), float(iou_threshold)
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.batch_size = int(batch_size)
        self.top_units = int(top_units)
        self.figures = bool(figures)
        self.at_init = bool(at_init)
        self._concepts: ShapesConcepts | None = None
        self._subset: list[int] = []
        self._position: dict[int, int] = {}
        self._buffers: dict[str, torch.Tensor] = {}  # layer -> [num_images, U, h, w]: the subset's activations
        self._have: torch.Tensor | None = None  # [num_images] bool: filled by this epoch's validation pass
        self._labels: torch.Tensor | None = None  # [num_images, C, m, m]: the subset's concepts, computed once
        self._hooks: ExitStack | None = None
        self._acts: dict | None = None
        self._unsupported = False
        self.last_result: dict[str, LayerDissection] | None = None
        self.init_result: dict[str, LayerDissection] | None = None  # at_init: the initial weights' dissection
        self.last_epoch: int | None = None
        self.history: list[dict] = []  # per dissected epoch: the scalars (for tests and users)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.layers is None:
            self.layers = conv_layer_names(pl_module.model)[-DEFAULT_DEPTH:]

    def _prepare(self, trainer) -> bool:
        """The concept dataset over the validation split (once); False (said once) for non-shapes data."""
        if self._concepts is not None:
            return True
        if self._unsupported:
            return False
        dm = trainer.datamodule
        val = getattr(dm, "val_set", None)
        samples = getattr(val, "samples", None)
        spec = getattr(dm, "spec", None)
        if spec is None or not samples:
            self._unsupported = True
            rank_zero_info(
                f"dissect: {type(dm).__name__} has no concept masks (only the generated shapes data, read from "
                f"image files, has them); the dissect callback does nothing in this run. Dissect a checkpoint on "
                f"VOC or Broden concepts with analysis=dissect."
            )
            return False
        crop = int(dm.image_size)
        files = [Path(p) for p, _ in samples]
        self._concepts = ShapesConcepts(files, spec, crop, mask_size=self.mask_size or max(1, crop // 2), cache=False)
        self._subset = seeded_subset(len(self._concepts), self.num_images, self.seed)
        self._position = {i: j for j, i in enumerate(self._subset)}
        return True

    def _due(self, trainer) -> bool:
        return trainer.is_global_zero and diagnostic_due(trainer, self.every_n_epochs) and self._prepare(trainer)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not self._due(trainer):
            return
        self._have = torch.zeros(len(self._subset), dtype=torch.bool)
        self._hooks = ExitStack()
        self._acts = self._hooks.enter_context(capture_first(pl_module.model, self.layers))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._acts is not None:
            self._acts.clear()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._acts is None or dataloader_idx != 0:
            return
        if all(layer in self._acts for layer in self.layers):
            hits = [(j, self._position[i]) for j, i in enumerate(batch[2].tolist()) if i in self._position]
            if hits:
                self._store([j for j, _ in hits], [k for _, k in hits], self._acts)
        self._acts.clear()

    def _store(self, rows: list[int], positions: list[int], acts: dict) -> None:
        """Copy the activations of batch ``rows`` into the subset buffers at ``positions``."""
        for layer in self.layers:
            a = acts[layer]
            buf = self._buffers.get(layer)
            if buf is None or buf.shape[1:] != a.shape[1:] or buf.device != a.device:
                buf = self._buffers[layer] = torch.zeros(len(self._subset), *a.shape[1:], device=a.device)
            buf[positions] = a[rows].float()
        self._have[positions] = True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        dissection_for(trainer, pl_module, self)

    def result(self, trainer, pl_module) -> dict[str, LayerDissection] | None:
        """This epoch's dissection (computed and logged on first request), or None when none is due."""
        epoch = trainer.current_epoch + 1
        if self.last_epoch == epoch and self.last_result is not None:
            return self.last_result
        if self._hooks is None:
            return None
        self._hooks.close()
        self._hooks = self._acts = None
        result = self._dissect(pl_module)
        self.last_result, self.last_epoch = result, epoch
        self._log(trainer, pl_module, result, epoch)
        return result

    def on_train_start(self, trainer, pl_module) -> None:
        """``at_init``: dissect the initial weights once, before the first optimizer step of a new run (not on
        resume), so every curve starts from the random-initialization counts (NetDissect's baseline: AlexNet
        conv5 9 detectors at random init, 97 trained). Logged at step 0 as epoch 0: the loggers' curves, the
        units table and the figure; ``metrics.csv`` keeps one row per trained epoch, so these counts are in
        ``diagnostics/dissect/units/step0000000.csv`` there. One forward pass of the subset (no validation
        pass runs before training)."""
        if not (self.at_init and trainer.global_step == 0 and self.every_n_epochs >= 1 and trainer.is_global_zero):
            return
        if not self._prepare(trainer):
            return
        self._have = torch.zeros(len(self._subset), dtype=torch.bool)
        result = self._dissect(pl_module)
        self.init_result = result
        self._log(trainer, pl_module, result, 0)

    def _dissect(self, pl_module) -> dict[str, LayerDissection]:
        """NetDissect over the subset's activations of this epoch (the ones the validation pass did not bring
        are forwarded here)."""
        self._complete(pl_module)
        names = [layer_label(pl_module.model, layer) for layer in self.layers]
        buffers = self._buffers
        labels = self._concept_labels(next(iter(buffers.values())).device)

        def batches():
            for start in range(0, len(self._subset), self.batch_size):
                end = start + self.batch_size
                yield {n: buffers[layer][start:end] for n, layer in zip(names, self.layers)}, labels[start:end]

        return dissect_batches(
            batches, names, SHAPES_CONCEPTS.names, SHAPES_CONCEPTS.categories, self.quantile, self.iou_threshold
        )

    def _concept_labels(self, device) -> torch.Tensor:
        """The subset's concepts as label maps ``[num_images, C, m, m]`` (a few channels instead of 44 boolean
        masks: the counting reads C values per pixel), computed once per run and kept."""
        if self._labels is None or self._labels.device != device:
            self._labels = torch.stack([label_maps(self._concepts.masks(i)) for i in self._subset]).to(device)
        return self._labels

    @torch.no_grad()
    def _complete(self, pl_module) -> None:
        """Forward the subset's images the validation pass did not bring to this rank."""
        missing = [k for k in range(len(self._subset)) if not self._have[k]]
        if not missing:
            return
        val = normalized_split(pl_module.trainer.datamodule, "val")
        model = pl_module.model
        with eval_mode(model), capture_first(model, self.layers) as acts:
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                acts.clear()
                model(torch.stack([val[self._subset[k]][0] for k in chunk]).to(pl_module.device))
                self._store(list(range(len(chunk))), chunk, acts)

    def _log(self, trainer, pl_module, result: dict[str, LayerDissection], epoch: int) -> None:
        values = figure.scalars(result)
        self.history.append({"epoch": epoch, **values})
        step = trainer.global_step
        if epoch == 0:  # the initial weights: no epoch is being logged, so straight to the loggers at step 0
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)
        else:
            for key, value in values.items():
                pl_module.log(key, value, on_epoch=True, on_step=False, rank_zero_only=True)
        sink = ImageSink.from_trainer(trainer)
        sink.log_table("dissect/units", figure.unit_rows(result, epoch=epoch), step=step)
        if self.figures:
            images = f"{len(self._subset)} fixed validation images"
            when = "initial weights (step 0)" if epoch == 0 else f"epoch {epoch} (step {step})"
            for r in result.values():
                emit(sink, figure.draw(r, when, images, self.top_units, epoch=epoch), step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = self._acts = None


def dissection_for(trainer, pl_module, callback: Dissect | None = None) -> dict[str, LayerDissection] | None:
    """This epoch's dissection from the run's :class:`Dissect` callback (computed now if it is due and not yet
    done, whatever the callbacks' order), or None (no such callback, not due, not shapes data)."""
    cbs = [callback] if callback is not None else [c for c in trainer.callbacks if isinstance(c, Dissect)]
    for cb in cbs:
        result = cb.result(trainer, pl_module)
        if result is not None:
            return result
    return None
