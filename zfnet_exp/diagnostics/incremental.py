"""Exact incremental occlusion inference (Krypton; Nakandala, Kumar & Papakonstantinou, SIGMOD 2019).

Why: an occluder changes only a small square of the input, so in every conv/pool layer only the outputs
whose receptive field touches that square change. Re-running the whole network per occluder position (what
Captum's ``Occlusion`` does) spends most of its time recomputing values that are already known. Here every
layer of ``model.features`` is computed once for the clean image; for each occluder position only the
*changed region* of each layer is recomputed (it grows by ``kernel - 1`` and shrinks by the stride from layer
to layer; spatially pointwise layers -- ReLU, LRN across channels, BatchNorm/Dropout in eval -- keep it).
The result is exactly what re-running the network on the occluded image gives, up to float round-off.

How, batched over positions (no Python loop over positions in the hot path):

1. Geometry is separable: row and column extents are computed per *axis* for all positions at once.
   Every position gets a window of the same size per layer (the largest changed region, clamped inside
   the map), so windows of many positions stack into one batch.
2. For each conv/pool layer the input windows are *gathered* with one ``index_select`` from a row table
   ``[clean padded input rows (H*W, C) ; recomputed rows of the previous layer (N*h*w, C)]``: an index
   points into the recomputed part where the previous layer changed, into the clean part elsewhere. Zero
   padding (convs, avg-pool) and ``-inf`` padding (max-pool, including ceil-mode overhang) live in the
   padded clean table, so the layer then runs with ``padding=0`` on the windows and is exact at borders.
   Rows are channel-last, so the gathered windows are ``channels_last`` tensors without a copy.
3. The last feature map of each position is gathered the same way and fed to the rest of the network
   through the model contract, ``model.forward_head(features)`` (timm's convention; our networks and
   timm's have it, torchvision's get an adapter in :mod:`zfnet_exp.models.external`), so whatever the
   model does after its features (flatten, avg-pool, classifier) is reused unchanged. Nothing is swapped.

Applicability (otherwise :func:`unsupported_reason` says why and the caller falls back to full inference):
``model.features`` is an ``nn.Sequential`` of Conv2d (zero padding), MaxPool2d, AvgPool2d (no ceil mode,
no excluded padding), and pointwise modules, the model has ``forward_head``, and ``model(x)`` equals
``model.forward_head(model.features(x))``. Given ``reference_logits`` (``model(x)`` on the clean image) the
constructor checks the last condition numerically and raises :class:`NotApplicable` when it does not hold;
:func:`zfnet_exp.diagnostics.occlusion.occlusion_sensitivity` also spot-checks one occluded position
against re-inference, for every model.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.tensors import pair
from .layers import POINTWISE_MODULES

POINTWISE = POINTWISE_MODULES  # (zfnet_exp.diagnostics.layers)
SPATIAL: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


class NotApplicable(RuntimeError):
    """The incremental path cannot reproduce this model exactly; the message says why."""


def _module_reason(name: str, m: nn.Module) -> str | None:
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return f"features.{name}: padding_mode={m.padding_mode!r} (only zero padding)"
        if isinstance(m.padding, str) and m.padding != "valid":
            keff = [d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation)]
            if any(k % 2 == 0 for k in keff):
                return f"features.{name}: padding='same' with an even kernel is asymmetric"
        return None
    if isinstance(m, nn.MaxPool2d):
        return f"features.{name}: return_indices=True" if m.return_indices else None
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode:
            return f"features.{name}: AvgPool2d with ceil_mode (border divisors)"
        if m.divisor_override is not None:
            return f"features.{name}: AvgPool2d with divisor_override"
        if any(p > 0 for p in pair(m.padding)) and not m.count_include_pad:
            return f"features.{name}: AvgPool2d padding with count_include_pad=False"
        return None
    if isinstance(m, POINTWISE):
        if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)) and m.training:
            return f"features.{name}: {type(m).__name__} in training mode is not pointwise/deterministic"
        return None
    return f"features.{name}: {type(m).__name__} is not a supported conv/pool/pointwise module"


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the incremental path cannot run on ``model`` (structure only), or None if it can."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        return f"{type(model).__name__} has no nn.Sequential `features` stack"
    if not callable(getattr(model, "forward_head", None)):
        return f"{type(model).__name__} has no forward_head(features) (the model contract)"
    if not any(isinstance(m, SPATIAL) for m in features):
        return "model.features has no conv/pool layer"
    for name, m in features.named_children():
        reason = _module_reason(name, m)
        if reason:
            return reason
    return None


# ----------------------------------------------------------------------------------------- geometry


@dataclass
class _Axis:
    """One conv/pool layer along one axis, plus the per-position window placement along that axis."""

    kernel: int  # effective (dilated) kernel extent
    stride: int
    pad_before: int
    pad_after: int  # may exceed pad_before for ceil-mode pools whose last window overhangs
    size_in: int
    size_out: int
    # per position index along this axis (filled by _plan_axis):
    win: int = 0  # output window length (same for every position)
    start: Tensor | None = None  # output window start
    prev_start: Tensor | None = None  # where the previous recomputed window starts (input coordinates)
    prev_len: int = 0

    @property
    def span(self) -> int:  # input window length in padded coordinates
        return (self.win - 1) * self.stride + self.kernel

    @property
    def padded_in(self) -> int:
        return self.pad_before + self.size_in + self.pad_after


def _plan_axis(axes: list[_Axis], corners: Tensor, patch: int) -> tuple[Tensor, int]:
    """Propagate the changed region [lo, hi) of every position through the layers of one axis.

    Returns the start and length of the last recomputed window. Invariant: every input value that the
    occluder changes lies inside the previous recomputed window, so gathered windows are exact.
    """
    lo, hi = corners.clone(), corners + patch
    prev_start, prev_len = corners.clone(), patch
    for ax in axes:
        o_lo = torch.div(lo + ax.pad_before - ax.kernel, ax.stride, rounding_mode="floor") + 1
        o_hi = torch.div(hi + ax.pad_before - 1, ax.stride, rounding_mode="floor") + 1
        o_lo, o_hi = o_lo.clamp(0, ax.size_out), o_hi.clamp(0, ax.size_out)
        o_hi = torch.maximum(o_hi, o_lo)
        win = int((o_hi - o_lo).max().item()) if o_lo.numel() else 1
        win = min(max(win, 1), ax.size_out)
        ax.win = win
        ax.start = o_lo.clamp(0, ax.size_out - win)
        ax.prev_start, ax.prev_len = prev_start, prev_len
        lo, hi = o_lo, o_hi
        prev_start, prev_len = ax.start, win
    return prev_start, prev_len


def _axis_index(start_pad: Tensor, length: int, pad_before: int, prev_start: Tensor, prev_len: int):
    """For N positions: padded coordinates of a window, whether each lies in the previous recomputed
    window, and the offset inside it. Shapes [N, length]."""
    coords = start_pad[:, None] + torch.arange(length, device=start_pad.device)[None]
    rel = coords - pad_before - prev_start[:, None]
    inside = (rel >= 0) & (rel < prev_len)
    return coords, inside, rel.clamp(0, max(prev_len - 1, 0))


def _gather_index(ys, xs, width_padded: int, base_prev: int, prev_w: int, prev_area: int, local: Tensor) -> Tensor:
    """Flat row indices [N, hy, hx] into the table [clean padded rows ; recomputed rows]; ``local`` [N]
    is each position's slot among the recomputed rows."""
    (cy, iny, ry), (cx, inx, rx) = ys, xs
    clean = cy[:, :, None] * width_padded + cx[:, None, :]
    prev = (base_prev + local * prev_area)[:, None, None] + ry[:, :, None] * prev_w + rx[:, None, :]
    return torch.where(iny[:, :, None] & inx[:, None, :], prev, clean)


def _put_rows(table: Tensor, offset: int, cur: Tensor) -> None:
    """Write a window batch [N, C, h, w] as channel-last rows behind the clean rows of ``table``."""
    n, c, h, w = cur.shape
    table[offset : offset + n * h * w].view(n, h, w, c).copy_(cur.permute(0, 2, 3, 1))


# ----------------------------------------------------------------------------------------- the runner


@dataclass
class _Layer:
    index: int  # position in model.features
    module: nn.Module
    kind: str  # "conv" | "max" | "avg" | "point"
    y: _Axis | None = None
    x: _Axis | None = None
    weight: Tensor | None = None  # channels_last copy of a conv weight
    table: Tensor | None = None  # [clean padded rows ; room for recomputed rows], (rows, C)
    clean_rows: int = 0
    window: Tensor | None = None  # reused buffer for the gathered input windows
    band: Tensor | None = None  # LRN neighbourhood matrix (pointwise LRN layers only)

    def run(self, win: Tensor) -> Tensor:
        m = self.module
        if self.kind == "conv":
            return F.conv2d(win, self.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        if self.kind == "max":
            return F.max_pool2d(win, m.kernel_size, m.stride or m.kernel_size, 0, m.dilation, False)
        if self.kind == "avg":
            return F.avg_pool2d(win, m.kernel_size, m.stride or m.kernel_size, 0, False, True, None)
        return m(win)


def _lrn_band(m: nn.LocalResponseNorm, channels: int, like: Tensor) -> Tensor:
    """[C, C] matrix summing each channel's LRN neighbourhood, scaled by alpha / size.

    PyTorch's LRN is ``x / (k + alpha * mean_{window}(x^2)) ** beta`` with the window running from
    ``c - size // 2`` to ``c + (size - 1) // 2``; a GEMM with this band matrix gives the same sum in one
    op on channel-last rows instead of the module's pad + 3-D average pool on small windows."""
    c = torch.arange(channels, device=like.device)
    d = c[:, None] - c[None, :]  # source channel - output channel
    band = ((d >= -(m.size // 2)) & (d <= (m.size - 1) // 2)).to(like.dtype)
    return band * (m.alpha / m.size)


def _pointwise(m: nn.Module, cur: Tensor, band: Tensor | None) -> Tensor:
    """Apply a spatially pointwise module to a window batch we own (so in place is safe)."""
    if type(m) is nn.ReLU:
        return torch.relu_(cur)
    if band is not None:
        x = cur.permute(0, 2, 3, 1)
        x = x if x.is_contiguous() else x.contiguous()
        rows = x.view(-1, x.shape[-1])
        scale = torch.addmm(rows.new_tensor(float(m.k)), rows * rows, band)
        rows.mul_(scale.pow_(-m.beta))
        return x.permute(0, 3, 1, 2)
    return m(cur)


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return 0, 0
        return tuple((d * (k - 1)) // 2 for k, d in zip(m.kernel_size, m.dilation))  # 'same', odd kernel
    return pair(m.padding)


class IncrementalOcclusion:
    """Clean pass + geometry for one image, then exact occluded logits for batches of positions.

    ``layer_module`` (optional) is the module whose per-channel spatial sum is tracked: either a direct
    child of ``model.features`` (computed from the recomputed windows) or any module after ``features``
    (captured with a hook while the rest of the network runs).
    """

    def __init__(
        self,
        model: nn.Module,
        image: Tensor,
        patch: tuple[int, int],
        stride: tuple[int, int],
        fill: Tensor,
        layer_module: nn.Module | None = None,
        max_batch: int = 64,
        index_budget: int = 256 * 2**20,
        reference_logits: Tensor | None = None,
    ) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise NotApplicable(reason)
        self.model, self.image, self.fill = model, image, fill
        self.patch, self.stride = patch, stride
        self.features: nn.Sequential = model.features
        H, W = image.shape[-2:]
        self.grid = ((H - patch[0]) // stride[0] + 1, (W - patch[1]) // stride[1] + 1)
        self.max_batch, self.index_budget = max_batch, index_budget
        self.layer_module = layer_module
        children = list(self.features.children())
        self.layer_index: int | None = None
        if layer_module is not None:
            if layer_module is self.features:
                self.layer_index = len(children) - 1
            else:
                for i, m in enumerate(children):
                    if m is layer_module:
                        self.layer_index = i
        self._clean_pass(children, reference_logits)
        self._plan()

    # -- clean pass: materialize every layer input once ------------------------------------------------

    def _clean_pass(self, children: list[nn.Module], reference: Tensor | None) -> None:
        x = self.image
        self.layers: list[_Layer] = []
        self.layer_clean: Tensor | None = None
        for i, m in enumerate(children):
            if isinstance(m, SPATIAL):
                kind = "conv" if isinstance(m, nn.Conv2d) else ("max" if isinstance(m, nn.MaxPool2d) else "avg")
                out = m(x)
                if kind == "conv":
                    k, s, d, p = m.kernel_size, m.stride, m.dilation, _conv_padding(m)
                else:
                    k, s, d, p = (
                        pair(m.kernel_size),
                        pair(m.stride or m.kernel_size),
                        pair(getattr(m, "dilation", 1)),
                        pair(m.padding),
                    )
                axes = []
                for a in range(2):
                    keff = d[a] * (k[a] - 1) + 1
                    n_in, n_out = x.shape[2 + a], out.shape[2 + a]
                    after = max(p[a], (n_out - 1) * s[a] + keff - n_in - p[a])
                    axes.append(_Axis(keff, s[a], p[a], after, n_in, n_out))
                layer = _Layer(i, m, kind, axes[0], axes[1])
                pad_value = float("-inf") if kind == "max" else 0.0
                padded = F.pad(
                    x, (axes[1].pad_before, axes[1].pad_after, axes[0].pad_before, axes[0].pad_after), value=pad_value
                )
                layer.clean_rows = padded.shape[2] * padded.shape[3]
                layer.table = padded[0].permute(1, 2, 0).reshape(layer.clean_rows, -1)
                if kind == "conv":
                    layer.weight = m.weight.contiguous(memory_format=torch.channels_last)
                self.layers.append(layer)
                x = out
            else:
                layer = _Layer(i, m, "point")
                if type(m) is nn.LocalResponseNorm and x.dim() == 4:
                    layer.band = _lrn_band(m, x.shape[1], x)
                self.layers.append(layer)
                x = m(x)
            if i == self.layer_index:
                self.layer_clean = x[0].clone()  # a later in-place module must not rewrite it
        self.clean_features = x
        self.final_rows = x[0].permute(1, 2, 0).reshape(x.shape[2] * x.shape[3], -1)
        self.clean_logits, clean_layer = self.head(x)
        if self.layer_index is None:
            self.layer_clean = None if clean_layer is None else clean_layer[0]
        if reference is not None and not _close(reference, self.clean_logits):
            raise NotApplicable(
                "model(x) differs from model.forward_head(model.features(x)) "
                "(the output does not depend on x only through features)"
            )
        if self.layer_module is not None and self.layer_clean is None:
            raise NotApplicable("the chosen layer does not run in model.forward")

    @contextmanager
    def _hook(self):
        store: dict[str, Tensor] = {}
        handle = None
        if self.layer_module is not None and self.layer_index is None:
            handle = self.layer_module.register_forward_hook(lambda _m, _i, o: store.__setitem__("out", o.clone()))
        try:
            yield store
        finally:
            if handle is not None:
                handle.remove()

    def head(self, feats: Tensor) -> tuple[Tensor, Tensor | None]:
        """Run everything after ``features`` on a batch of feature maps; returns (logits, hooked layer)."""
        with self._hook() as store:
            logits = self.model.forward_head(feats)
        return logits, store.get("out")

    # -- geometry ---------------------------------------------------------------------------------------

    def _plan(self) -> None:
        dev = self.image.device
        spatial = [layer for layer in self.layers if layer.kind != "point"]
        corners_y = torch.arange(self.grid[0], device=dev) * self.stride[0]
        corners_x = torch.arange(self.grid[1], device=dev) * self.stride[1]
        self.corners = (corners_y, corners_x)
        self.final_start_y, self.final_len_y = _plan_axis([layer.y for layer in spatial], corners_y, self.patch[0])
        self.final_start_x, self.final_len_x = _plan_axis([layer.x for layer in spatial], corners_x, self.patch[1])
        # grow each row table so the recomputed rows of a full batch fit behind the clean rows
        for layer in spatial:
            room = self.max_batch * layer.y.prev_len * layer.x.prev_len
            table = layer.table.new_empty(layer.clean_rows + room, layer.table.shape[1])
            table[: layer.clean_rows] = layer.table
            layer.table = table
            layer.window = table.new_empty(self.max_batch * layer.y.span * layer.x.span, table.shape[1])
        Hf, Wf = self.clean_features.shape[-2:]
        room = self.max_batch * self.final_len_y * self.final_len_x
        table = self.final_rows.new_empty(self.final_rows.shape[0] + room, self.final_rows.shape[1])
        table[: self.final_rows.shape[0]] = self.final_rows
        self.final_table, self.final_clean_rows, self.final_size = table, self.final_rows.shape[0], (Hf, Wf)
        self.final_window = table.new_empty(self.max_batch * Hf * Wf, table.shape[1])
        # the occluder itself: the first recomputed "window" (copied per batch if a pointwise layer follows)
        self.fill_window = (
            self.fill.view(1, -1, 1, 1)
            .expand(self.max_batch, -1, *self.patch)
            .contiguous(memory_format=torch.channels_last)
        )
        self.fill_is_read_only = self.layers[0].kind != "point"
        self._all_indices = None
        total = self.grid[0] * self.grid[1]
        per_position = sum(layer.y.span * layer.x.span for layer in spatial) + Hf * Wf
        if total * per_position * 8 <= self.index_budget:
            flat = torch.arange(total, device=dev)
            self._all_indices = self._indices(flat // self.grid[1], flat % self.grid[1], flat % self.max_batch)

    def macs_per_position(self) -> tuple[int, int]:
        """(full, incremental) multiply-accumulates of the convolutions per occluder position (what sets
        the FLOP ceiling of the speed-up; the layers after ``features`` add the same to both)."""
        full = inc = 0
        for layer in self.layers:
            if layer.kind == "conv":
                w = layer.module.weight
                per_out = w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
                full += per_out * layer.y.size_out * layer.x.size_out
                inc += per_out * layer.y.win * layer.x.win
        return full, inc

    def _prepare_channel(self, channel: int) -> None:
        """Clean window sums of ``channel`` of the tracked layer, from a float64 integral image."""
        if getattr(self, "_channel", None) == channel:
            return
        c = self.layer_clean[channel].double()
        self._integral = F.pad(c.cumsum(0).cumsum(1), (1, 0, 1, 0))
        self._clean_total, self._channel = c.sum(), channel

    # -- occluded evaluation -------------------------------------------------------------------------

    def _indices(self, iy: Tensor, ix: Tensor, local: Tensor) -> list[Tensor]:
        """Gather indices [N, span_y, span_x] per conv/pool layer (and the final map) for these positions.

        The recomputed rows of the position in batch slot ``local`` sit at ``clean_rows + local * area``.
        Batches that start at a multiple of ``max_batch`` put position ``p`` in slot ``p % max_batch``, so
        their indices are computed once for all positions when they fit in ``index_budget`` bytes.
        """
        out = []
        for layer in self.layers:
            if layer.kind == "point":
                continue
            ay, ax = layer.y, layer.x
            ys = _axis_index(ay.start[iy] * ay.stride, ay.span, ay.pad_before, ay.prev_start[iy], ay.prev_len)
            xs = _axis_index(ax.start[ix] * ax.stride, ax.span, ax.pad_before, ax.prev_start[ix], ax.prev_len)
            out.append(
                _gather_index(ys, xs, ax.padded_in, layer.clean_rows, ax.prev_len, ay.prev_len * ax.prev_len, local)
            )
        (Hf, Wf), zero = self.final_size, torch.zeros_like(iy)
        ys = _axis_index(zero, Hf, 0, self.final_start_y[iy], self.final_len_y)
        xs = _axis_index(zero, Wf, 0, self.final_start_x[ix], self.final_len_x)
        out.append(
            _gather_index(
                ys, xs, Wf, self.final_clean_rows, self.final_len_x, self.final_len_y * self.final_len_x, local
            )
        )
        return out

    def _cached_indices(self, iy: Tensor, ix: Tensor) -> list[Tensor]:
        n = len(iy)
        if self._all_indices is not None:
            flat = iy * self.grid[1] + ix
            first = int(flat[0])
            aligned = first % self.max_batch == 0
            if aligned and torch.equal(flat, torch.arange(first, first + n, device=flat.device)):
                return [idx[first : first + n] for idx in self._all_indices]
        return self._indices(iy, ix, torch.arange(n, device=iy.device))

    def evaluate(self, iy: Tensor, ix: Tensor, channel: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits [N, K] (and the channel's summed activation [N], float64) for positions (iy, ix).

        Internal buffers are reused: the outputs are valid until the next call."""
        n = iy.shape[0]
        if n > self.max_batch:
            raise ValueError(f"batch of {n} positions exceeds max_batch={self.max_batch}")
        if channel is not None and self.layer_index is not None:
            self._prepare_channel(channel)
        indices = iter(self._cached_indices(iy, ix))
        py, px = self.patch
        cur = self.fill_window[:n] if self.fill_is_read_only else self.fill_window[:n].clone()
        gy, gx = self.corners[0][iy], self.corners[1][ix]  # geometry of `cur`: start and length per axis
        ly, lx = py, px
        act = None
        for layer in self.layers:
            if layer.kind == "point":
                cur = _pointwise(layer.module, cur, layer.band)
            else:
                ay, ax = layer.y, layer.x
                _put_rows(layer.table, layer.clean_rows, cur)
                idx = next(indices).view(-1)
                win = torch.index_select(layer.table, 0, idx, out=layer.window[: idx.numel()])
                cur = layer.run(win.view(n, ay.span, ax.span, -1).permute(0, 3, 1, 2))
                gy, gx, ly, lx = ay.start[iy], ax.start[ix], ay.win, ax.win
            if layer.index == self.layer_index and channel is not None:
                act = self._layer_sum(cur, channel, gy, gx, ly, lx)
        Hf, Wf = self.final_size
        _put_rows(self.final_table, self.final_clean_rows, cur)
        idx = next(indices).view(-1)
        feats = torch.index_select(self.final_table, 0, idx, out=self.final_window[: idx.numel()])
        feats = feats.view(n, Hf, Wf, -1).permute(0, 3, 1, 2)
        logits, hooked = self.head(feats)
        if act is None and hooked is not None and channel is not None:
            act = hooked[:, channel].reshape(n, -1).double().sum(1)
        return logits, act

    def _layer_sum(self, cur: Tensor, channel: int, gy: Tensor, gx: Tensor, ly: int, lx: int) -> Tensor:
        """Clean total - clean window + recomputed window: the channel's spatial sum per position."""
        new = cur[:, channel].double().sum((1, 2))
        integ = self._integral
        old = integ[gy + ly, gx + lx] - integ[gy, gx + lx] - integ[gy + ly, gx] + integ[gy, gx]
        return self._clean_total - old + new


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(a.abs().max()) if a.numel() else 0.0
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-4 * (1.0 + scale)
