"""Attribution wrappers: conventions checked against hand-written autograd references (no Captum in the
reference path), plus shapes, registry and the comparison figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfnet_exp.diagnostics.attribution import (
    _REGISTRY,
    attribute,
    available_methods,
    reduce_channels,
    register,
)
from zfnet_exp.viz.comparison import comparison_figure


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 4),
    ).eval()


def test_registry_and_shapes(zf):
    names = set(available_methods())
    assert {"gradcam", "saliency", "guided_backprop", "deconvnet", "deconvnet_zf", "integrated_gradients"} <= names
    x = torch.randn(2, 3, 64, 64)
    for name in sorted(names):
        kw = {"n_steps": 8} if name == "integrated_gradients" else {}
        out = attribute(name, zf, x, [1, 2], **kw)
        assert out.shape == (2, 64, 64) and out.dtype == torch.float32 and torch.isfinite(out).all(), name
        assert not out.requires_grad
    assert attribute("saliency", zf, x[0], 3).shape == (1, 64, 64)
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute("lime", zf, x, 0)
    with pytest.raises(ValueError, match="target"):
        attribute("saliency", zf, x, [1, 2, 3])


def test_gradcam_equals_hand_computed(zf):
    """Reference: hook conv5 (relu5 output), autograd d logit/d A, weights = spatial mean, ReLU of the
    weighted sum, bilinear upsampling (align_corners=False)."""
    x = torch.randn(3, 3, 64, 64)
    target = torch.tensor([0, 3, 5])
    store = {}
    handle = zf.features.relu5.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = zf(x)
    handle.remove()
    a = store["a"]
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), a)[0]
    cam = F.relu((grads.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    ref = F.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    out = attribute("gradcam", zf, x, target)
    torch.testing.assert_close(out, ref.detach(), atol=1e-6, rtol=1e-5)
    raw = attribute("gradcam", zf, x, target, relu=False, upsample="nearest")
    assert (raw < 0).any()  # without the ReLU negative evidence survives


def test_saliency_equals_autograd():
    model = small_cnn()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    g = torch.autograd.grad(model(x)[:, 1].sum(), x)[0]
    torch.testing.assert_close(attribute("saliency", model, x.detach(), 1), g.abs().amax(1))
    torch.testing.assert_close(attribute("saliency", model, x.detach(), 1, reduce="sum"), g.sum(1))


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


def test_guided_backprop_equals_hand_written():
    """Reference: the same network written functionally with a guided ReLU (Springenberg et al.)."""
    model = small_cnn()
    conv1, _, pool, conv2, _, flat, fc = model
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    h = _GuidedReLU.apply(conv2(pool(_GuidedReLU.apply(conv1(x)))))
    g = torch.autograd.grad(fc(flat(h))[:, 2].sum(), x)[0]
    out = attribute("guided_backprop", model, x.detach(), 2, reduce="sum")
    torch.testing.assert_close(out, g.sum(1), atol=1e-6, rtol=1e-5)


def test_integrated_gradients_linear_model_is_exact():
    """For f(x) = w . x, IG from baseline 0 is exactly w * x; reduced by channel sum."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    out = attribute("integrated_gradients", model, x, 1, n_steps=4, internal_batch_size=3)
    ref = (model[1].weight[1].view(3, 8, 8) * x).sum(1)
    torch.testing.assert_close(out, ref.detach(), atol=1e-5, rtol=1e-4)
    # completeness: the map sums to f(x) - f(baseline)
    with torch.no_grad():
        diff = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(out.sum((1, 2)), diff, atol=1e-4, rtol=1e-4)


def test_reduce_channels_and_register():
    a = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])
    assert reduce_channels(a, "max_abs").item() == 3.0
    assert reduce_channels(a, "sum_abs").item() == 6.0
    assert reduce_channels(a, "sum").item() == 0.0
    assert abs(reduce_channels(a, "l2").item() - 14**0.5) < 1e-6
    with pytest.raises(ValueError):
        reduce_channels(a, "mean")

    @register("_test_constant", "constant map", overwrite=True)
    def _constant(model, images, target, value=1.0):
        return torch.full((images.shape[0], *images.shape[-2:]), value)

    try:
        out = attribute("_test_constant", small_cnn(), torch.randn(2, 3, 16, 16), 0, value=2.0)
        assert torch.all(out == 2.0)
        with pytest.raises(ValueError, match="already registered"):
            register("_test_constant")(_constant)
    finally:
        _REGISTRY.pop("_test_constant", None)


def test_comparison_figure_shows_the_image_and_each_map(tmp_path):
    """Panel 0 is the given image; each map panel overlays the map min-max scaled to [0, 1] (reference: the
    hand-scaled map), so a map's hot pixel is where the panel is brightest."""
    img = torch.rand(3, 32, 32)
    hot = torch.zeros(32, 32)
    hot[10, 20] = 5.0
    ramp = torch.arange(32.0)[None].expand(32, 32) * 3 - 7
    fig = comparison_figure(img, {"hot": hot, "ramp": ramp}, title="t")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["image", "hot", "ramp"]
    np.testing.assert_allclose(axes[0].images[0].get_array(), img.permute(1, 2, 0).numpy(), rtol=0, atol=1e-7)
    shown_hot = np.asarray(axes[1].images[-1].get_array())
    assert shown_hot.max() == 1.0 and shown_hot.argmax() == 10 * 32 + 20 and shown_hot.min() == 0.0
    np.testing.assert_allclose(axes[2].images[-1].get_array(), ((ramp + 7) / 93).numpy(), atol=1e-6)
    fig.savefig(tmp_path / "cmp.png")  # renders without pyplot
