"""The architecture as configuration: ``model.arch`` (a table of named layers) <-> :class:`ArchSpec`.

Config format of one layer (``model.arch.<name>``; the schema is :mod:`zfnet_exp.models.options`):

* conv layers ``conv<N>[letter]``: ``out_channels``, ``kernel``, ``stride`` (1), ``padding`` (0),
  ``pool: {kernel, stride, ceil_mode}`` or null (no pooling),
  ``norm: {enabled, size, alpha, beta, k, position: before_pool | after_pool}`` or null (no normalization);
* hidden FC layers ``fc<N>[letter]`` with N < 8: ``units``, ``dropout`` (0.5). ``fc8`` is the classifier;
* ``null`` in place of a layer removes it (``model.arch.conv3=null``, or ``~model.arch.conv3``).

:func:`spec_from_config` is the one place where a layer table is checked: every out-of-range value and every
geometry that leaves no spatial output raises :class:`~zfnet_exp.errors.ConfigError` naming the full key
(``model.arch.conv1.kernel``) and the valid range, before any module is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from enum import Enum
from typing import Any

from ..errors import ConfigError
from .convnet import ArchSpec, ConvSpec, FCSpec, GeometryError, NormSpec, PoolSpec, layer_order, layer_sizes

CONV_KEYS = ("out_channels", "kernel", "stride", "padding", "pool", "norm")
FC_KEYS = ("units", "dropout")
POOL_KEYS = ("kernel", "stride", "ceil_mode")
NORM_KEYS = ("enabled", "size", "alpha", "beta", "k", "position")
POSITIONS = ("before_pool", "after_pool")


def _plain(value: Any) -> Any:
    """A DictConfig / dataclass / Enum value as plain Python (dicts, lists, str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return value.name
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _int(value: Any, key: str, low: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} is out of range: {what} must be an integer >= {low}.")
    return value


def _float(value: Any, key: str, what: str, low: float, high: float | None = None, open_low=False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value < high)
    if not ok:
        rng = f"{'>' if open_low else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ConfigError(f"{key}={value!r} is out of range: {what} must be a number {rng}.")
    return float(value)


def _unknown(layer: Mapping, allowed: tuple[str, ...], key: str, kind: str) -> None:
    extra = [k for k, v in layer.items() if k not in allowed and v is not None]
    if extra:
        raise ConfigError(
            f"{key}.{extra[0]} does not apply to a {kind} layer; a {kind} layer has: {', '.join(allowed)}."
        )


def _pool(cfg: Any, key: str) -> PoolSpec | None:
    if cfg is None:
        return None
    _unknown(cfg, POOL_KEYS, key, "pooling")
    d = PoolSpec()
    return PoolSpec(
        kernel=_int(cfg.get("kernel", d.kernel), f"{key}.kernel", 1, "the pooling window"),
        stride=_int(cfg.get("stride", d.stride), f"{key}.stride", 1, "the pooling stride"),
        ceil_mode=bool(cfg.get("ceil_mode", d.ceil_mode)),
    )


def _norm(cfg: Any, key: str) -> NormSpec | None:
    if cfg is None or not cfg.get("enabled", True):
        return None
    _unknown(cfg, NORM_KEYS, key, "normalization")
    d = NormSpec()
    position = cfg.get("position") or "after_pool"
    if position not in POSITIONS:
        raise ConfigError(f"{key}.position={position!r} is not a valid choice; choose one of: {', '.join(POSITIONS)}.")
    return NormSpec(
        size=_int(cfg.get("size", d.size), f"{key}.size", 1, "the number of neighbouring maps"),
        alpha=_float(cfg.get("alpha", d.alpha), f"{key}.alpha", "alpha", 0.0),
        beta=_float(cfg.get("beta", d.beta), f"{key}.beta", "beta", 0.0),
        k=_float(cfg.get("k", d.k), f"{key}.k", "k (keeps the denominator positive)", 0.0, open_low=True),
        before_pool=position == "before_pool",
    )


def _conv(cfg: Mapping, key: str) -> ConvSpec:
    _unknown(cfg, CONV_KEYS, key, "conv")
    for req in ("out_channels", "kernel"):
        if cfg.get(req) is None:
            raise ConfigError(f"{key}.{req} must be set: a conv layer needs out_channels and kernel.")
    return ConvSpec(
        out_channels=_int(cfg["out_channels"], f"{key}.out_channels", 1, "the number of feature maps"),
        kernel=_int(cfg["kernel"], f"{key}.kernel", 1, "the kernel size"),
        stride=_int(cfg.get("stride") if cfg.get("stride") is not None else 1, f"{key}.stride", 1, "the stride"),
        padding=_int(cfg.get("padding") if cfg.get("padding") is not None else 0, f"{key}.padding", 0, "padding"),
        pool=_pool(cfg.get("pool"), f"{key}.pool"),
        norm=_norm(cfg.get("norm"), f"{key}.norm"),
    )


def _fc(cfg: Mapping, key: str) -> FCSpec:
    _unknown(cfg, FC_KEYS, key, "FC")
    if cfg.get("units") is None:
        raise ConfigError(f"{key}.units must be set: a hidden FC layer needs units.")
    dropout = cfg.get("dropout")
    return FCSpec(
        units=_int(cfg["units"], f"{key}.units", 1, "the number of units"),
        dropout=0.5 if dropout is None else _float(dropout, f"{key}.dropout", "the dropout probability", 0.0, 1.0),
    )


def spec_from_config(arch: Any, input_size: int | None = None, key: str = "model.arch") -> ArchSpec:
    """Check a layer table (mapping name -> layer config or None) and turn it into an :class:`ArchSpec`.

    With ``input_size`` the geometry is checked too: the first layer that has no spatial output left is named.
    """
    table = _plain(arch)
    if not isinstance(table, dict):
        raise ConfigError(f"{key} must be a table of layers (conv1: {{...}}, fc6: {{...}}); got {arch!r}.")
    convs: dict[str, ConvSpec] = {}
    fcs: dict[str, FCSpec] = {}
    for name, layer in table.items():
        if layer is None:
            continue  # removed
        try:
            kind, number, _ = layer_order(name)
        except ValueError:
            raise ConfigError(
                f"{key}.{name}: not a layer name. Conv layers are conv<N>[a-z] (conv6 after conv5, conv3b between "
                f"conv3 and conv4), hidden FC layers fc<N>[a-z] with N < 8 (fc7b after fc7); fc8 is the classifier."
            ) from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{key}.{name} must be a layer table or null (removed); got {layer!r}.")
        if kind == "fc" and number >= 8:
            raise ConfigError(
                f"{key}.{name}: hidden FC layers are numbered below 8 (fc6, fc7, fc7b, ...); fc8 is the classifier "
                f"and always comes last, sized by the dataset's number of classes."
            )
        if kind == "conv":
            convs[name] = _conv(layer, f"{key}.{name}")
        else:
            fcs[name] = _fc(layer, f"{key}.{name}")
    if not convs:
        raise ConfigError(f"{key} has no conv layer left; keep at least one (e.g. conv1).")
    spec = ArchSpec(convs=convs, fcs=fcs)
    if input_size is not None:
        check_geometry(spec, input_size, key)
    return spec


def check_geometry(spec: ArchSpec, input_size: int, key: str = "model.arch") -> list[tuple[str, int]]:
    """Spatial size after every stage; a :class:`ConfigError` naming the layer whose output runs out."""
    try:
        return layer_sizes(spec, input_size)
    except GeometryError as err:
        where = f"{key}.{err.layer}" + (f".{err.sub}" if err.sub else "")
        raise ConfigError(
            f"{where}: {err} Use a larger data.image_size, smaller strides or kernels before this layer "
            f"(e.g. {key}.conv1.stride), or remove a pooling stage ({key}.<layer>.pool=null)."
        ) from None


def config_from_spec(spec: ArchSpec) -> dict[str, dict[str, Any]]:
    """The layer table of ``spec`` in config format (what ``conf/model/<name>.yaml`` writes out)."""
    out: dict[str, dict[str, Any]] = {}
    for name, c in spec.convs.items():
        norm = None
        if c.norm is not None:
            n = asdict(c.norm)
            position = "before_pool" if n.pop("before_pool") else "after_pool"
            norm = {"enabled": True, **n, "position": position}
        out[name] = {
            "out_channels": c.out_channels,
            "kernel": c.kernel,
            "stride": c.stride,
            "padding": c.padding,
            "pool": None if c.pool is None else asdict(c.pool),
            "norm": norm,
        }
    for name, f in spec.fcs.items():
        out[name] = {"units": f.units, "dropout": f.dropout}
    return out


def apply_edits(spec: ArchSpec, edits: Mapping[str, Any] | None, key: str = "arch") -> ArchSpec:
    """``spec`` with per-layer edits merged in: ``{"conv1": {"kernel": 11, "stride": 4}}`` changes two fields,
    ``{"conv3": None}`` removes a layer, an unknown name adds one, ``{"conv1": {"pool": None}}`` drops a pooling.
    Used by :func:`zfnet_exp.models.create_model`; a Hydra config instead carries the whole table."""
    table = config_from_spec(spec)
    for name, edit in (_plain(edits) or {}).items():
        if edit is None:
            table[name] = None
        elif name in table and table[name] is not None:
            merged = dict(table[name])
            for field_name, value in edit.items():
                if isinstance(value, dict) and isinstance(merged.get(field_name), dict):
                    merged[field_name] = {**merged[field_name], **value}
                else:
                    merged[field_name] = value
            table[name] = merged
        else:
            table[name] = edit
    return spec_from_config(table, key=key)


def legacy_edits(
    spec: ArchSpec,
    remove: tuple[int, ...] | None = None,
    fc_units: int | None = None,
    conv_widths: Mapping[int, int] | None = None,
    dropout: float | None = None,
) -> dict[str, Any]:
    """The earlier ``create_model`` knobs (Table 3: remove layers by number, resize FC 6-7, widen convs,
    dropout) as layer edits."""
    edits: dict[str, Any] = {}
    for n in remove or ():
        name = f"conv{int(n)}" if f"conv{int(n)}" in spec.convs else f"fc{int(n)}"
        if name not in spec.convs and name not in spec.fcs:
            raise ValueError(f"remove={list(remove)}: this model has no layer {int(n)}")
        edits[name] = None
    for n, width in (conv_widths or {}).items():
        if f"conv{int(n)}" not in spec.convs or f"conv{int(n)}" in edits:
            raise ValueError(f"conv_widths names conv{int(n)}, which this model does not have")
        edits[f"conv{int(n)}"] = {"out_channels": int(width)}
    for name in spec.fcs:
        if name in edits:
            continue
        change = {}
        if fc_units is not None:
            change["units"] = int(fc_units)
        if dropout is not None:
            change["dropout"] = float(dropout)
        if change:
            edits[name] = change
    return edits


__all__ = ["apply_edits", "check_geometry", "config_from_spec", "legacy_edits", "spec_from_config"]
