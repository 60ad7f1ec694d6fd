"""Helpers shared by the diagnostic callbacks: the one schedule check, sizing
and gathering top-k buffers across DDP ranks. (Which maps/images to show: :mod:`zfnet_exp.utils.tensors`.)"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..diagnostics.layers import capture_activations, resolve_layer
from ..diagnostics.topk import TopK, TopKAccumulator
from ..utils.tensors import eval_mode


@torch.no_grad()
def layer_channels(model: torch.nn.Module, layers: Sequence[str], probe: torch.Tensor) -> dict[str, int]:
    """Channel count per layer from one probe forward pass (every rank can size its buffers identically,
    even a rank that will see no batch)."""
    for layer in layers:
        resolve_layer(model, layer)  # fail early with the list of valid names
    with eval_mode(model), capture_activations(model, layers) as acts:
        model(probe)
    return {layer: int(acts[layer].shape[1]) for layer in layers}


def gather_topk(pl_module, acc: TopKAccumulator, layers: Sequence[str]) -> dict[str, TopK]:
    """All ranks' top-k buffers merged, equal to a single-process pass over the union of the shards.

    Must be called on every rank (``all_gather`` is a collective); buffer shapes are fixed by
    ``channels=`` at construction, so all ranks gather equal shapes. Returns the merged result on all ranks.
    """
    state = acc.state()
    dev = pl_module.device
    gathered = {}
    for layer in layers:
        buf = state[layer]
        v = pl_module.all_gather(buf.values.to(dev).contiguous())
        i = pl_module.all_gather(buf.indices.to(dev).contiguous())
        p = pl_module.all_gather(buf.positions.to(dev).contiguous())
        gathered[layer] = TopK(v, i, p)
    if pl_module.trainer.world_size == 1:
        return acc.result()
    return TopKAccumulator(layers, acc.k).merge_gathered(gathered).result()


def epoch_scheduled(epoch: int, every_n_epochs: int, max_epochs: int | None) -> bool:
    """1-based ``epoch`` is due every ``every_n_epochs``, and the last epoch always is."""
    return epoch % max(1, every_n_epochs) == 0 or (max_epochs is not None and max_epochs > 0 and epoch == max_epochs)


def capture_first(model: torch.nn.Module, layers: Sequence[str]):
    """:func:`capture_activations` keeping the *first* forward call after ``store.clear()``: the validation
    step's own forward, even if another callback runs the model again before batch end (an occlusion probe,
    say), whose activations must not be credited to the batch's dataset indices."""
    return capture_activations(model, layers, keep="first")


def diagnostic_due(trainer, every_n_epochs: int) -> bool:
    """Whether a validation-time diagnostic runs this epoch: not the sanity check, during fit or validate, and
    on its schedule (1-based epochs; the last epoch always). ``every_n_epochs < 1`` never runs."""
    return (
        every_n_epochs >= 1
        and not trainer.sanity_checking
        and trainer.state.fn in ("fit", "validate")
        and epoch_scheduled(trainer.current_epoch + 1, every_n_epochs, trainer.max_epochs)
    )
