"""``LitClassifier``: cross-entropy training of any registered model with torchmetrics top-1/top-5.

The constructor takes plain config (architecture name, optimizer and scheduler as Hydra ``_partial_`` nodes)
rather than built objects, so a checkpoint alone rebuilds the model: ``LitClassifier.load_from_checkpoint(p)``
works in the offline tasks without the training config.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric, MinMetric
from torchmetrics.classification import MulticlassAccuracy

from .registry import create_model


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x


class LitClassifier(L.LightningModule):
    def __init__(
        self,
        arch: str = "zfnet",
        num_classes: int = 1000,
        input_size: int = 224,
        init: str = "paper",
        init_std: float = 0.01,
        zero_head: bool = False,
        overrides: dict | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters({
            "arch": arch, "num_classes": int(num_classes), "input_size": int(input_size), "init": init,
            "init_std": init_std, "zero_head": zero_head, "overrides": _plain(overrides) or {}, "optimizer": _plain(optimizer),
            "scheduler": _plain(scheduler), "scheduler_interval": scheduler_interval,
            "scheduler_monitor": scheduler_monitor, "label_smoothing": label_smoothing,
        })
        self.model = create_model(arch, num_classes=num_classes, input_size=input_size, init=init,
                                  init_std=init_std, zero_head=zero_head, **(self.hparams.overrides or {}))
        top5 = min(5, num_classes)
        self.train_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.train_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_err1_best = MinMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @staticmethod
    def _unpack(batch):
        x, y = batch[0], batch[1]
        return x, y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.train_loss(loss.detach())
        self.train_acc1(logits.detach(), y)
        self.train_acc5(logits.detach(), y)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc_top1", self.train_acc1, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc_top5", self.train_acc5, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # torchmetrics objects hold their epoch state until Lightning resets them after this hook
        self.log("train/err_top1", 1.0 - self.train_acc1.compute())
        self.log("train/err_top5", 1.0 - self.train_acc5.compute())

    def on_train_start(self) -> None:
        self.val_err1_best.reset()  # forget the sanity-check pass

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = self._unpack(batch)
        logits = self(x)
        self.val_loss(F.cross_entropy(logits, y))
        self.val_acc1(logits, y)
        self.val_acc5(logits, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc_top1", self.val_acc1, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc_top5", self.val_acc5, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        err1 = 1.0 - self.val_acc1.compute()
        self.log("val/err_top1", err1)
        self.log("val/err_top5", 1.0 - self.val_acc5.compute())
        if not self.trainer.sanity_checking:
            self.val_err1_best(err1)
            self.log("val/err_top1_best", self.val_err1_best.compute())

    def configure_optimizers(self):
        if not self.hparams.optimizer:
            raise ValueError("LitClassifier needs an optimizer config (recipe.optimizer)")
        optimizer = instantiate(self.hparams.optimizer)(params=self.trainer.model.parameters())
        if not self.hparams.scheduler:
            return optimizer
        make = instantiate(self.hparams.scheduler)
        kwargs = {}
        if "total_steps" in inspect.signature(getattr(make, "func", make)).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = make(optimizer, **kwargs)
        config = {"scheduler": scheduler, "interval": self.hparams.scheduler_interval}
        if self.hparams.scheduler_monitor:
            config["monitor"] = self.hparams.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # what offline tasks need to feed images the way training did
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "normalization_params") and dm.mean is not None:
            checkpoint["zfnet_data"] = {**dm.normalization_params(), "image_size": dm.image_size,
                                        "classes": getattr(dm, "classes", None),
                                        "root": str(dm.root) if getattr(dm, "root", None) else None}
