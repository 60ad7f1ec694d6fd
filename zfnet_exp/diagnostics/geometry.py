"""Where a unit of a layer looks in the input: receptive fields, the patches they cut, and the forward walk.

The geometry is read from a forward pass, not from the module registration order: a probe runs up to the
layer (on the ``meta`` device: shapes only, milliseconds) with hooks on every leaf module, and the calls
must form a *chain*: each module consumes the previous module's output, unmodified (tensor identity and
version counter, so an in-place ``out += identity`` is caught too). That is what makes the arithmetic
below exact, and it refuses, instead of silently mis-computing, networks with branches (a ResNet block's
downsample path is registered between the convs it runs beside) or functional ops between modules. It also
reads the real map sizes from the pass, so ceil-mode pooling and any input size need no formulas.

For one axis, an op with kernel ``k``, stride ``s``, left padding ``p`` and dilation ``d`` maps output unit
``u`` to input positions ``[u*s - p, u*s - p + d*(k-1)]``. Composing these from the layer down to the
pixels gives the *unclipped* receptive field ``[start + y*jump, start + y*jump + size - 1]``. Positions
outside a map are padding (zero for convolutions, ignored by max-pooling), so the *clipped* box drops them
at every layer; it is exactly the set of real pixels whose change can change the unit, which is what the
tests check against autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..utils.tensors import eval_mode, pair
from .layers import POINTWISE_MODULES, resolve_layer

POINTWISE_TYPES = POINTWISE_MODULES  # (zfnet_exp.diagnostics.layers)


class NoReceptiveField(ValueError):
    """Receptive-field geometry does not apply to this layer (see the subclass and the message for why)."""


class NotAChain(NoReceptiveField):
    """The path to a layer is not a chain of modules (a branch, a residual add, a functional op in forward)."""


class _Reached(Exception):
    """Raised from a forward hook to stop the pass once the wanted layers have run (skips the classifier)."""


def run_until(
    model: nn.Module,
    x: torch.Tensor,
    modules: Sequence[nn.Module],
    call: Callable[[torch.Tensor], object] | None = None,
) -> list[torch.Tensor]:
    """Run ``model(x)`` (or ``call(x)``) only as far as needed for every module in ``modules`` to have run.

    Returns the outputs in the order of ``modules``. A module that runs several times per forward pass (a
    shared ReLU) contributes its *first* call. Hooks registered earlier (e.g. ones that replace an output)
    have already been applied to what is returned.
    """
    outputs: dict[int, torch.Tensor] = {}
    wanted = {id(m) for m in modules}
    handles = []

    def hook(mod, _inp, out):
        outputs.setdefault(id(mod), out)
        if wanted.issubset(outputs):
            raise _Reached

    for m in {id(m): m for m in modules}.values():
        handles.append(m.register_forward_hook(hook))
    try:
        (call or model)(x)
    except _Reached:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [m for m in modules if id(m) not in outputs]
    if missing:
        raise ValueError(f"{len(missing)} requested module(s) never ran in the forward pass: {missing}")
    return [outputs[id(m)] for m in modules]


@dataclass(frozen=True)
class SpatialOp:
    """One leaf module of the chain, reduced to what moves positions around (per axis: (rows, cols))."""

    name: str
    kind: str  # "conv", "maxpool", "avgpool" or "pointwise"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]  # left/top padding; the right/bottom side only shows up in out_size
    dilation: tuple[int, int]
    in_size: tuple[int, int]
    out_size: tuple[int, int]


def _as_op(name: str, m: nn.Module, in_size: tuple[int, int], out_size: tuple[int, int]) -> SpatialOp | None:
    one = (1, 1)
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return None
        k, s, d = pair(m.kernel_size), pair(m.stride), pair(m.dilation)
        if m.padding == "valid":
            p = (0, 0)
        elif m.padding == "same":
            p = tuple((d[i] * (k[i] - 1)) // 2 for i in range(2))
        else:
            p = pair(m.padding)
        return SpatialOp(name, "conv", k, s, p, d, in_size, out_size)
    if isinstance(m, nn.MaxPool2d):
        k = pair(m.kernel_size)
        s = pair(m.stride if m.stride is not None else m.kernel_size)
        return SpatialOp(name, "maxpool", k, s, pair(m.padding), pair(m.dilation), in_size, out_size)
    if isinstance(m, nn.AvgPool2d):
        k = pair(m.kernel_size)
        s = pair(m.stride if m.stride is not None else m.kernel_size)
        return SpatialOp(name, "avgpool", k, s, pair(m.padding), one, in_size, out_size)
    if isinstance(m, POINTWISE_TYPES):
        return SpatialOp(name, "pointwise", one, one, (0, 0), one, in_size, out_size)
    return None


def _record_calls(model: nn.Module, target: nn.Module, x: torch.Tensor, call) -> tuple[list, torch.Tensor]:
    """Leaf-module calls up to ``target`` as [module, input, input version, output, output version].

    Versions (``Tensor._version``, bumped by every in-place op) expose in-place ops between modules, such
    as a residual ``out += identity`` that keeps the tensor object but changes its content.
    """
    calls: list[list] = []

    def pre(mod, inp):
        t = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
        calls.append([mod, t, None if t is None else t._version, None, None])

    def post(mod, inp, out):
        for entry in reversed(calls):
            if entry[0] is mod and entry[3] is None:
                entry[3], entry[4] = out, out._version if isinstance(out, torch.Tensor) else None
                break

    handles = []
    for m in model.modules():
        if next(iter(m.children()), None) is None:
            handles.append(m.register_forward_pre_hook(pre))
            if m is not target:
                handles.append(m.register_forward_hook(post))
    try:
        with torch.no_grad():
            (target_out,) = run_until(model, x, [target], call)
    finally:
        for h in handles:
            h.remove()
    if calls and calls[-1][0] is target and calls[-1][3] is None:  # a leaf target: run_until caught its output
        calls[-1][3], calls[-1][4] = target_out, target_out._version
    return calls, target_out


def trace_chain(model: nn.Module, layer: str, probe: torch.Tensor | Sequence[int]) -> list[SpatialOp]:
    """The leaf modules run on the way from an input to ``layer``, checked to be a chain (module docstring).

    ``probe`` is an input tensor or just its shape ``(B, C, H, W)``. Only shapes matter, so the pass runs on
    the ``meta`` device (no arithmetic: a ZFNet trace takes milliseconds); models whose forward needs real
    values fall back to a real pass on zeros. Raises ValueError, naming the first offending module, when the
    path is not a chain of convolutions, pools and pointwise modules.
    """
    target_name, target = resolve_layer(model, layer)
    shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else tuple(int(v) for v in probe)
    ref = probe if isinstance(probe, torch.Tensor) else next(model.parameters(), torch.empty(0))
    try:
        state = {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}
        x = torch.empty(shape, dtype=ref.dtype, device="meta")
        calls, target_out = _record_calls(model, target, x, lambda t: functional_call(model, state, (t,)))
    except (NotImplementedError, RuntimeError):
        x = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        calls, target_out = _record_calls(model, target, x, None)
    names = {id(m): n for n, m in model.named_modules()}
    ops: list[SpatialOp] = []
    prev, prev_version = x, x._version
    for m, inp, inp_version, out, out_version in calls:
        name = names.get(id(m), type(m).__name__)
        if inp is not prev or inp_version != prev_version:
            raise NotAChain(
                f"the path to {layer!r} is not a chain of modules: {name!r} does not consume the previous "
                f"module's output (branches, residual connections or functional ops in forward)"
            )
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise NoReceptiveField(
                f"the path to {layer!r} leaves the spatial part at {name!r} (output is not [B,C,H,W])"
            )
        op = _as_op(name, m, tuple(prev.shape[-2:]), tuple(out.shape[-2:]))
        if op is None:
            raise NoReceptiveField(
                f"no receptive-field rule for {name!r} ({type(m).__name__}) on the path to {layer!r}"
            )
        ops.append(op)
        prev, prev_version = out, out_version
    if prev is not target_out or target_out._version != prev_version:
        raise NotAChain(f"the output of {target_name!r} is not the end of a module chain")
    return ops


def input_ranges(ops: Sequence[SpatialOp], axis: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """Per op, from the last down to the first: the (lo, hi) range of *input* positions on ``axis`` that
    output units ``[lo, hi]`` depend on (unclipped: may run into padding), with that input's size.

    The last entry is the pixel range; an entry with ``lo < 0`` or ``hi >= size`` touches padding there.
    """
    out = []
    for op in reversed(ops):
        lo = lo * op.stride[axis] - op.padding[axis]
        hi = hi * op.stride[axis] - op.padding[axis] + op.dilation[axis] * (op.kernel[axis] - 1)
        out.append((lo, hi, op.in_size[axis]))
    return out


def _clipped_range(ops: Sequence[SpatialOp], axis: int, u: int) -> tuple[int, int]:
    """Half-open pixel range that unit ``u`` can see, dropping padding positions at every layer."""
    lo = hi = u
    for op in reversed(ops):
        lo = max(lo * op.stride[axis] - op.padding[axis], 0)
        hi = min(
            hi * op.stride[axis] - op.padding[axis] + op.dilation[axis] * (op.kernel[axis] - 1), op.in_size[axis] - 1
        )
        if hi < lo:
            return 0, 0
    return lo, hi + 1


@dataclass(frozen=True)
class LayerGeometry:
    """Receptive-field arithmetic of one layer at one input size (per axis: (rows, cols))."""

    layer: str
    input_size: tuple[int, int]
    map_size: tuple[int, int]
    rf_size: tuple[int, int]  # unclipped receptive-field size in pixels
    jump: tuple[int, int]  # pixels between neighbouring units (product of strides)
    start: tuple[int, int]  # unclipped first pixel of unit (0, 0); negative = reaches into padding
    ops: tuple[SpatialOp, ...]

    def box(self, y: int, x: int, clip: bool = True) -> tuple[int, int, int, int]:
        """Half-open pixel box ``(y0, x0, y1, x1)`` of unit (y, x): ``image[..., y0:y1, x0:x1]``.

        ``clip=True``: only real positions, clipped at *every* layer's map, not just at the image: a
        floor-mode pool or a strided conv can drop the last rows of its input, and pixels seen only by
        those rows cannot reach the unit. ``clip=False``: the full field, running into the padding.
        """
        if not clip:
            y0, x0 = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
            return y0, x0, y0 + self.rf_size[0], x0 + self.rf_size[1]
        (y0, y1), (x0, x1) = (_clipped_range(self.ops, axis, u) for axis, u in ((0, y), (1, x)))
        return y0, x0, y1, x1


def geometry_from_ops(layer: str, ops: Sequence[SpatialOp]) -> LayerGeometry:
    """Compose a traced chain into a :class:`LayerGeometry` (for callers that already traced it)."""
    if not ops:
        raise ValueError(f"{layer!r}: empty module chain")
    size, jump, start = [1, 1], [1, 1], [0, 0]
    for axis in range(2):
        (lo, hi, _) = input_ranges(ops, axis, 0, 0)[-1]
        size[axis], start[axis] = hi - lo + 1, lo
        for op in ops:
            jump[axis] *= op.stride[axis]
    return LayerGeometry(layer, ops[0].in_size, ops[-1].out_size, tuple(size), tuple(jump), tuple(start), tuple(ops))


def layer_geometry(
    model: nn.Module, layer: str, input_size: int | tuple[int, int] = 224, in_channels: int = 3
) -> LayerGeometry:
    """Trace ``model`` on a zero probe of ``input_size`` and return the receptive-field geometry of ``layer``."""
    with eval_mode(model):
        ops = trace_chain(model, layer, (1, in_channels, *pair(input_size)))
    return geometry_from_ops(layer, ops)


def receptive_field(
    model: nn.Module, layer: str, y: int, x: int, input_size: int | tuple[int, int] = 224
) -> tuple[int, int, int, int]:
    """Half-open input-pixel box ``(y0, x0, y1, x1)`` of unit (y, x) of ``layer``, clipped at the borders."""
    return layer_geometry(model, layer, input_size).box(y, x)


def receptive_field_patches(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    positions: torch.Tensor,
    fill: float = 0.0,
    geometry: LayerGeometry | None = None,
) -> torch.Tensor:
    """Cut the receptive field of unit ``positions[i] = (y, x)`` out of ``images[i]``: ``[B, C, Rh, Rw]``.

    Every patch has the full, unclipped receptive-field size; where the field runs past the image border
    the missing part is ``fill`` (0 = the mean colour for normalized inputs) at the side where it is
    missing. So the unit's centre is always the patch centre, and a top-9 grid of patches (or of
    deconvnet projections cut the same way) lines up cell by cell, border units included. Pixels that the
    unit cannot see (see :meth:`LayerGeometry.box`) are ``fill`` too.
    """
    geom = geometry or layer_geometry(model, layer, tuple(images.shape[-2:]), images.shape[1])
    rh, rw = geom.rf_size
    out = images.new_full((images.shape[0], images.shape[1], rh, rw), fill)
    for i, (y, x) in enumerate(positions.tolist()):
        uy0, ux0, _, _ = geom.box(y, x, clip=False)
        y0, x0, y1, x1 = geom.box(y, x, clip=True)
        if y1 > y0 and x1 > x0:
            out[i, :, y0 - uy0 : y1 - uy0, x0 - ux0 : x1 - ux0] = images[i, :, y0:y1, x0:x1]
    return out


def receptive_field_patch(
    model: nn.Module, image: torch.Tensor, layer: str, y: int, x: int, fill: float = 0.0
) -> torch.Tensor:
    """One image ``[C, H, W]`` -> its patch ``[C, Rh, Rw]`` for unit (y, x); see :func:`receptive_field_patches`."""
    pos = torch.tensor([[y, x]])
    return receptive_field_patches(model, image.unsqueeze(0), layer, pos, fill)[0]


__all__ = [
    "LayerGeometry",
    "NoReceptiveField",
    "NotAChain",
    "SpatialOp",
    "geometry_from_ops",
    "input_ranges",
    "layer_geometry",
    "receptive_field",
    "receptive_field_patch",
    "receptive_field_patches",
    "run_until",
    "trace_chain",
]
