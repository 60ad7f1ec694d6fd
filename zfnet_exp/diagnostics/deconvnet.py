"""Zeiler & Fergus deconvnet projection of feature-map units back to pixel space.

Semantics (paper Sec. 2.1; see ``shared/reference/visualization-anchors.md`` Sec. 2):

* **Started from the activation value.** The top signal is zero except the chosen unit(s), which keep
  their forward activation. The projection is positively homogeneous in that signal, so Captum's
  ``NeuronDeconvolution`` (which starts from 1.0) equals ours divided by the activation; starting from
  the value keeps projections of different units/images on one comparable scale, as in the paper's grids.
* **Unpool = scatter-*add* over the forward pass's switches.** ZFNet and AlexNet pool 3x3 with stride 2, so
  windows overlap and one input position can be the argmax of several windows. Summing their signals is
  the exact transpose of the pooling selection (and what autograd's max-pool backward does);
  ``nn.MaxUnpool2d`` *writes* instead of adding, keeps one window's value, and is wrong here.
* **Rectify the signal** (ReLU on the way down, whatever the forward sign was) and **filter with the
  transposed weights** (``conv_transpose2d`` with the same kernels, no bias).
* **Contrast normalization is skipped** (identity on the way down), as the paper does; by default
  BatchNorm is treated the same way (it is the modern normalization layer in the same place).
  ``skip_norm=False`` back-propagates their true Jacobians instead (Captum's behaviour).

Implementation: plain autograd, with the backward of every ``nn.ReLU`` replaced by ``relu(grad)`` and of
every leaf normalization module by the identity; max-pool and convolution backward already are the
scatter-add unpool and the transposed convolution. So any CNN made of standard modules works (torchvision,
timm), including in-place ReLUs and ReLU modules used twice. The forward pass stops at the target layer
(no classifier). Many (image, unit) pairs go through one backward pass: each batch row is one pair.

A ReLU written as ``F.relu``/``torch.relu`` in ``forward`` cannot be overridden by a module hook; autograd
would silently turn the projection into a plain gradient there. A ``__torch_function__`` mode watches the
forward pass and raises :class:`DeconvnetNotApplicable` on any ReLU call that does not come from an
``nn.ReLU`` module (a ReLU spelled ``clamp(min=0)`` cannot be recognized). The paper's deconvnet is defined
for a chain of conv / pool / ReLU / normalization layers; by default (``chain_only=True``) a path with a
branch or a residual add (a ResNet) raises :class:`DeconvnetNotApplicable` too, so callers can say so in one
line and skip; ``chain_only=False`` back-propagates through the adds with the same rules (Captum's
``Deconvolution`` generalization). Other activation modules (GELU, SiLU, ReLU6, ...)
have no deconvnet rule; they back-propagate their true gradient and a warning names them. A module that
runs several times per forward pass (a ResNet block's shared ReLU) is taken at its first call.

Speed: a single unit's projection is exactly zero outside the unit's receptive field, and depends only on
the forward pass inside it. When the path to the layer is a chain of conv/pool/pointwise modules (ZFNet,
AlexNet, VGG), the batch is therefore run on crops around each unit instead of whole images (``crop=True``)
and pasted back. The crop is placed so that the result is identical, not approximate: its origin is a
multiple of the layer's total stride (every intermediate map lands on the same grid) and, on any side where
the unit's dependency cone reaches padding at some layer, the crop stops exactly at the image border (so the
padding is real there too, including ceil-mode pooling). The tests compare it with the uncropped pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..utils.tensors import argmax_yx, eval_mode
from .geometry import NotAChain, SpatialOp, input_ranges, run_until, trace_chain
from .layers import ELEMENTWISE_ACTIVATIONS, resolve_layer

# Leaf modules whose backward becomes the identity when skip_norm=True.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)
_RELU_FUNCS = {"relu", "relu_", "relu6"}
# Activation modules the deconvnet rule does not cover: they back-propagate their true gradient (warned).
_OTHER_ACTIVATIONS = tuple(t for t in ELEMENTWISE_ACTIVATIONS if t is not nn.ReLU)
_CROP_MAX_AREA = 0.8  # below this crop/image area ratio the cropped pass is worth its bookkeeping


class DeconvnetNotApplicable(ValueError):
    """The ZF deconvnet does not apply to this model / layer (functional ReLU, or a path that is not a chain);
    the message says why in one sentence."""


class _DeconvReLU(torch.autograd.Function):
    """Forward: ReLU. Backward: rectify the incoming signal, ignoring the forward sign (the deconvnet rule)."""

    @staticmethod
    def forward(ctx, x):
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.relu(grad)


class _SkipDown(torch.autograd.Function):
    """Forward: the module's real output ``y``. Backward: hand the signal straight to the input ``x``."""

    @staticmethod
    def forward(ctx, x, y):
        return y.clone()  # a fresh tensor: later in-place ops (``out += identity``) must not hit a view

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _FunctionalReluGuard(TorchFunctionMode):
    """Raise on ReLU calls made while no ``nn.ReLU`` module is running."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.depth == 0 and getattr(func, "__name__", "") in _RELU_FUNCS:
            raise DeconvnetNotApplicable(
                "model uses functional ReLU (F.relu / torch.relu / Tensor.relu in forward) on the path to the "
                "layer: module hooks cannot see it, so the deconvnet would silently become a gradient there; "
                "use nn.ReLU modules"
            )
        return func(*args, **(kwargs or {}))


@contextmanager
def _deconv_mode(model: nn.Module, deconv: bool, skip_norm: bool) -> Iterator[None]:
    """Install the ReLU override (if ``deconv``), the norm skip (if ``skip_norm``) and the functional-ReLU guard."""
    guard = _FunctionalReluGuard()
    handles = []
    stack: list[torch.Tensor] = []

    def relu_pre(mod, args):
        guard.depth += 1
        if not deconv:
            return None
        stack.append(args[0])
        if getattr(mod, "inplace", False):  # let the module scribble on a copy; we keep the original
            return (args[0].clone(),) + tuple(args[1:])
        return None

    def relu_post(mod, args, out):
        try:
            if deconv:
                return _DeconvReLU.apply(stack.pop())
            return None
        finally:
            guard.depth -= 1

    def norm_post(mod, args, out):
        return _SkipDown.apply(args[0], out)

    others: set[str] = set()

    def other_post(mod, args, out):
        others.add(type(mod).__name__)

    for m in model.modules():
        if isinstance(m, nn.ReLU):
            handles.append(m.register_forward_pre_hook(relu_pre))
            handles.append(m.register_forward_hook(relu_post))
        elif skip_norm and deconv and isinstance(m, NORM_TYPES) and next(iter(m.children()), None) is None:
            handles.append(m.register_forward_hook(norm_post))
        elif deconv and isinstance(m, _OTHER_ACTIVATIONS):
            handles.append(m.register_forward_hook(other_post))
    try:
        with guard:
            yield
    finally:
        for h in handles:
            h.remove()
    if others:
        warnings.warn(
            f"deconvnet: {', '.join(sorted(others))} on the path are not ReLUs; the deconvnet rule "
            "(rectify the signal) applies to nn.ReLU only, these back-propagate their true gradient",
            stacklevel=3,
        )


def _as_channels(channel: int | torch.Tensor, b: int, device) -> torch.Tensor:
    ch = torch.as_tensor(channel, dtype=torch.long, device=device)
    if ch.dim() == 0:
        ch = ch.expand(b)
    if ch.shape != (b,):
        raise ValueError(f"channel must be an int or a LongTensor[B] with B={b}; got shape {tuple(ch.shape)}")
    return ch


def _check_channels(ch: torch.Tensor, out: torch.Tensor) -> None:
    if int(ch.min()) < 0 or int(ch.max()) >= out.shape[1]:
        raise ValueError(f"channel out of range for a layer with {out.shape[1]} channels")


def _seed(
    out: torch.Tensor, ch: torch.Tensor, unit: str, pos: torch.Tensor | None, from_activation: bool = True
) -> torch.Tensor:
    """Top signal: zeros except the selected unit(s) of each row's channel, which keep their activation
    (or get 1.0 with ``from_activation=False``)."""
    b = out.shape[0]
    rows = torch.arange(b, device=out.device)
    _check_channels(ch, out)
    seed = torch.zeros_like(out)
    value = out if from_activation else torch.ones_like(out)
    if out.dim() == 2:  # a fully connected layer: the unit is the channel
        seed[rows, ch] = value[rows, ch]
        return seed
    if out.dim() != 4:
        raise ValueError(f"layer output must be [B,C] or [B,C,H,W]; got {tuple(out.shape)}")
    maps = out[rows, ch]  # [B, H, W]
    if unit == "map":
        seed[rows, ch] = value[rows, ch]
        return seed
    if pos is None:
        ys, xs = argmax_yx(maps).unbind(1)  # first maximum in row-major order
    else:
        ys, xs = pos[:, 0], pos[:, 1]
        if bool((ys < 0).any() or (xs < 0).any() or (ys >= maps.shape[1]).any() or (xs >= maps.shape[2]).any()):
            raise ValueError(f"positions outside the layer's {maps.shape[1]}x{maps.shape[2]} map")
    seed[rows, ch, ys, xs] = value[rows, ch, ys, xs]
    return seed


def _backproject(
    model: nn.Module,
    target: nn.Module,
    x: torch.Tensor,
    ch: torch.Tensor,
    unit: str,
    pos: torch.Tensor | None,
    skip_norm: bool,
    from_activation: bool,
) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), _deconv_mode(model, deconv=True, skip_norm=skip_norm):
        (out,) = run_until(model, x, [target])
    seed = _seed(out.detach(), ch, unit, pos, from_activation)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=seed, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad.detach()


def _crop_axis(ops: list[SpatialOp], axis: int, units: list[int], size: int) -> tuple[int, list[int]] | None:
    """Crop length and per-unit crop origins on one axis that reproduce the full pass exactly (None: none
    shorter than the image). See the module docstring for the two rules."""
    jump = 1
    for op in ops:
        jump *= op.stride[axis]
    needs = []  # (touches start padding, touches end padding, first pixel, last pixel)
    for u in units:
        ranges = input_ranges(ops, axis, u, u)
        lo0, hi0, _ = ranges[-1]
        at_start = any(lo < 0 for lo, _, _ in ranges)
        at_end = any(hi >= n for _, hi, n in ranges)
        needs.append((at_start, at_end, max(lo0, 0), min(hi0, size - 1)))
    length = 1
    for at_start, at_end, lo, hi in needs:
        aligned = (lo // jump) * jump
        if at_start and at_end:
            return None
        length = max(length, hi + 1 if at_start else (size - aligned if at_end else hi + 1 - aligned))
    length += (size - length) % jump  # size - length must be a multiple of the jump
    if length >= size:
        return None
    origins = []
    for at_start, at_end, lo, _ in needs:
        if at_start:
            origins.append(0)
        elif at_end:
            origins.append(size - length)
        else:
            origins.append(min((lo // jump) * jump, size - length))
    return length, origins


def _crop_can_pay(ops: list[SpatialOp], size) -> bool:
    """Cheap pre-check from the geometry alone: can even an interior unit's crop be small enough?"""
    area = 1.0
    for axis in range(2):
        lo, hi, _ = input_ranges(ops, axis, 0, 0)[-1]
        jump = 1
        for op in ops:
            jump *= op.stride[axis]
        area *= min(1.0, (hi - lo + jump) / size[axis])
    return area <= _CROP_MAX_AREA


def _project_cropped(
    model: nn.Module,
    target: nn.Module,
    images: torch.Tensor,
    ops: list[SpatialOp],
    ch: torch.Tensor,
    pos: torch.Tensor,
    skip_norm: bool,
    from_activation: bool,
) -> torch.Tensor | None:
    h, w = images.shape[-2:]
    units = pos.tolist()
    plan_y = _crop_axis(ops, 0, [u[0] for u in units], h)
    plan_x = _crop_axis(ops, 1, [u[1] for u in units], w)
    ly, oys = plan_y if plan_y else (h, [0] * len(units))
    lx, oxs = plan_x if plan_x else (w, [0] * len(units))
    if ly * lx > _CROP_MAX_AREA * h * w:
        return None
    crops = torch.stack([images[i, :, oy : oy + ly, ox : ox + lx] for i, (oy, ox) in enumerate(zip(oys, oxs))])
    jy = jx = 1
    for op in ops:
        jy, jx = jy * op.stride[0], jx * op.stride[1]
    origin = torch.tensor([[oy // jy, ox // jx] for oy, ox in zip(oys, oxs)], device=pos.device)
    grad = _backproject(model, target, crops, ch, "max", pos - origin, skip_norm, from_activation)
    out = torch.zeros_like(images)
    for i, (oy, ox) in enumerate(zip(oys, oxs)):
        out[i, :, oy : oy + ly, ox : ox + lx] = grad[i]
    return out


def _max_positions(model: nn.Module, target: nn.Module, images: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), _deconv_mode(model, deconv=False, skip_norm=False):
        (out,) = run_until(model, images, [target])
    _check_channels(ch, out)
    rows = torch.arange(images.shape[0], device=images.device)
    return argmax_yx(out[rows, ch])


def project(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channel: int | torch.Tensor,
    unit: str = "max",
    positions: torch.Tensor | None = None,
    skip_norm: bool = True,
    crop: bool = True,
    from_activation: bool = True,
    chain_only: bool = True,
) -> torch.Tensor:
    """Deconvnet projection of units of ``layer`` to pixel space: ``[B, C_in, H, W]`` for images ``[B, C_in, H, W]``.

    Row ``i`` projects channel ``channel`` (or ``channel[i]`` for a LongTensor[B]) of image ``i``:
    ``unit="max"``: its strongest unit (first maximum in row-major order); ``unit="map"``: the whole map;
    ``positions[i] = (y, x)``: that unit (the top-k protocol: positions from :mod:`.topk`). Repeat an image
    in the batch to project several of its units at once. ``layer`` is ``"conv3"``-style or a dotted module
    name (see :mod:`.layers`). ``skip_norm`` and ``crop``: see the module docstring; ``crop`` never
    changes the result beyond float round-off; ``skip_norm=False`` gives Captum's semantics.
    ``from_activation=False`` starts from 1.0 instead of the activation (Captum's scale; the pattern of a
    unit that is not active in this image, which would otherwise project to zeros). ``chain_only``: raise
    :class:`DeconvnetNotApplicable` when the path to ``layer`` is not a chain (module docstring).

    The model is run in eval mode (its mode is restored afterwards); it is not otherwise modified.
    """
    if unit not in ("max", "map"):
        raise ValueError(f"unit must be 'max' or 'map'; got {unit!r}")
    if positions is not None and unit != "max":
        raise ValueError("positions pick single units; they cannot be combined with unit='map'")
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W]; got shape {tuple(images.shape)}")
    _, target = resolve_layer(model, layer)
    b = images.shape[0]
    ch = _as_channels(channel, b, images.device)
    pos = None if positions is None else torch.as_tensor(positions, dtype=torch.long, device=images.device)
    if pos is not None and pos.shape != (b, 2):
        raise ValueError(f"positions must be [B, 2] (y, x) with B={b}; got shape {tuple(pos.shape)}")
    images = images.detach()
    with eval_mode(model):
        ops = None
        if chain_only or (crop and unit == "max"):
            try:
                with _deconv_mode(model, deconv=False, skip_norm=False):
                    ops = trace_chain(model, layer, images[:1])
            except DeconvnetNotApplicable:
                raise
            except NotAChain as err:
                if chain_only:
                    raise DeconvnetNotApplicable(
                        f"{err}; the ZF deconvnet is defined for chains of conv/pool/ReLU layers "
                        "(chain_only=False: Captum's generalization through the adds)"
                    ) from None
            except ValueError:  # a chain with a module that has no receptive-field rule: no cropping
                ops = None
        if crop and unit == "max" and ops is not None and _crop_can_pay(ops, images.shape[-2:]):
            if pos is None:
                pos = _max_positions(model, target, images, ch)
            result = _project_cropped(model, target, images, ops, ch, pos, skip_norm, from_activation)
            if result is not None:
                return result
        return _backproject(model, target, images, ch, unit, pos, skip_norm, from_activation)


__all__ = ["NORM_TYPES", "DeconvnetNotApplicable", "project"]
