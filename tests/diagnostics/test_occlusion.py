"""Occlusion sensitivity: both exact paths against independent references.

References: (1) a brute-force Python loop that pastes the square with slicing and re-runs the model, one
image per forward pass (shares no code with the library); (2) Captum's ``Occlusion`` for the per-pixel view.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Occlusion
from torch import nn

from zfnet_exp.diagnostics.occlusion import grid_shape, occlusion_sensitivity

SMALL = {1: 16, 2: 24, 3: 24, 4: 24, 5: 16}


@pytest.fixture
def small(tiny_model):
    """The shared tiny-model builder at this file's widths."""

    def build(name: str, size: int, classes: int = 7) -> nn.Module:
        return tiny_model(name, size=size, classes=classes, widths=SMALL, fc_units=32)

    return build


def brute_force(model, image, target, patch, stride, fill, module=None, channel=None):
    """Occlude with slicing, one forward per position; returns (prob, top, activation) grids."""
    H, W = image.shape[-2:]
    h, w = (H - patch) // stride + 1, (W - patch) // stride + 1
    prob = torch.zeros(h, w, dtype=torch.float64)
    top = torch.zeros(h, w, dtype=torch.long)
    act = torch.zeros(h, w, dtype=torch.float64)
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("o", o.clone())) if module else None
    fill = torch.as_tensor(fill, dtype=image.dtype).reshape(-1, 1, 1)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                x = image.clone()
                x[:, i * stride : i * stride + patch, j * stride : j * stride + patch] = fill
                logits = model(x[None]).double()
                prob[i, j] = logits.softmax(1)[0, target]
                top[i, j] = logits.argmax(1)[0]
                if module is not None:
                    act[i, j] = store["o"][0, channel].double().sum()
    if handle:
        handle.remove()
    return prob, top, act


def strongest_channel(model, image, module):
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.__setitem__("o", o.clone()))
    with torch.no_grad():
        model(image[None])
    handle.remove()
    o = store["o"][0]
    return int(o.reshape(o.shape[0], -1).double().sum(1).argmax())


def assert_matches_brute(model, image, target, patch, stride, fill, layer, module, method):
    res = occlusion_sensitivity(model, image, target, patch, stride, fill, layer=layer, method=method, batch_size=16)
    channel = strongest_channel(model, image, module)
    prob, top, act = brute_force(model, image, target, patch, stride, fill, module, channel)
    assert res.channel == channel
    assert res.prob.shape == (grid_shape(tuple(image.shape[-2:]), patch, stride))
    torch.testing.assert_close(res.prob, prob, atol=2e-6, rtol=1e-5)
    assert torch.equal(res.top_class, top)
    torch.testing.assert_close(res.activation, act, atol=1e-5 * float(act.abs().max()), rtol=1e-5)
    return res


@pytest.mark.parametrize(
    "name,size,patch,stride,fill",
    [
        ("zfnet", 64, 8, 4, 0.0),  # ceil-mode pools
        ("zfnet", 71, 11, 3, 0.5),  # odd sizes: ceil-mode overhang, stride not dividing H - p
        ("alexnet", 67, 5, 5, (0.2, -0.4, 1.0)),  # LRN before pool, floor-mode pools, per-channel fill
        ("alexnet", 70, 16, 6, -1.0),
    ],
)
def test_incremental_equals_brute_force(name, size, patch, stride, fill, small):
    model = small(name, size)
    torch.manual_seed(1)
    image = torch.randn(3, size, size)
    res = assert_matches_brute(model, image, 3, patch, stride, fill, "conv5", model.features.relu5, "incremental")
    assert res.method == "incremental" and res.fallback_reason is None


def test_full_path_equals_brute_force(small):
    model = small("zfnet", 64)
    image = torch.randn(3, 64, 64)
    res = assert_matches_brute(model, image, 2, 12, 7, 0.0, "conv2", model.features.relu2, "full")
    assert res.method == "full"


@pytest.mark.parametrize("layer", ["conv1", "conv3", "features.pool2", "fc7", None])
def test_incremental_equals_full(layer, small):
    """The two paths agree to 1e-5 for layers inside features, in the classifier, and with none."""
    model = small("zfnet", 72)
    image = torch.randn(3, 72, 72)
    inc = occlusion_sensitivity(model, image, 5, 10, 4, 0.3, layer=layer, method="incremental", batch_size=32)
    full = occlusion_sensitivity(model, image, 5, 10, 4, 0.3, layer=layer, method="full", batch_size=32)
    torch.testing.assert_close(inc.prob, full.prob, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inc.logit, full.logit, atol=1e-5, rtol=1e-5)
    assert torch.equal(inc.top_class, full.top_class)
    if layer is None:
        assert inc.activation is None and inc.channel is None
    else:
        assert inc.channel == full.channel
        scale = float(full.activation.abs().max())
        torch.testing.assert_close(inc.activation, full.activation, atol=1e-5 * scale, rtol=1e-5)


class TinyVGG(nn.Module):
    """Not a ConvNet: torchvision-style layout (features -> adaptive pool -> classifier) with the model contract
    (forward_head), exercising BatchNorm, in-place ReLU, padded avg-pool, dilation, non-square kernels/strides,
    padded ceil-mode pool."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, (3, 5), stride=(1, 2), padding=(1, 2)),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, stride=2, padding=1),
            nn.Conv2d(12, 12, 3, dilation=2, padding=2),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.5),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.LocalResponseNorm(3),
        )
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(48, 16), nn.ReLU(inplace=True), nn.Linear(16, 6))

    def forward_head(self, f):
        return self.classifier(torch.flatten(self.pool(f), 1))

    def forward(self, x):
        return self.forward_head(self.features(x))


def tiny_vgg():
    torch.manual_seed(0)
    model = TinyVGG()
    bn = model.features[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_incremental_on_other_sequential_models():
    model = tiny_vgg()
    image = torch.randn(3, 45, 53)  # non-square
    res = occlusion_sensitivity(model, image, 1, (7, 9), (3, 4), 0.0, layer="features.7", method="auto", batch_size=20)
    assert res.method == "incremental", res.fallback_reason
    full = occlusion_sensitivity(model, image, 1, (7, 9), (3, 4), 0.0, layer="features.7", method="full")
    torch.testing.assert_close(res.prob, full.prob, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        res.activation, full.activation, atol=1e-5 * float(full.activation.abs().max()), rtol=1e-5
    )


def test_fallback_for_resnet():
    """A torchvision ResNet has no plain `features` stack: auto runs the full path and says why."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=5).eval()
    image = torch.randn(3, 40, 40)
    res = occlusion_sensitivity(model, image, 2, 16, 12, 0.0, layer="layer4", method="auto")
    assert res.method == "full" and "features" in res.fallback_reason
    channel = strongest_channel(model, image, model.layer4)
    prob, top, act = brute_force(model, image, 2, 16, 12, 0.0, model.layer4, channel)
    torch.testing.assert_close(res.prob, prob, atol=1e-6, rtol=1e-5)
    assert torch.equal(res.top_class, top)
    torch.testing.assert_close(res.activation, act, atol=1e-5 * float(act.abs().max()), rtol=1e-5)
    with pytest.raises(ValueError, match="incremental"):
        occlusion_sensitivity(model, image, 2, 16, 12, layer="layer4", method="incremental")


class Shortcut(TinyVGG):
    """Uses the raw input besides features: replaying features alone would be wrong."""

    def forward(self, x):
        return super().forward(x) + x.mean((1, 2, 3))[:, None] * 10


def test_spot_check_catches_forward_that_bypasses_features():
    torch.manual_seed(0)
    model = Shortcut().eval()
    image = torch.randn(3, 32, 32)
    res = occlusion_sensitivity(model, image, 0, 8, 8, 1.0, layer=None)
    # caught on the clean image already: model(x) != forward_head(features(x))
    assert res.method == "full" and "forward_head" in res.fallback_reason
    prob, _, _ = brute_force(model, image, 0, 8, 8, 1.0)
    torch.testing.assert_close(res.prob, prob, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["incremental", "full"])
def test_per_pixel_equals_captum(method, small):
    """Window (3,p,p), strides (3,s,s), baselines=fill, target; (H - p) % s == 0 so no clipped windows."""
    model = small("zfnet", 64)
    image = torch.randn(3, 64, 64)
    patch, stride, fill = 16, 8, 0.25
    res = occlusion_sensitivity(model, image, 4, patch, stride, fill, method=method)
    ref = Occlusion(model).attribute(
        image[None],
        sliding_window_shapes=(3, patch, patch),
        strides=(3, stride, stride),
        baselines=fill,
        target=4,
        perturbations_per_eval=16,
    )
    for c in range(3):
        torch.testing.assert_close(res.per_pixel("logit"), ref[0, c].double(), atol=2e-5, rtol=1e-4)
    assert res.per_pixel("prob").shape == (64, 64)


def test_grid_geometry_and_bookkeeping(small):
    model = small("zfnet", 64)
    image = torch.randn(1, 3, 64, 64)
    res = occlusion_sensitivity(model, image, 0, 20, 6, layer="conv5")
    assert res.prob.shape == ((64 - 20) // 6 + 1,) * 2 == (8, 8)
    pos = res.positions()
    assert pos.shape == (8, 8, 2) and pos[2, 3].tolist() == [12, 18]
    with torch.no_grad():
        logits = model(image).double()
    assert res.clean_top_class == int(logits.argmax())
    assert abs(res.clean_prob - float(logits.softmax(1)[0, 0])) < 1e-6
    # pixels beyond the last window (64 - (7*6 + 20) = 2 columns) are covered by none -> 0
    pix = res.per_pixel()
    assert torch.all(pix[:, 62:] == 0) and torch.all(pix[62:, :] == 0)


def test_grid_map_is_bilinear_between_occluder_centres(small):
    """Reference: torch's bilinear ``interpolate(align_corners=True)`` of the drop grid onto the pixels between
    the first and last occluder centres (odd patch: centres on pixels), edge values replicated outside."""
    import torch.nn.functional as F

    model = small("zfnet", 64)
    image = torch.randn(3, 64, 64)
    patch, stride = 15, 7  # centres at 7, 14, ..., 56: 8 positions
    res = occlusion_sensitivity(model, image, 2, patch, stride, 0.0)
    drop = res.clean_logit - res.logit
    lo, n = (patch - 1) // 2, drop.shape[0]
    hi = lo + (n - 1) * stride
    ref = F.interpolate(drop[None, None], size=(hi - lo + 1,) * 2, mode="bilinear", align_corners=True)[0, 0]
    ref = F.pad(ref[None], (lo, 63 - hi, lo, 63 - hi), mode="replicate")[0]
    got = res.grid_map("logit")
    torch.testing.assert_close(got, ref, atol=1e-9, rtol=1e-9)
    # its maximum is the centre of the occluder position with the largest drop (what ZF read off Fig. 7 d)
    k = int(drop.argmax())
    assert divmod(int(got.argmax()), 64) == (lo + (k // n) * stride, lo + (k % n) * stride)
    assert res.grid_map("prob").shape == (64, 64)
    with pytest.raises(ValueError, match="score"):
        res.grid_map("softmax")


def test_restores_training_mode_and_validates_arguments(small):
    model = small("zfnet", 48).train()
    image = torch.randn(3, 48, 48)
    res = occlusion_sensitivity(model, image, 0, 8, 8, layer="conv5")
    assert model.training and model.features.relu1.training
    ref = occlusion_sensitivity(model.eval(), image, 0, 8, 8, layer="conv5")
    torch.testing.assert_close(res.prob, ref.prob)
    with pytest.raises(ValueError, match="does not fit"):
        occlusion_sensitivity(model, image, 0, 64, 8)
    with pytest.raises(ValueError, match="method"):
        occlusion_sensitivity(model, image, 0, 8, 8, method="fast")
    with pytest.raises(ValueError, match="one image"):
        occlusion_sensitivity(model, torch.randn(2, 3, 48, 48), 0, 8, 8)
    with pytest.raises(ValueError, match="target"):
        occlusion_sensitivity(model, image, 99, 8, 8)
    with pytest.raises(ValueError, match="fill"):
        occlusion_sensitivity(model, image, 0, 8, 8, fill=(0.0, 1.0))
