"""``LitClassifier``: cross-entropy training of any registered model with top-1/top-5 accuracy and error
(torchmetrics, synced across DDP ranks).

The constructor takes plain config (model name and layer table, optimizer and scheduler as Hydra ``_partial_`` nodes)
rather than built objects, so a checkpoint alone rebuilds the model: ``LitClassifier.load_from_checkpoint(p)``
works in the offline tasks without the training config.

GPU path: ``channels_last`` stores the conv weights (and converts inputs) NHWC, the layout tensor cores want
for bf16 convolutions. ``compile`` wraps the network in ``torch.compile`` for the *training* step only; the
validation step and every diagnostic use the eager module ``self.model`` (the same parameters). Why: dynamo
does not guard on forward hooks added after compilation, so the diagnostics' activation hooks would be
silently skipped inside a compiled graph; validation is a small, forward-only share of an epoch.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric

from ..utils.options import at_least, between, greater_than, one_of, option_rules
from .init import INIT_SCHEMES, first_conv
from .options import check_model
from .registry import LIBRARIES, build_model


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x


# devices with PyTorch's fused optimizer kernels (torch.optim.optimizer._get_fused_kernels_supported_devices; the
# kernels take float64/32/16 and bfloat16 parameters: torch.optim.AdamW's documentation of ``fused``)
FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def fused_kernel(make: Any, config: Any, groups: list[dict]) -> dict[str, bool]:
    """``{"fused": True}`` when the optimizer class has a fused kernel (AdamW, Adam, SGD), the config does not
    choose, and every parameter is a float tensor on a device that has the kernel; else ``{}`` (PyTorch's own
    default). Why: PyTorch's default on CPU updates one tensor at a time in Python (``_single_tensor_adam``), for
    the default network a large share of each CPU training step; the fused kernel computes the same update (up to
    float round-off: tests/test_optimizer.py) in one call per tensor. PyTorch leaves fused off by default only to
    give the new kernels "sufficient bake-in time" (its documentation). The choice is the optimizer's own
    ``fused`` option: ``+model.optimizer.fused=false`` restores the loop."""
    if config is not None and "fused" in config:
        return {}
    if "fused" not in inspect.signature(getattr(make, "func", make)).parameters:
        return {}
    params = [p for g in groups for p in g["params"]]
    if not params or any(not p.is_floating_point() or p.device.type not in FUSED_DEVICES for p in params):
        return {}
    return {"fused": True}


@option_rules(
    check_model,
    library=one_of(LIBRARIES),
    init=one_of(INIT_SCHEMES),
    num_classes=at_least(1),
    input_size=at_least(1),
    init_std=greater_than(0.0),
    label_smoothing=between(0.0, 1.0),
    scheduler_interval=one_of(("step", "epoch")),
)
class LitClassifier(L.LightningModule):
    """The ``model`` config node builds this class: its parameters are the node's options, declared here once
    (the config check takes names, types and defaults from this signature, and the rules above; conf/model/)."""

    def __init__(
        self,
        name: str = "zfnet",  # a preset (zfnet, alexnet, Table 3 variants), or the library's model name
        arch: dict[str, Any] | None = None,  # zfnet_exp only: the layer table {name: layer or null} (models/arch.py)
        library: str = "zfnet_exp",  # zfnet_exp | timm | torchvision
        checkpoint: str | None = None,  # a local weights file to start from (nothing is downloaded)
        num_classes: int | None = None,  # None: the datamodule's (train.py), else ImageNet's 1000
        input_size: int = 224,
        init: str | None = "paper",  # paper | kaiming | None (keep the library's own initialization)
        init_std: float = 0.01,  # the paper scheme's N(0, std^2)
        zero_head: bool = False,  # fc8 starts at zero: uniform predictions
        first_conv: dict[str, Any] | None = None,  # {init_std, lr_scale, weight_decay} (models/options.py)
        overrides: dict[str, Any] | None = None,  # keyword arguments for a timm/torchvision constructor
        optimizer: dict[str, Any] | None = None,  # a Hydra _partial_ node (conf/model/optimizer/)
        scheduler: dict[str, Any] | None = None,  # a Hydra _partial_ node (conf/model/scheduler/)
        scheduler_interval: str = "epoch",  # step | epoch
        scheduler_monitor: str | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,  # NHWC weights and inputs (GPU path)
        compile: bool = False,  # torch.compile of the training step only (diagnostics stay eager)
        compile_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        num_classes = 1000 if num_classes is None else num_classes
        if checkpoint and library == "zfnet_exp":
            # a published ImageNet weight file fixes the network: its layer table replaces model.arch (said in the
            # log), and is what the hyper-parameters record, so this run's checkpoints rebuild that network
            from .pretrained import published_model_config

            structure_only = torch.empty(0).is_meta  # train.py's up-front check builds under torch.device("meta")
            published = published_model_config(checkpoint, _plain(arch), announce=not structure_only)
            if published is not None:
                name, arch = published
        self.save_hyperparameters(
            {
                "name": name,
                "arch": _plain(arch),
                "library": library,
                "checkpoint": checkpoint,
                "num_classes": int(num_classes),
                "input_size": int(input_size),
                "init": init,
                "init_std": init_std,
                "zero_head": zero_head,
                "first_conv": _plain(first_conv) or {},
                "overrides": _plain(overrides) or {},
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "scheduler_monitor": scheduler_monitor,
                "label_smoothing": label_smoothing,
                "channels_last": bool(channels_last),
                "compile": bool(compile),
                "compile_options": _plain(compile_options) or {},
            }
        )
        self.model = build_model(
            library,
            name,
            self.hparams.arch,
            num_classes=num_classes,
            input_size=input_size,
            init=init,
            init_std=init_std,
            zero_head=zero_head,
            checkpoint=checkpoint,
            first_conv_std=(self.hparams.first_conv or {}).get("init_std"),
            overrides=self.hparams.overrides,
        )
        # Lightning's model summary runs this through forward: real per-layer output sizes and FLOPs
        self.example_input_array = torch.zeros(1, 3, int(input_size), int(input_size))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._compiled: list[nn.Module] = []  # a list, so the compiled wrapper is not a second registered submodule
        # Every epoch metric is a torchmetrics object handed to self.log, so Lightning syncs it across DDP
        # ranks and resets it. Accuracy and error are means of the same per-sample top-k hits (one topk call,
        # so err == 1 - acc exactly, ties included) rather than "1 - acc.compute()" in an epoch-end hook: a
        # manual compute() there issues collectives of its own and crashed gloo under DDP (measured).
        self.top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric()
                for stage in ("train", "val")
                for name in ("acc_top1", "acc_top5", "err_top1", "err_top5", "loss")
            }
        )

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.get("channels_last") and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # no copy when the batch already is
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._input(x))

    @property
    def train_network(self) -> nn.Module:
        """What the training step runs: the compiled network when ``compile=True``, else the eager one."""
        if self.hparams.get("compile") and not self._compiled:
            self._compiled.append(torch.compile(self.model, **(self.hparams.get("compile_options") or {})))
        return self._compiled[0] if self._compiled else self.model

    @staticmethod
    def _unpack(batch):
        x, y = batch[0], batch[1]
        return x, y

    def _update_and_log(self, stage: str, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        hits = logits.detach().topk(self.top5, dim=1).indices == y[:, None]
        top1, top5 = hits[:, 0].float(), hits.any(dim=1).float()
        values = {"acc_top1": top1, "acc_top5": top5, "err_top1": 1 - top1, "err_top5": 1 - top5, "loss": loss.detach()}
        for name, value in values.items():
            metric = self.metrics[f"{stage}_{name}"]
            metric(value)  # forward: updates the epoch state and gives Lightning the step value
            on_step = stage == "train" and name == "loss"
            self.log(f"{stage}/{name}", metric, on_step=on_step, on_epoch=True, prog_bar=name in ("loss", "acc_top1"))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits = self.train_network(self._input(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self._update_and_log("train", logits, y, loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = self._unpack(batch)
        logits = self(x)
        self._update_and_log("val", logits, y, F.cross_entropy(logits, y))

    def configure_optimizers(self):
        if not self.hparams.optimizer:
            raise ValueError("LitClassifier needs an optimizer config (recipe.optimizer)")
        make = instantiate(self.hparams.optimizer)
        groups = self._param_groups()
        optimizer = make(params=groups, **fused_kernel(make, self.hparams.optimizer, groups))
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

    def _param_groups(self) -> list[dict]:
        """All parameters in one group, or the first convolution in a group of its own when ``first_conv``
        sets ``lr_scale`` or ``weight_decay`` (schedulers scale each group's own initial lr, so the ratio holds;
        a compiled or DDP-wrapped model shares these same parameter objects)."""
        fc = self.hparams.get("first_conv") or {}
        scale, decay = fc.get("lr_scale"), fc.get("weight_decay")
        conv = first_conv(self.model)
        if conv is None or ((scale is None or scale == 1.0) and decay is None):
            return [{"params": list(self.parameters())}]
        own = {id(p) for p in conv.parameters()}
        first: dict = {"params": [p for p in self.parameters() if id(p) in own]}
        if scale is not None and scale != 1.0:
            first["lr"] = float(self.hparams.optimizer.get("lr", 1e-3)) * float(scale)
        if decay is not None:
            first["weight_decay"] = float(decay)
        return [{"params": [p for p in self.parameters() if id(p) not in own]}, first]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # model.checkpoint only seeds a new run: this checkpoint holds every weight, so rebuilding from it
        # (load_from_checkpoint, analyze.py) must not need that file again
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"]["checkpoint"] = None
