"""Filter health: the paper's Fig. 6 (conv1 filters of AlexNet vs ZFNet) turned into numbers to log.

ZF's argument for 7x7 stride-2 first-layer filters (instead of 11x11 stride 4) is that the big stride
leaves first-layer filters with "a mix of extremely high and low frequency information, with little
coverage of the mid frequencies" and aliasing artifacts in layer 2, plus "dead" features. Fig. 6 shows
this visually; these functions measure it so it can be plotted over training:

* :func:`aliasing_index` -- share of spectral energy at high spatial frequency (definition below);
* :func:`dead_fraction` -- filters that never fire on a set of images (or whose weights collapsed);
* :func:`rms_spread` -- mean / std of filter RMS (the quantity ZF's renormalization clips at 0.1);
* :func:`activation_sparsity` -- share of rectified outputs that are zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..models.init import first_conv
from .layers import conv_layer_names, stage_conv


def high_frequency_share(weight: torch.Tensor, cutoff: float = 0.5, size: int = 64) -> torch.Tensor:
    """Per filter ``[N]``: the share of spectral energy above ``cutoff`` x Nyquist (see :func:`aliasing_index`)."""
    w = weight.detach().double()
    if w.dim() != 4:
        raise ValueError(f"expected conv weights [N, C, kh, kw]; got {tuple(w.shape)}")
    size = max(size, w.shape[-2], w.shape[-1])
    power = torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(1)  # [N, size, size], summed over input channels
    f = torch.fft.fftfreq(size, dtype=torch.float64, device=w.device)  # cycles per pixel, Nyquist = 0.5
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    high = radius > cutoff * 0.5
    total = power.flatten(1).sum(1)
    share = (power * high).flatten(1).sum(1) / total.clamp_min(1e-300)
    return torch.where(total > 0, share, torch.zeros_like(share)).to(weight.dtype)


def aliasing_index(weight: torch.Tensor, cutoff: float = 0.5, size: int = 64) -> float:
    """Mean over filters of the share of each filter's spectral energy at high spatial frequency.

    Each filter is zero-padded to ``size x size`` and its 2-D DFT power is summed over input channels
    (zero padding only samples the filter's continuous spectrum more densely; by Parseval the total
    is the filter's energy). The *high band* is every frequency whose radius ``sqrt(fy^2 + fx^2)``
    (cycles/pixel) exceeds ``cutoff`` x the Nyquist frequency 0.5, i.e. 0.25 cycles/pixel by default,
    corners of the frequency square included. A filter's score is its energy there over its total
    energy; all-zero filters score 0. References: a smooth Gaussian blob scores near 0, a pixel
    checkerboard near 1, a single-pixel (white) filter ``1 - pi/16 ~ 0.80`` at the default cutoff.

    For a layer with stride ``s`` the frequencies that alias when the output is subsampled are those
    above ``1/s`` of the Nyquist: ``cutoff=1/s`` measures exactly that energy.
    """
    return float(high_frequency_share(weight, cutoff, size).mean())


def filter_rms(weight: torch.Tensor) -> torch.Tensor:
    """Per filter ``[N]``: root mean square of its weights (the paper renormalizes filters above 0.1)."""
    return weight.detach().flatten(1).pow(2).mean(1).sqrt()


def rms_spread(weight: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of the filter RMS values of one layer: a collapsing or exploding layer shows up here."""
    rms = filter_rms(weight).double()
    return float(rms.mean()), float(rms.std(unbiased=False))


def dead_fraction(
    activations: torch.Tensor | None = None, weight: torch.Tensor | None = None, rms_threshold: float | None = None
) -> float:
    """Share of a layer's filters that are dead, from activations *or* from weights (give exactly one).

    ``activations [B, C, H, W]`` (rectified): a channel is dead if it is never positive anywhere on
    these images. ``weight [N, ...]``: a filter is dead if its RMS is below ``rms_threshold``, by default
    1% of the layer's median filter RMS (relative, so the answer does not depend on the init scale).
    """
    if (activations is None) == (weight is None):
        raise ValueError("give exactly one of activations or weight")
    if activations is not None:
        a = activations.detach()
        return len(dead_channels(a)) / a.shape[1]
    rms = filter_rms(weight)
    threshold = 0.01 * float(rms.median()) if rms_threshold is None else rms_threshold
    return float((rms < threshold).double().mean())


def dead_channels(activations: torch.Tensor) -> list[int]:
    """Indices of the channels of ``activations [B, C, H, W]`` (or ``[B, C]``) never positive anywhere: the
    dead filters :func:`dead_fraction` counts (which ones, for marking them in a figure)."""
    a = activations.detach()
    if a.dim() == 2:
        a = a[:, :, None, None]
    return torch.nonzero(a.transpose(0, 1).flatten(1).amax(1) <= 0).flatten().tolist()


def activation_sparsity(activations: torch.Tensor, eps: float = 0.0) -> float:
    """Share of activations (all images, channels, positions) that are ``<= eps``: zeros after a ReLU."""
    return float((activations.detach() <= eps).double().mean())


def _conv_for(model: nn.Module, layer: str) -> nn.Conv2d | None:
    """The convolution that feeds ``layer`` (``features.convN`` for ``convN``; see :func:`.layers.stage_conv`)."""
    return stage_conv(model, layer)


def filter_health(
    model: nn.Module, activations: Mapping[str, torch.Tensor] | None = None, layers: list[str] | None = None
) -> dict[str, float]:
    """Scalars to log per layer, keyed ``health/<layer>/<metric>``.

    Always (from weights): ``rms_mean``, ``rms_std``, ``low_rms_frac`` (:func:`dead_fraction` on
    weights); for the model's first convolution ``aliasing`` (:func:`aliasing_index`). With ``activations`` for a layer
    (e.g. captured with :func:`.layers.capture_activations` on a few validation batches): ``dead_frac``
    (never active on those images) and ``sparsity``. ``layers`` defaults to ``conv1`` .. ``convN`` of
    the paper's models, or every ``nn.Conv2d`` (by dotted name) for other CNNs.
    """
    if layers is None:
        layers = conv_layer_names(model) or [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    first = first_conv(model)
    out: dict[str, float] = {}
    for layer in layers:
        conv = _conv_for(model, layer)
        if conv is not None:
            w = conv.weight
            out[f"health/{layer}/rms_mean"], out[f"health/{layer}/rms_std"] = rms_spread(w)
            out[f"health/{layer}/low_rms_frac"] = dead_fraction(weight=w)
            if conv is first:
                out[f"health/{layer}/aliasing"] = aliasing_index(w)
        if activations is not None and layer in activations:
            out[f"health/{layer}/dead_frac"] = dead_fraction(activations[layer])
            out[f"health/{layer}/sparsity"] = activation_sparsity(activations[layer])
    return out


__all__ = [
    "activation_sparsity",
    "aliasing_index",
    "dead_channels",
    "dead_fraction",
    "filter_health",
    "filter_rms",
    "high_frequency_share",
    "rms_spread",
]
