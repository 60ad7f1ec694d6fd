"""The fine-tune and scratch modes: a :class:`~zfnet_exp.models.LitClassifier` trained on the target data through a
Lightning ``Trainer`` (the one ``train.py``'s loop is), then its predictions on the test images.

- ``finetune``: the checkpoint's network with a new last layer (timm's ``reset_classifier``, which our models
  implement too; the last ``nn.Linear`` of a torchvision network), all layers trained, the pretrained ones at
  ``transfer.finetune_lr_mult`` times the learning rate.
- ``scratch``: the paper's "non-pretrained" baseline: the checkpoint's own model config (architecture, init) with
  the target's class count and no weights.

Both: SGD with momentum 0.9 and a cosine schedule stepped per optimizer step, on the softmax cross-entropy; on
multi-label images (VOC) against the image's labels weighted equally (= one training sample per present class,
weight 1/#classes).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from ..data.normalize import Normalizer
from ..models import LitClassifier
from ..utils.loaders import make_loader
from .offline import offline_trainer
from .transfer_source import TransferSource

_LIT_ARGS = set(inspect.signature(LitClassifier.__init__).parameters) - {"self"}


def soft_targets(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-probability targets of multi-label ``y`` ([B,C], 1 = present): the present classes weighted
    equally; and the mask of rows with at least one present class."""
    pos = (y == 1).float()
    count = pos.sum(1, keepdim=True)
    return pos / count.clamp(min=1), count[:, 0] > 0


def new_head(net: nn.Module, num_classes: int) -> nn.Module:
    """Give ``net`` a fresh last layer with ``num_classes`` outputs and return it: timm's ``reset_classifier``
    where the model has one (timm's models, ours), else the last ``nn.Linear`` replaced (torchvision's)."""
    if hasattr(net, "reset_classifier") and hasattr(net, "get_classifier"):
        net.reset_classifier(num_classes)
        return net.get_classifier()
    name = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = getattr(parent, attr)
    head = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    setattr(parent, attr, head)
    return head


class TransferClassifier(LitClassifier):
    """A :class:`LitClassifier` as the transfer modes train it: uint8 batches normalized on the device with the
    pretrained network's record, soft targets for multi-label images, and with ``new_params`` (fine-tuning) two
    learning rates: the new head's parameters at the optimizer's, the pretrained ones at ``lr_mult`` times it."""

    def __init__(self, record: dict[str, Any], lr_mult: float = 1.0, **lit_args: Any):
        super().__init__(**lit_args)
        self.normalize = Normalizer.from_record(record)
        self.lr_mult = float(lr_mult)
        self.new_params: set[int] | None = None

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return (self.normalize(batch[0]), *batch[1:])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        if y.ndim == 2:
            target, keep = soft_targets(y)
            loss = F.cross_entropy(logits[keep], target[keep]) if keep.any() else logits.sum() * 0
        else:
            loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def predict_step(self, batch, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the batch and the dataset index each row actually comes from (an unreadable file's row holds
        the next readable image, which is then scored against its own target)."""
        return self(batch[0]).float().cpu(), batch[2].cpu()

    def _param_groups(self) -> list[dict]:
        params = list(self.model.parameters())
        if self.new_params is None:
            return [{"params": params}]
        lr = float(self.hparams.optimizer["lr"])
        return [
            {"params": [p for p in params if id(p) in self.new_params], "lr": lr},
            {"params": [p for p in params if id(p) not in self.new_params], "lr": lr * self.lr_mult},
        ]


def transfer_classifier(
    source: TransferSource, num_classes: int, pretrained: bool, t: DictConfig, steps: int
) -> TransferClassifier:
    """The network to train: the pretrained one with a new head (``pretrained``), or the checkpoint's architecture
    freshly initialized with ``num_classes`` outputs; its optimizer and schedule from ``transfer.*`` over
    ``steps`` optimizer steps."""
    hp = {k: v for k, v in source.hparams.items() if k in _LIT_ARGS}
    hp.update(
        checkpoint=None,
        compile=False,
        label_smoothing=0.0,
        optimizer={
            "_target_": "torch.optim.SGD",
            "_partial_": True,
            "lr": float(t.lr),
            "momentum": 0.9,
            "weight_decay": float(t.weight_decay),
        },
        scheduler={"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True, "T_max": steps},
        scheduler_interval="step",
        scheduler_monitor=None,
    )
    if not pretrained:
        return TransferClassifier(source.record, **{**hp, "num_classes": num_classes})
    lit = TransferClassifier(source.record, lr_mult=float(t.finetune_lr_mult), **hp)
    lit.model.load_state_dict(source.pretrained_weights())
    lit.new_params = {id(p) for p in new_head(lit.model, num_classes).parameters()}
    return lit


def train_and_predict(
    source: TransferSource,
    num_classes: int,
    train_set: Dataset,
    test_set: Dataset,
    cfg: DictConfig,
    out_dir: str | Path,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train a network on ``train_set`` (``transfer.mode`` finetune or scratch, ``transfer.epochs`` epochs) and
    return its logits on ``test_set`` with the dataset index each row comes from (see
    :meth:`TransferClassifier.predict_step`)."""
    t = cfg.transfer
    train_loader = make_loader(train_set, int(t.train_batch_size), int(cfg.num_workers), shuffle=True)
    steps = max(1, int(t.epochs) * len(train_loader))
    lit = transfer_classifier(source, num_classes, t.mode == "finetune", t, steps)
    trainer = offline_trainer(source.device, out_dir, max_epochs=int(t.epochs), log_every_n_steps=1)
    trainer.fit(lit, train_dataloaders=train_loader)
    test_loader = make_loader(test_set, int(cfg.batch_size), int(cfg.num_workers))
    batches = trainer.predict(lit, dataloaders=test_loader)
    logits, indices = zip(*batches)
    return torch.cat(logits), torch.cat(indices)
