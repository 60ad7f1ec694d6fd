"""Filter renormalization (paper Sec. 3): filters whose RMS exceeds the radius are rescaled to it, after every
optimizer step, and nothing else changes."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from zfnet_exp.callbacks import FilterRenormalization
from zfnet_exp.models import create_model, renormalize_filters


def _rms(w):
    return w.pow(2).mean(dim=(1, 2, 3)).sqrt()


def test_rescales_only_filters_above_radius():
    conv = nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(4, 3, 3, 3))
        conv.weight[0].mul_(0.01 / _rms(conv.weight)[0])  # below the radius: untouched
    before = conv.weight.detach().clone()
    model = nn.Sequential(conv)
    clipped = renormalize_filters(model, radius=0.1)
    after = conv.weight.detach()
    assert clipped == 3
    assert torch.equal(after[0], before[0])
    assert torch.allclose(_rms(after)[1:], torch.full((3,), 0.1), atol=1e-6)
    # rescaled, not reshaped: each filter keeps its direction
    for i in range(1, 4):
        assert torch.allclose(after[i] / after[i].norm(), before[i] / before[i].norm(), atol=1e-6)


def test_layer_selection_and_errors():
    model = create_model("zfnet", num_classes=10, input_size=64, init="kaiming")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(10)
    conv2_before = model.features.conv2.weight.detach().clone()
    renormalize_filters(model, radius=0.1, layers=["conv1"])
    assert _rms(model.features.conv1.weight).max() <= 0.1 + 1e-6
    assert torch.equal(model.features.conv2.weight, conv2_before)
    with pytest.raises(ValueError, match="no conv layer named"):
        renormalize_filters(model, layers=["conv9"])


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=50.0)  # large steps push filters past the radius


def test_callback_applies_after_every_optimizer_step(tmp_path, monkeypatch):
    """8 batches with 2-batch gradient accumulation are 4 optimizer steps: the weights every forward pass sees are
    within the radius, and the filters are rescaled once per optimizer step (4 calls), not once per batch (8).
    Reference: the trainer's own step counter seen by a spy callback, and a counting wrapper around
    ``renormalize_filters``."""
    import zfnet_exp.callbacks.filter_renorm as module

    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,)))
    model = _Tiny()
    seen, calls = [], []

    def counting(*args, **kwargs):
        calls.append(trainer.global_step)
        return renormalize_filters(*args, **kwargs)

    monkeypatch.setattr(module, "renormalize_filters", counting)

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args):
            seen.append(_rms(pl_module.net[0].weight.detach()).max().item())

        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append(_rms(pl_module.net[0].weight.detach()).max().item())

    cb = FilterRenormalization(radius=0.1)
    trainer = L.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[cb, Spy()],
        default_root_dir=tmp_path,
        accumulate_grad_batches=2,
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=2))
    assert cb.clipped_total > 0
    # [start, end] of each batch: the first optimizer step ends batch 2 (index 3); from then on every forward pass
    # sees renormalized filters, and before it the initial filters (RMS > radius here) were left alone
    assert len(seen) == 2 * 8 and max(seen[3:]) <= 0.1 + 1e-6 and seen[0] == seen[2] > 0.1
    assert calls == [1, 2, 3, 4]  # once after each optimizer step
