"""Occlusion sensitivity (Zeiler & Fergus 2014, Sec. 4.2, Fig. 7): slide a grey square over the image and
record, per occluder position, the probability of the target class, the most probable class, and the total
activation of the layer's strongest feature map.

ZF plot one value per *occluder position* (a grid), not Captum's per-pixel average of score drops; the grid
is the primary output here and :meth:`OcclusionResult.per_pixel` derives the Captum-style view from it
(identical to ``captum.attr.Occlusion`` where their conventions coincide, see that method).

Two exact paths compute the same numbers:

- ``"incremental"`` (:mod:`.incremental`): Krypton-style exact incremental inference, recomputing only what
  the occluder can reach in each layer of ``model.features``; several times faster on ZFNet/AlexNet.
- ``"full"``: batched re-inference of the occluded images (any model).

``method="auto"`` takes the incremental path when the model allows it and falls back to ``"full"``
otherwise; ``result.method`` and ``result.fallback_reason`` say what ran and why. Memory is bounded by
``batch_size`` positions at a time on both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.tensors import eval_mode, pair
from .incremental import IncrementalOcclusion, NotApplicable
from .layers import layer_label, resolve_layer

METHODS = ("auto", "incremental", "full")
SCORES = ("logit", "prob")


def grid_shape(size: tuple[int, int], patch: int | Sequence[int], stride: int | Sequence[int]) -> tuple[int, int]:
    """Number of occluder positions per axis; the square always lies fully inside the image."""
    (H, W), (ph, pw), (sh, sw) = size, pair(patch, "patch"), pair(stride, "stride")
    if ph > H or pw > W:
        raise ValueError(f"patch {ph}x{pw} does not fit in a {H}x{W} image")
    return (H - ph) // sh + 1, (W - pw) // sw + 1


def fill_tensor(fill: float | Sequence[float] | Tensor, channels: int, like: Tensor) -> Tensor:
    """The occluder value per input channel, in the (normalized) input space of the model."""
    t = torch.as_tensor(fill, dtype=like.dtype, device=like.device).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"fill has {t.numel()} values; expected 1 or {channels} (one per input channel)")
    return t.contiguous()


def occlude(image: Tensor, corners: Tensor, patch: int | Sequence[int], fill: Tensor) -> Tensor:
    """Copies of ``image`` [C,H,W] with a ``patch`` square of ``fill`` at each corner (y, x) of ``corners`` [N,2]."""
    ph, pw = pair(patch, "patch")
    C, H, W = image.shape
    ys = torch.arange(H, device=image.device)
    xs = torch.arange(W, device=image.device)
    cy, cx = corners[:, 0:1], corners[:, 1:2]
    inside = ((ys >= cy) & (ys < cy + ph))[:, :, None] & ((xs >= cx) & (xs < cx + pw))[:, None, :]
    return torch.where(inside[:, None], fill.view(1, C, 1, 1), image[None])


@dataclass
class OcclusionResult:
    """Per-position grids; position (i, j) has the occluder's top-left corner at (i*stride_y, j*stride_x)."""

    prob: Tensor  # [h, w] float64 softmax probability of `target`
    top_class: Tensor  # [h, w] int64 argmax class
    activation: Tensor | None  # [h, w] float64 spatial sum of `channel` of `layer`
    logit: Tensor  # [h, w] float64 raw model output for `target`
    target: int
    channel: int | None  # strongest map of `layer` on the clean image (largest spatial sum)
    layer: str | None
    patch: tuple[int, int]
    stride: tuple[int, int]
    fill: Tensor  # per-channel occluder value
    image_size: tuple[int, int]
    clean_prob: float
    clean_logit: float
    clean_top_class: int
    clean_activation: float | None
    method: str  # "incremental" or "full": the path that actually ran
    fallback_reason: str | None = None  # why "auto" did not run the incremental path
    extras: dict = field(default_factory=dict)

    def positions(self) -> Tensor:
        """[h, w, 2] top-left corners (y, x) of the occluder in pixels."""
        h, w = self.prob.shape
        ys = torch.arange(h) * self.stride[0]
        xs = torch.arange(w) * self.stride[1]
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1)

    def per_pixel(self, score: str = "logit") -> Tensor:
        """Captum-style [H, W] map: each pixel = mean, over the occluder positions covering it, of
        (clean score - occluded score). ``score="logit"`` (default) is the target's raw output, which is
        what ``captum.attr.Occlusion`` computes with the model as forward function, window ``(C, ph, pw)``,
        strides ``(C, sh, sw)``, ``baselines=fill``, ``target``; the two agree whenever ``(H - ph) % sh == 0``
        and ``(W - pw) % sw == 0`` (Captum then has no border-clipped windows). ``score="prob"`` uses the
        softmax probability. Pixels that no position covers (the right/bottom remainder when the stride
        does not divide ``H - ph``) are 0.
        """
        if score not in SCORES:
            raise ValueError(f"score={score!r}; choose one of {SCORES}")
        grid = self.logit if score == "logit" else self.prob
        clean = self.clean_logit if score == "logit" else self.clean_prob
        return spread_to_pixels(clean - grid, self.patch, self.stride, self.image_size)

    def grid_map(self, score: str = "logit") -> Tensor:
        """ZF's own view (Fig. 7 d) as an [H, W] map: the drop (clean - occluded) of the target's score per
        occluder *position*, placed at each occluder's centre and bilinearly interpolated between centres
        (constant beyond the outermost centres). Unlike :meth:`per_pixel` it does not average neighbouring
        positions, so its maximum lies at the centre of the position that hurts the class most (a
        piecewise-bilinear surface peaks at a node; within half a pixel for even patch sizes), which is
        where ZF read "the model looks here"."""
        if score not in SCORES:
            raise ValueError(f"score={score!r}; choose one of {SCORES}")
        drop = (self.clean_logit - self.logit) if score == "logit" else (self.clean_prob - self.prob)
        return interpolate_centres(drop, self.patch, self.stride, self.image_size)


def interpolate_centres(
    values: Tensor, patch: tuple[int, int], stride: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """Per-position ``values`` [h, w] -> [H, W] (float64): bilinear between occluder centres, clamped outside."""
    weights = []
    for n, p, s, full in zip(values.shape, patch, stride, size):
        centres = torch.arange(n, dtype=torch.float64) * s + (p - 1) / 2  # pixel-index coordinates
        pix = torch.arange(full, dtype=torch.float64).clamp(float(centres[0]), float(centres[-1]))
        w = torch.zeros(full, n, dtype=torch.float64)
        if n == 1:
            w[:, 0] = 1.0
        else:
            hi = torch.searchsorted(centres, pix).clamp(1, n - 1)
            frac = (pix - centres[hi - 1]) / (centres[hi] - centres[hi - 1])
            w[torch.arange(full), hi - 1] = 1 - frac
            w[torch.arange(full), hi] += frac
        weights.append(w)
    wy, wx = weights
    return wy @ values.double().cpu() @ wx.T


def spread_to_pixels(values: Tensor, patch: tuple[int, int], stride: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Average per-position ``values`` [h, w] over the pixels each occluder covers -> [H, W] (float64)."""
    v = values.double()[None, None]
    ones = torch.ones(1, 1, *patch, dtype=v.dtype, device=v.device)
    total = F.conv_transpose2d(v, ones, stride=stride)[0, 0]
    count = F.conv_transpose2d(torch.ones_like(v), ones, stride=stride)[0, 0]
    out = v.new_zeros(size)
    h, w = total.shape
    out[:h, :w] = total / count.clamp(min=1)
    return out


class _FullOcclusion:
    """Batched re-inference of occluded copies: the reference path, valid for any model."""

    def __init__(self, model: nn.Module, image: Tensor, patch, stride, fill: Tensor, layer_module) -> None:
        self.model, self.image, self.patch, self.stride, self.fill = model, image, patch, stride, fill
        self.layer_module = layer_module
        self.clean_logits, out = self._forward(image)
        self.layer_clean = None if out is None else out[0]

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        store: dict[str, Tensor] = {}
        handle = None
        if self.layer_module is not None:
            handle = self.layer_module.register_forward_hook(lambda _m, _i, o: store.__setitem__("out", o.clone()))
        try:
            logits = self.model(x)
        finally:
            if handle is not None:
                handle.remove()
        if self.layer_module is not None and "out" not in store:
            raise ValueError("the chosen layer does not run in model.forward")
        return logits, store.get("out")

    def evaluate(self, iy: Tensor, ix: Tensor, channel: int | None = None) -> tuple[Tensor, Tensor | None]:
        corners = torch.stack([iy * self.stride[0], ix * self.stride[1]], 1)
        logits, out = self._forward(occlude(self.image[0], corners, self.patch, self.fill))
        act = None if out is None or channel is None else out[:, channel].reshape(len(iy), -1).double().sum(1)
        return logits, act


def occlusion_sensitivity(
    model: nn.Module,
    image: Tensor,
    target: int | Tensor,
    patch: int | Sequence[int],
    stride: int | Sequence[int],
    fill: float | Sequence[float] | Tensor = 0.0,
    layer: str | None = "conv5",
    batch_size: int = 64,
    method: str = "auto",
) -> OcclusionResult:
    """Slide a ``patch`` square of value ``fill`` over ``image`` [3,H,W] (or [1,3,H,W]) with ``stride``.

    ``fill`` is in the model's normalized input space: 0.0 is the dataset mean after mean subtraction,
    i.e. the paper's grey square; a sequence gives one value per channel. ``layer`` (``"conv1"``..``"conv5"``,
    ``"fc6"``, ``"fc7"`` or a dotted module name; None to skip) selects the feature map tracked in
    ``activation``. Exact: every value equals occluding the image and re-running the model (eval mode).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {METHODS}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image at a time: got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3:
        raise ValueError(f"image must be [C,H,W] or [1,C,H,W], got shape {tuple(image.shape)}")
    patch_, stride_ = pair(patch, "patch"), pair(stride, "stride")
    h, w = grid_shape(tuple(image.shape[-2:]), patch_, stride_)
    target = int(target)
    layer_module = None if layer is None else resolve_layer(model, layer)[1]

    param = next(model.parameters(), None)
    if param is not None:
        image = image.to(device=param.device, dtype=param.dtype)
    x = image[None].contiguous()
    fill_t = fill_tensor(fill, image.shape[0], image)

    with eval_mode(model), torch.no_grad():
        # Whatever the model, the incremental path is checked against re-inference on the clean image and
        # on one occluded position before it is used (two forward passes; no trust in a class or a name).
        full = _FullOcclusion(model, x, patch_, stride_, fill_t, layer_module)
        runner, used, reason = None, "full", None
        if method != "full":
            try:
                runner = IncrementalOcclusion(
                    model,
                    x,
                    patch_,
                    stride_,
                    fill_t,
                    layer_module,
                    batch_size,
                    reference_logits=full.clean_logits,
                )
                used = "incremental"
            except NotApplicable as err:
                reason = str(err)
        if runner is not None and not _spot_check(runner, full, (h, w)):
            runner, used = None, "full"
            reason = "incremental logits differ from re-inference on a spot-checked position"
        if runner is None and method == "incremental":
            raise ValueError(f"the incremental path does not apply: {reason}")
        if runner is None:
            runner = full

        clean_logits = runner.clean_logits[0].double()
        num_classes = clean_logits.shape[0]
        if not 0 <= target < num_classes:
            raise ValueError(f"target={target} outside [0, {num_classes})")
        channel = clean_act = None
        if layer_module is not None:
            clean_layer = runner.layer_clean
            sums = clean_layer.reshape(clean_layer.shape[0], -1).double().sum(1)
            channel = int(sums.argmax())
            clean_act = float(sums[channel])

        logit = torch.empty(h * w, dtype=torch.float64)
        prob = torch.empty(h * w, dtype=torch.float64)
        top = torch.empty(h * w, dtype=torch.long)
        act = torch.empty(h * w, dtype=torch.float64) if channel is not None else None
        flat = torch.arange(h * w, device=x.device)
        for start in range(0, h * w, batch_size):
            idx = flat[start : start + batch_size]
            logits, a = runner.evaluate(idx // w, idx % w, channel)
            sl = slice(start, start + len(idx))
            t = logits[:, target].double()
            logit[sl] = t.cpu()
            prob[sl] = (t - logits.logsumexp(1).double()).exp().cpu()
            top[sl] = logits.argmax(1).cpu()
            if act is not None:
                act[sl] = a.cpu()

    clean_p = float(clean_logits.log_softmax(0)[target].exp())
    return OcclusionResult(
        prob=prob.view(h, w),
        top_class=top.view(h, w),
        activation=None if act is None else act.view(h, w),
        logit=logit.view(h, w),
        target=target,
        channel=channel,
        layer=None if layer is None else layer_label(model, layer),
        patch=patch_,
        stride=stride_,
        fill=fill_t.cpu(),
        image_size=tuple(image.shape[-2:]),
        clean_prob=clean_p,
        clean_logit=float(clean_logits[target]),
        clean_top_class=int(clean_logits.argmax()),
        clean_activation=clean_act,
        method=used,
        fallback_reason=reason,
    )


def _spot_check(runner: IncrementalOcclusion, full: _FullOcclusion, grid: tuple[int, int]) -> bool:
    """Compare the incremental path with re-inference at the central position (one extra forward pass).

    The structural checks in :mod:`.incremental` cannot see everything a custom ``forward`` may do; one
    occluded image run both ways catches a model whose output does not flow only through ``features``.
    """
    iy = torch.tensor([grid[0] // 2], device=full.image.device)
    ix = torch.tensor([grid[1] // 2], device=full.image.device)
    a, _ = runner.evaluate(iy, ix)
    b, _ = full.evaluate(iy, ix)
    scale = float(b.abs().max())
    return float((a - b).abs().max()) <= 1e-4 * (1.0 + scale)
