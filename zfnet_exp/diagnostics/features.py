"""Frozen features of one layer, for linear classifiers on top (paper Sec. 5.2, Table 7).

Layer ``k`` of the paper is numbered 1..7: ``1..5`` the convolutional layers, ``6, 7`` the fully connected ones.

- ``k = 6, 7``: the rectified FC output (``fc6``/``fc7``, 4096-d for the paper's nets); dropout is off in eval mode.
- ``k = 1..5``: the rectified conv output (``convk``, before pooling and normalization) max-pooled to a
  ``grid x grid`` map (``adaptive_max_pool2d``) and flattened, ``channels * grid^2`` values. At 224 px with
  ``grid=6`` layer 5 is then exactly ``pool5`` (the 3x3/2 max-pool windows of a 13x13 map are the adaptive
  pool's bins), the input of fc6, and lower layers give fixed-size vectors that keep coarse layout,
  whatever their map size (110x110 for conv1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import capture_activations

PAPER_LAYERS = (1, 2, 3, 4, 5, 6, 7)


def layer_name(layer: int | str) -> str:
    """The diagnostics' name of paper layer ``k`` (``3`` -> ``conv3``, ``7`` -> ``fc7``); names pass through."""
    if isinstance(layer, str) and not layer.isdigit():
        return layer
    k = int(layer)
    if k not in PAPER_LAYERS:
        raise ValueError(f"layer {k}: the paper's layers are 1..7 (1-5 convolutional, 6-7 fully connected)")
    return f"conv{k}" if k <= 5 else f"fc{k}"


@torch.no_grad()
def layer_features(model: nn.Module, images: torch.Tensor, layer: int | str, grid: int = 6) -> torch.Tensor:
    """``[B, D]`` features of ``layer`` for normalized ``images [B,3,H,W]`` (model in eval mode)."""
    name = layer_name(layer)
    with capture_activations(model, [name]) as acts:
        model(images)
    out = acts[name]
    if out.ndim == 4:
        out = F.adaptive_max_pool2d(out, grid)
    return out.flatten(1)
