"""deconvnet.project against independent references.

References: (1) a brute-force ZF deconvnet written here from the paper's description with no autograd
(python loop over pooling windows that scatter-*adds* into the recorded switch positions, ReLU,
``F.conv_transpose2d`` without bias, LRN skipped); (2) Captum's ``NeuronDeconvolution`` (starts from 1.0,
so it is scaled by the unit's activation; it back-propagates LRN's true Jacobian, so it is compared on
models without LRN, or with ``skip_norm=False``); (3) the per-unit loop for the batched call and the
uncropped pass for the cropped one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfnet_exp.diagnostics.deconvnet import DeconvnetNotApplicable, project
from zfnet_exp.diagnostics.geometry import layer_geometry
from zfnet_exp.diagnostics.layers import capture_activations

SIZE = 80  # ZFNet: conv1 38, pool1 19, conv2 8, pool2 4, conv3-5 4; AlexNet: conv1 19, conv2 9, conv3-5 4


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Per-projection max abs difference over the reference's max abs value, worst row."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    scale = b.abs().amax(1).clamp_min(1e-30)
    return float(((a - b).abs().amax(1) / scale).max())


NARROW = {1: 24, 2: 32, 3: 48, 4: 48, 5: 32}  # same kernels/strides/pools/LRN as the paper, ~10x fewer FLOPs


@pytest.fixture
def make(tiny_model):
    """The shared tiny-model builder at this file's sizes; ``no_lrn`` swaps LRN for the identity (for
    comparisons with Captum, which back-propagates LRN's true Jacobian)."""

    def build(name: str, seed: int = 0, size: int = SIZE, no_lrn: bool = False) -> nn.Module:
        m = tiny_model(name, size=size, classes=10, widths=NARROW, fc_units=64, seed=seed)
        if no_lrn:
            for n, mod in list(m.features.named_children()):
                if isinstance(mod, nn.LocalResponseNorm):
                    setattr(m.features, n, nn.Identity())
        return m

    return build


def reference_project(features: nn.Sequential, image: torch.Tensor, stop: str, channel: int) -> torch.Tensor:
    """Brute-force ZF deconvnet of the strongest unit of ``channel`` at module ``stop`` (one image [1,3,H,W])."""
    records = []
    x = image
    with torch.no_grad():
        for name, m in features.named_children():
            if isinstance(m, nn.MaxPool2d):
                y, idx = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, return_indices=True)
                records.append(("pool", x.shape, idx))
                x = y
            elif isinstance(m, nn.Conv2d):
                records.append(("conv", x.shape, m))
                x = m(x)
            elif isinstance(m, nn.ReLU):
                records.append(("relu",))
                x = torch.relu(x)
            else:  # LRN / Identity: forward as is, skipped on the way down
                records.append(("skip",))
                x = m(x)
            if name == stop:
                break
        plane = x[0, channel]
        k = int(plane.flatten().argmax())
        uy, ux = divmod(k, plane.shape[1])
        sig = torch.zeros_like(x)
        sig[0, channel, uy, ux] = x[0, channel, uy, ux]
        for rec in reversed(records):
            if rec[0] == "relu":
                sig = sig.clamp(min=0)
            elif rec[0] == "pool":
                in_shape, idx = rec[1], rec[2].numpy()
                s = sig.numpy()
                out = np.zeros((in_shape[0], in_shape[1], in_shape[2] * in_shape[3]), dtype=np.float64)
                bb, cc = np.arange(s.shape[0])[:, None], np.arange(s.shape[1])[None, :]
                for oy in range(s.shape[2]):  # one window position at a time: every (b, c) pair is a
                    for ox in range(s.shape[3]):  # different plane, so += cannot collide within a step
                        out[bb, cc, idx[:, :, oy, ox]] += s[:, :, oy, ox]
                sig = torch.from_numpy(out.reshape(in_shape)).to(sig.dtype)
            elif rec[0] == "conv":
                in_shape, m = rec[1], rec[2]
                full = [(sig.shape[2 + i] - 1) * m.stride[i] - 2 * m.padding[i] + m.kernel_size[i] for i in range(2)]
                outpad = tuple(in_shape[2 + i] - full[i] for i in range(2))
                sig = F.conv_transpose2d(sig, m.weight, None, m.stride, m.padding, outpad)
    return sig


def strong_channels(model: nn.Module, x: torch.Tensor, layer: str, n: int) -> list[int]:
    with torch.no_grad(), capture_activations(model, [layer]) as acts:
        model(x)
    return acts[layer][0].amax((1, 2)).argsort(descending=True)[:n].tolist()


@pytest.mark.parametrize("name", ["zfnet", "alexnet"])
def test_matches_bruteforce_reference(name, make):
    model = make(name)
    torch.manual_seed(1)
    x = torch.randn(1, 3, SIZE, SIZE)
    for n in (1, 2, 3, 4, 5):
        layer = f"conv{n}"
        c = strong_channels(model, x, layer, 1)[0]
        ref = reference_project(model.features, x, f"relu{n}", c)
        assert ref.abs().max() > 0
        for crop in (True, False):
            ours = project(model, x, layer, c, crop=crop)
            assert rel_err(ours, ref) < 1e-5, (layer, c, crop)


def _captum(model, module, x, c, y, xx):
    from captum.attr import NeuronDeconvolution

    return NeuronDeconvolution(model, module).attribute(x, neuron_selector=(c, y, xx))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("no_lrn", [True, False])
def test_matches_captum(no_lrn, make):
    """Without LRN: the ZF default equals Captum x activation. With LRN: skip_norm=False equals Captum."""
    model = make("zfnet", no_lrn=no_lrn)
    torch.manual_seed(2)
    x = torch.randn(2, 3, SIZE, SIZE)
    layers = (
        (("conv2", model.features.relu2), ("conv5", model.features.relu5))
        if no_lrn
        else (("conv5", model.features.relu5),)
    )
    for layer, module in layers:
        with torch.no_grad():
            act = model.features[: list(model.features).index(module) + 1](x)
        c = strong_channels(model, x, layer, 1)[0]
        ours = project(model, x, layer, c, skip_norm=no_lrn)
        for i in range(2):
            k = int(act[i, c].flatten().argmax())
            uy, ux = divmod(k, act.shape[3])
            ref = _captum(model, module, x[i : i + 1], c, uy, ux) * act[i, c, uy, ux]
            assert ref.abs().max() > 0 and rel_err(ours[i : i + 1], ref) < 1e-5, (layer, i)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unit_map_matches_captum_map_selector(make):
    """unit='map' seeds every unit with its activation a: the deconvnet 'gradient' of sum(a^2)/2."""
    from captum.attr import NeuronDeconvolution

    model = make("zfnet", no_lrn=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    c = strong_channels(model, x, "conv3", 1)[0]
    ours = project(model, x, "conv3", c, unit="map")
    ref = NeuronDeconvolution(model, model.features.relu3).attribute(
        x, neuron_selector=lambda out: 0.5 * (out[:, c] ** 2).sum((1, 2))
    )
    assert ours.abs().max() > 0 and rel_err(ours, ref) < 1e-5


def test_overlapping_pool_switches_add_up():
    """5x5 input with one peak at the centre: it is the argmax of all four 3x3/2 windows."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(3, 2)).eval()
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    proj = project(model, x, "2", 0, unit="map")
    expected = torch.zeros_like(x)
    expected[0, 0, 2, 2] = 4.0  # four windows share the switch: the exact transpose sums them
    assert torch.equal(proj, expected)
    pooled, idx = F.max_pool2d(x, 3, 2, return_indices=True)
    unpooled = nn.MaxUnpool2d(3, 2)(pooled, idx, output_size=x.shape[-2:])
    assert unpooled[0, 0, 2, 2] == 1.0  # MaxUnpool2d writes instead of adding: it keeps one window only
    assert not torch.equal(unpooled, proj)


@pytest.mark.parametrize("name", ["zfnet", "alexnet"])
def test_batched_equals_per_unit_loop_and_crop_equals_full(name, make):
    model = make(name, seed=3)
    torch.manual_seed(4)
    images = torch.randn(3, 3, SIZE, SIZE)
    for layer in ("conv1", "conv4", "features.pool5"):
        h, w = layer_geometry(model, layer, SIZE).map_size
        # corners, borders and the interior, several units of one image, per-row channels
        pos = torch.tensor([[0, 0], [h - 1, w - 1], [h // 2, w // 2], [0, w - 1], [h - 1, 0], [h // 2, 0]])
        idx = torch.tensor([0, 1, 2, 0, 0, 1])
        with torch.no_grad(), capture_activations(model, [layer]) as acts:
            model(images)
        a = acts[layer][idx, :, pos[:, 0], pos[:, 1]]  # [6, C]: pick each row's strongest channel there
        ch = a.argmax(1)
        assert bool((a.amax(1) > 0).all())
        batched = project(model, images[idx], layer, ch, positions=pos)
        full = project(model, images[idx], layer, ch, positions=pos, crop=False)
        assert rel_err(batched, full) < 1e-5, layer
        for i in (0, 1, 2):
            single = project(model, images[idx[i] : idx[i] + 1], layer, int(ch[i]), positions=pos[i : i + 1])
            assert single.abs().max() > 0 and rel_err(batched[i : i + 1], single) < 1e-5, (layer, i)
        # unit="max": same result with and without crops, and equal to passing the argmax positions
        c3 = torch.tensor([1, 2, 3])
        mx = project(model, images, layer, c3)
        assert rel_err(mx, project(model, images, layer, c3, crop=False)) < 1e-5
        maps = acts[layer][torch.arange(3), c3].flatten(1)
        arg = maps.argmax(1)
        argpos = torch.stack([arg // acts[layer].shape[3], arg % acts[layer].shape[3]], 1)
        assert rel_err(mx, project(model, images, layer, c3, positions=argpos)) < 1e-5


def test_projection_lives_in_the_receptive_field(make):
    model = make("alexnet", seed=7)
    x = torch.randn(4, 3, SIZE, SIZE)
    for layer in ("conv2", "conv5"):
        geom = layer_geometry(model, layer, SIZE)
        h, w = geom.map_size
        pos = torch.tensor([[0, 0], [h - 1, w - 1], [h // 2, 1], [1, w // 2]])
        proj = project(model, x, layer, 0, positions=pos, from_activation=False)
        for i, (y, xx) in enumerate(pos.tolist()):
            y0, x0, y1, x1 = geom.box(y, xx)
            outside = proj[i].clone()
            outside[:, y0:y1, x0:x1] = 0
            assert proj[i, :, y0:y1, x0:x1].abs().max() > 0 and not outside.any()


class _FunctionalReLUNet(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.pool1 = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.conv1(x)
        x = {"F.relu": F.relu, "torch.relu": torch.relu, "Tensor.relu": torch.Tensor.relu}[self.how](x)
        return self.pool1(x)


@pytest.mark.parametrize("how", ["F.relu", "torch.relu", "Tensor.relu"])
@pytest.mark.parametrize("crop", [True, False])
def test_functional_relu_is_refused(how, crop):
    model = _FunctionalReLUNet(how)
    with pytest.raises(DeconvnetNotApplicable, match="functional ReLU.*use nn.ReLU modules"):
        project(model, torch.randn(2, 3, 12, 12), "pool1", 0, crop=crop)


def test_functional_relu_after_the_layer_is_irrelevant():
    model = _FunctionalReLUNet("F.relu")
    out = project(model, torch.randn(2, 3, 12, 12), "conv1", 1)  # the pass stops before the F.relu
    assert out.shape == (2, 3, 12, 12)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torchvision_alexnet_inplace_relus():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(5)
    model = torchvision.models.alexnet(weights=None).eval()  # in-place ReLUs, no LRN, floor-mode pools
    x = torch.randn(2, 3, 96, 96)
    x0 = x.clone()
    layer, module = "features.9", model.features[9]  # relu4
    with torch.no_grad():
        act = model.features[:10](x)
    c = int(act[0].amax((1, 2)).argmax())
    ours = project(model, x, layer, c)
    assert torch.equal(x, x0)  # the in-place ReLUs never touched the caller's tensors
    assert rel_err(ours, project(model, x, layer, c, crop=False)) < 1e-6
    for i in range(2):
        k = int(act[i, c].flatten().argmax())
        uy, ux = divmod(k, act.shape[3])
        ref = _captum(model, module, x[i : i + 1], c, uy, ux) * act[i, c, uy, ux]
        assert rel_err(ours[i : i + 1], ref) < 1e-5


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torchvision_resnet_not_a_chain():
    """Residual adds, BatchNorm, one in-place ReLU module used twice per block: the uncropped autograd path.
    With skip_norm=False (BN's true Jacobian) it must equal Captum x activation."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(6)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    module = model.layer2[0]
    with torch.no_grad():
        act = model.layer2[0](model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))
    c = int(act[0].amax((1, 2)).argmax())
    with pytest.raises(DeconvnetNotApplicable, match="not a chain"):  # the paper's deconvnet: chains only
        project(model, x, "layer2.0", c)
    ours = project(model, x, "layer2.0", c, skip_norm=False, chain_only=False)
    for i in range(2):
        k = int(act[i, c].flatten().argmax())
        uy, ux = divmod(k, act.shape[3])
        ref = _captum(model, module, x[i : i + 1], c, uy, ux) * act[i, c, uy, ux]
        assert ref.abs().max() > 0 and rel_err(ours[i : i + 1], ref) < 1e-5
    zf = project(model, x, "layer2.0", c, chain_only=False)  # BN skipped on the way down: a different, still finite map
    assert torch.isfinite(zf).all() and zf.abs().max() > 0


def test_other_activations_warn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.MaxPool2d(2))
    with pytest.warns(UserWarning, match="GELU"):
        project(model, torch.randn(1, 3, 10, 10), "2", 0)


def test_model_left_untouched(make):
    model = make("zfnet").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    project(model, torch.randn(2, 3, SIZE, SIZE), "conv3", torch.tensor([1, 2]))
    project(model, torch.randn(2, 3, SIZE, SIZE), "conv3", 4, unit="map")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_bad_arguments(make):
    model = make("zfnet")
    x = torch.randn(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="unit"):
        project(model, x, "conv2", 0, unit="mean")
    with pytest.raises(ValueError, match="channel"):
        project(model, x, "conv2", torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        project(model, x, "conv2", 10_000)
    with pytest.raises(ValueError, match="positions"):
        project(model, x, "conv2", 0, positions=torch.tensor([[0, 0], [99, 0]]))
    with pytest.raises(ValueError, match="not found"):
        project(model, x, "conv9", 0)
