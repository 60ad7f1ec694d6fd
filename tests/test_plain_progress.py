"""The plain progress lines show only what is current where they are printed: a step line the values logged at
that step, an epoch line the validation that has just ended; never the previous epoch's training accuracy under
this epoch's number. Reference: a module that logs values encoding the step and epoch they belong to."""

from __future__ import annotations

import io
import re

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zfnet_exp.callbacks.plain_progress import PlainProgress


class _Encoded(L.LightningModule):
    """train/loss = the step it is logged at; train/acc_top1 (epoch only) = epoch + 0.5; val/loss = 10 + epoch."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def training_step(self, batch, _):
        self.log("train/loss", float(self.global_step), on_step=True, on_epoch=True)
        self.log("train/acc_top1", self.current_epoch + 0.5, on_step=False, on_epoch=True)
        return self.net(batch[0]).sum()

    def validation_step(self, batch, _):
        self.log("val/loss", 10.0 + self.current_epoch, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lines_hold_only_current_values(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2)  # 3 steps per epoch
    out = io.StringIO()
    trainer = L.Trainer(
        max_epochs=3,
        callbacks=[PlainProgress(every_n_steps=1, stream=out)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(_Encoded(), data, data)
    text = out.getvalue()
    steps = re.findall(r"^epoch (\d)/3 step (\d)/9 .*\| train/loss (\S+)$", text, re.M)
    assert [(int(e), int(s)) for e, s, _ in steps] == [((s - 1) // 3 + 1, s) for s in range(1, 10)], text
    for _, step, loss in steps:
        assert float(loss) == int(step) - 1  # logged in the training step that this optimizer step ended
    done = re.findall(r"^epoch (\d)/3 done step (\d)/9 .*\| train/loss (\S+) val/loss (\S+)$", text, re.M)
    assert [(e, s) for e, s, _, _ in done] == [("1", "3"), ("2", "6"), ("3", "9")], text
    for epoch, step, loss, val in done:
        assert float(loss) == int(step) - 1 and float(val) == 10 + int(epoch) - 1
    assert "acc_top1" not in text  # the epoch's training accuracy exists only after its epoch line
