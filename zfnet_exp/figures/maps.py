"""Which feature maps a figure shows: the seeded choice, keyed by the layer's canonical name.

Why not :func:`zfnet_exp.utils.tensors.pick_maps` directly: it offsets the seed by the layer *name* it is
given, so ``conv5``, ``features.relu5`` and ``last_conv`` (one layer, three accepted spellings) would show
different maps. Resolving the name first (:func:`~zfnet_exp.diagnostics.layers.layer_label`: ``conv5`` on our
networks, the dotted module path elsewhere) makes the choice a property of the layer, the same in the training
callbacks, the offline analyses and the experiment summaries.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..diagnostics.layers import layer_label
from ..utils.tensors import pick_maps


def choose_maps(
    model: nn.Module, layer: str, num_channels: int, maps: int | str | Sequence[int] | None, seed: int
) -> list[int]:
    """The channels of ``layer`` to draw (``maps``: ``"all"``/None, a count N for a seeded subset, or a list),
    seeded by ``seed`` and the canonical name of ``layer``, whichever spelling is given."""
    return pick_maps(num_channels, maps, seed, layer_label(model, layer))


__all__ = ["choose_maps"]
