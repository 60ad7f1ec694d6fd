"""What every transfer mode starts from: the pretrained network of the checkpoint (or, for the non-pretrained
baseline without one, how to build a fresh network) and the input format it was trained with.

Why apart from the modes: the feature mode runs the pretrained network as it is, the fine-tune and scratch modes
build a network to train from the same description; both feed images normalized by the same record.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from ..data.normalize import Normalizer
from ..errors import ConfigError, UserError
from ..runs import Checkpoint, read_checkpoint

# normalization for a from-scratch run without a checkpoint to copy it from (ImageNet statistics)
DEFAULT_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "normalization": "standard"}


class TransferSource:
    """The checkpoint (read once, checked at start), its model's constructor arguments and input size, and after
    :meth:`load` the pretrained network on ``device`` and the normalization record it was trained with."""

    def __init__(self, cfg: DictConfig, device: torch.device):
        t = cfg.transfer
        self.device = device
        self.checkpoint: Checkpoint | None = read_checkpoint(cfg.ckpt) if cfg.get("ckpt") else None
        if self.checkpoint is None and t.mode != "scratch":
            raise ConfigError(
                f"transfer.mode={t.mode} needs a pretrained network: pass ckpt=<checkpoint file or run folder> "
                f"(transfer.mode=scratch alone needs none)."
            )
        self.model = None
        self.hparams: dict[str, Any]
        if self.checkpoint is not None:  # the architecture now (cheap, memory-mapped); the weights in load()
            self.hparams = self.checkpoint.hparams
            self.input_size = int(self.hparams["input_size"])
        else:
            self.input_size = int(cfg.data.image_size)
            self.hparams = {"name": str(t.arch), "input_size": self.input_size}
        self.record: dict[str, Any] = DEFAULT_NORMALIZATION
        self.normalize = Normalizer.from_record(self.record).to(self.device)

    def load(self) -> None:
        """The pretrained network and the input normalization it was trained with."""
        if self.checkpoint is None:
            return
        self.model, record = self.checkpoint.model(self.device), self.checkpoint.data
        if not record.get("mean"):
            raise UserError(
                f"{self.checkpoint.path} records no input normalization (it was not saved by LitClassifier during "
                f"training with a datamodule); transfer needs it to feed images the way training did."
            )
        self.record = record
        self.normalize = Normalizer.from_record(record).to(self.device)

    def pretrained_weights(self) -> dict[str, torch.Tensor]:
        """The network's weights as the checkpoint holds them (keys of ``LitClassifier.model``)."""
        return {k.removeprefix("model."): v for k, v in self.checkpoint.state_dict.items() if k.startswith("model.")}
