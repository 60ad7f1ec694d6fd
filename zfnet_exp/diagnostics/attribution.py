"""Modern attribution maps next to the paper's deconvnet, through one interface and Captum's implementations.

Why a wrapper at all: every method has its own output shape and sign conventions (Captum returns
``[B, 3, H, W]`` for pixel methods and ``[B, 1, h, w]`` at layer resolution for Grad-CAM); the faithfulness
metrics, the comparison figure and the callbacks need one ``[B, H, W]`` heat map per image with a
documented meaning. Nothing is re-implemented here: each entry calls Captum (or the ZF deconvnet module)
and then applies the reduction written in its registry description.

Conventions (all maps are raw, not normalized; normalize for display only):

======================  ============================================================================
``gradcam``             Captum ``LayerGradCam`` on ``layer`` (default ``"conv5"``, the rectified last
                        conv): channel weights = spatial mean of d logit / d activation, map = sum of
                        weighted maps, ReLU (``relu=True``, as Selvaraju et al. and pytorch-grad-cam),
                        then upsampled to the input size with ``F.interpolate(mode="bilinear",
                        align_corners=False)`` (``upsample="nearest"`` for blocky maps).
``saliency``            Captum ``Saliency`` (abs=True): |d logit / d pixel|, max over colour channels
                        (Simonyan et al. 2014).
``guided_backprop``     Captum ``GuidedBackprop``; |.| then max over colour channels.
``deconvnet``           Captum ``Deconvolution`` from the target logit (class-level, through the FC layers;
                        LRN back-propagates its true Jacobian); |.| then max over colour channels.
``deconvnet_zf``        ZF projection (:func:`zfnet_exp.diagnostics.deconvnet.project`) of the strongest unit
                        of the strongest map (largest spatial sum) of ``layer`` (default ``"conv5"``) in
                        each image, as in the paper's Fig. 7(c); *not* class-specific (target ignored);
                        |.| then max over colour channels.
``occlusion``           ZF occlusion (:func:`zfnet_exp.diagnostics.occlusion.occlusion_sensitivity`, grey
                        square of ``patch``/``stride``/``fill``), as Captum's per-pixel view
                        (:meth:`~zfnet_exp.diagnostics.occlusion.OcclusionResult.per_pixel`, mean drop of
                        the target's ``score``, logit by default); ``occlusion_logit``/``occlusion_prob``
                        fix the score; ``occlusion_grid`` is ZF's per-position view
                        (:meth:`~zfnet_exp.diagnostics.occlusion.OcclusionResult.grid_map`).
``integrated_gradients``Captum ``IntegratedGradients`` from ``baseline`` (default 0.0: the dataset mean,
                        i.e. grey, in normalized space), ``n_steps=50`` Gauss-Legendre,
                        ``internal_batch_size=16`` (bounded memory); signed, summed over colour channels
                        so that the map still sums to f(x) - f(baseline) (completeness).
======================  ============================================================================

``reduce`` overrides the channel reduction of pixel-space methods: ``"max_abs"``, ``"sum_abs"``, ``"sum"``,
``"l2"``. New methods (e.g. a faster deconvnet) plug in with :func:`register`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.tensors import eval_mode
from .layers import resolve_layer

AttributionFn = Callable[..., Tensor]
REDUCTIONS = ("max_abs", "sum_abs", "sum", "l2")
_REGISTRY: dict[str, tuple[AttributionFn, str, tuple[str, ...]]] = {}


def register(
    name: str, description: str = "", overwrite: bool = False, options: Sequence[str] = ()
) -> Callable[[AttributionFn], AttributionFn]:
    """Decorator adding ``fn(model, images [B,C,H,W], target LongTensor[B], **kw) -> [B,H,W]``.

    ``options`` names the keyword arguments a caller may take from a shared settings mapping
    (:func:`method_options`): an analysis holds one set of settings (occlusion patch and stride, say) and
    each method picks the ones it declares, so the caller needs no per-method case."""

    def deco(fn: AttributionFn) -> AttributionFn:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"attribution method {name!r} is already registered (pass overwrite=True)")
        _REGISTRY[name] = (fn, description or (fn.__doc__ or "").strip().splitlines()[0], tuple(options))
        return fn

    return deco


def method_options(method: str, settings: Mapping[str, object]) -> dict:
    """The entries of ``settings`` that ``method`` declared as its ``options`` when registered."""
    if method not in _REGISTRY:
        raise ValueError(f"unknown attribution method {method!r}; available: {', '.join(sorted(_REGISTRY))}")
    return {k: settings[k] for k in _REGISTRY[method][2] if k in settings and settings[k] is not None}


def available_methods() -> dict[str, str]:
    """Registered method names and their one-line conventions."""
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def reduce_channels(attr: Tensor, how: str) -> Tensor:
    """[B, C, H, W] -> [B, H, W] by ``how`` in ``REDUCTIONS``."""
    if how == "max_abs":
        return attr.abs().amax(1)
    if how == "sum_abs":
        return attr.abs().sum(1)
    if how == "sum":
        return attr.sum(1)
    if how == "l2":
        return attr.pow(2).sum(1).sqrt()
    raise ValueError(f"reduce={how!r}; choose one of {REDUCTIONS}")


def _targets(target: int | Sequence[int] | Tensor, b: int, device) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long, device=device).flatten()
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"target has {t.numel()} entries for a batch of {b}")
    return t.contiguous()


def attribute(method: str, model: nn.Module, images: Tensor, target: int | Sequence[int] | Tensor, **kw) -> Tensor:
    """Heat maps ``[B, H, W]`` (float32, detached) of ``method`` for ``images`` [B,3,H,W] (or [3,H,W]) and
    ``target`` (one class for all images or one per image). ``kw`` go to the method (see module docstring).
    The model runs in eval mode; its mode is restored afterwards."""
    if method not in _REGISTRY:
        raise ValueError(f"unknown attribution method {method!r}; available: {', '.join(sorted(_REGISTRY))}")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise ValueError(f"images must be [B,C,H,W] or [C,H,W]; got {tuple(images.shape)}")
    fn = _REGISTRY[method][0]
    t = _targets(target, images.shape[0], images.device)
    with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
        # Captum announces its ReLU hooks on every call; that is the documented mechanism, not news
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        out = fn(model, images.detach().clone().requires_grad_(True), t, **kw).to(images.device)
    if out.shape != (images.shape[0], *images.shape[-2:]):
        raise RuntimeError(f"{method} returned shape {tuple(out.shape)}; expected [B, H, W]")
    return out.detach().float()


# ----------------------------------------------------------------------------------------- the methods


@register("gradcam", "Captum LayerGradCam on `layer` (conv5), ReLU, bilinear upsampling to the input size")
def _gradcam(
    model: nn.Module,
    images: Tensor,
    target: Tensor,
    layer: str = "conv5",
    relu: bool = True,
    upsample: str = "bilinear",
) -> Tensor:
    from captum.attr import LayerGradCam

    module = resolve_layer(model, layer)[1]
    cam = LayerGradCam(model, module).attribute(images, target=target, relu_attributions=relu)
    size = images.shape[-2:]
    align = {"align_corners": False} if upsample in ("bilinear", "bicubic") else {}
    return F.interpolate(cam, size=size, mode=upsample, **align)[:, 0]


@register("saliency", "Captum Saliency: |d logit / d pixel|, max over colour channels")
def _saliency(model: nn.Module, images: Tensor, target: Tensor, reduce: str = "max_abs") -> Tensor:
    from captum.attr import Saliency

    return reduce_channels(Saliency(model).attribute(images, target=target, abs=False), reduce)


@register("guided_backprop", "Captum GuidedBackprop, |.| max over colour channels")
def _guided_backprop(model: nn.Module, images: Tensor, target: Tensor, reduce: str = "max_abs") -> Tensor:
    from captum.attr import GuidedBackprop

    return reduce_channels(GuidedBackprop(model).attribute(images, target=target), reduce)


@register("deconvnet", "Captum Deconvolution from the target logit, |.| max over colour channels")
def _deconvnet(model: nn.Module, images: Tensor, target: Tensor, reduce: str = "max_abs") -> Tensor:
    from captum.attr import Deconvolution

    return reduce_channels(Deconvolution(model).attribute(images, target=target), reduce)


@register("deconvnet_zf", "ZF projection of the strongest `layer` unit (conv5), not class-specific")
def _deconvnet_zf(
    model: nn.Module, images: Tensor, target: Tensor, layer: str = "conv5", reduce: str = "max_abs"
) -> Tensor:
    from . import deconvnet
    from .layers import capture_activations

    images = images.detach()
    with torch.no_grad(), capture_activations(model, [layer]) as store:
        model(images)
    act = store[layer]
    channel = act.flatten(2).sum(2).argmax(1)  # strongest map per image (largest spatial sum)
    return reduce_channels(deconvnet.project(model, images, layer, channel, unit="max"), reduce)


@register("integrated_gradients", "Captum IntegratedGradients from a grey (0) baseline, summed over channels")
def _integrated_gradients(
    model: nn.Module,
    images: Tensor,
    target: Tensor,
    baseline: float | Tensor = 0.0,
    n_steps: int = 50,
    internal_batch_size: int = 16,
    method: str = "gausslegendre",
    reduce: str = "sum",
) -> Tensor:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(model).attribute(
        images,
        baselines=baseline,
        target=target,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
    )
    return reduce_channels(attr, reduce)


_OCCLUSION_OPTIONS = ("patch", "stride", "fill", "batch_size")


def _occlusion(
    model: nn.Module,
    images: Tensor,
    target: Tensor,
    patch: int = 16,
    stride: int = 4,
    fill: float = 0.0,
    score: str = "logit",
    view: str = "pixel",
    batch_size: int = 64,
) -> Tensor:
    from .occlusion import occlusion_sensitivity

    maps = []
    for x, t in zip(images.detach(), target.tolist()):
        res = occlusion_sensitivity(model, x, t, patch, stride, fill, layer=None, batch_size=batch_size)
        maps.append(res.per_pixel(score) if view == "pixel" else res.grid_map(score))
    return torch.stack(maps).float()


register(
    "occlusion",
    "ZF occlusion, Captum's per-pixel mean drop of the target's score (logit)",
    options=(*_OCCLUSION_OPTIONS, "score"),
)(_occlusion)
register("occlusion_logit", "ZF occlusion, per-pixel mean drop of the target's logit", options=_OCCLUSION_OPTIONS)(
    partial(_occlusion, score="logit")
)
register("occlusion_prob", "ZF occlusion, per-pixel mean drop of the target's probability", options=_OCCLUSION_OPTIONS)(
    partial(_occlusion, score="prob")
)
register(
    "occlusion_grid",
    "ZF occlusion, per-position drop interpolated between occluder centres",
    options=(*_OCCLUSION_OPTIONS, "score"),
)(partial(_occlusion, view="grid"))


__all__ = ["REDUCTIONS", "attribute", "available_methods", "method_options", "reduce_channels", "register"]
