"""The optimizer ``LitClassifier.configure_optimizers`` builds takes PyTorch's fused kernel (one call per tensor)
unless the config chooses, and its steps are the steps of PyTorch's reference loop.

Reference: the same optimizer class with ``foreach=False, fused=False`` (``torch.optim``'s single-tensor for-loop,
its documented reference implementation), stepped on a copy of the same parameters with the same gradients."""

from __future__ import annotations

import pytest
import torch
from helpers import compose_train
from hydra.utils import instantiate

# a narrow network: the optimizer is what is tested
NARROW = [
    "model.arch.conv2.out_channels=16",
    "model.arch.conv3.out_channels=16",
    "model.arch.conv4.out_channels=16",
    "model.arch.conv5.out_channels=16",
    "model.arch.fc6.units=32",
    "model.arch.fc7.units=32",
    "~model.scheduler",  # configure_optimizers then returns the optimizer alone (no Trainer needed)
    "logger=none",
]


def _lit(tmp_path, data_dir, *overrides: str):
    cfg = compose_train([*NARROW, *overrides], tmp_path / "run", data_dir)
    torch.manual_seed(0)
    return instantiate(cfg.model, num_classes=10)


@pytest.mark.parametrize("recipe", ["fast", "paper"])  # AdamW (default) with conv1's own decay; SGD + momentum
def test_default_optimizer_is_fused_and_steps_like_the_reference_loop(recipe, tmp_path, data_dir):
    lit = _lit(tmp_path, data_dir, f"recipe={recipe}")
    opt = lit.configure_optimizers()
    assert opt.defaults["fused"] is True, type(opt).__name__
    ref_params = {id(p): p.detach().clone().requires_grad_() for g in opt.param_groups for p in g["params"]}
    ref_groups = [
        {**{k: v for k, v in g.items() if k not in ("params", "fused", "foreach")},
         "params": [ref_params[id(p)] for p in g["params"]]}
        for g in opt.param_groups
    ]  # fmt: skip
    ref = type(opt)(ref_groups, foreach=False, fused=False)
    start = {k: v.detach().clone() for k, v in ref_params.items()}
    assert len(opt.param_groups) == (2 if recipe == "fast" else 1)  # conv1's own weight decay: its own group
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.randn(p.shape, generator=generator)
                ref_params[id(p)].grad = p.grad.clone()
        opt.step()
        ref.step()
    for group in opt.param_groups:
        for p in group["params"]:
            torch.testing.assert_close(p.detach(), ref_params[id(p)].detach(), rtol=1e-5, atol=1e-7)
            assert not torch.equal(p.detach(), start[id(p)])  # five steps moved every tensor


def test_the_config_can_turn_the_fused_kernel_off(tmp_path, data_dir):
    opt = _lit(tmp_path, data_dir, "+model.optimizer.fused=false").configure_optimizers()
    assert opt.defaults["fused"] is False
