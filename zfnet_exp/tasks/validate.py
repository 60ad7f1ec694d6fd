"""Config checks that run before anything is built, so a wrong value fails at start in one clear paragraph."""

from __future__ import annotations

from omegaconf import DictConfig

from ..data.transforms import NORMALIZATIONS
from ..errors import UserError
from ..models import INIT_SCHEMES, list_models


def _choice(value, choices, key: str) -> None:
    if value not in choices:
        raise UserError(
            f"{key}={value!r} is not a valid choice; choose one of: {', '.join(map(str, choices))}. "
            f"Example: python train.py {key}={choices[0]}"
        )


def validate_config(cfg: DictConfig) -> None:
    _choice(cfg.model.arch, list_models(), "model.arch")
    _choice(cfg.model.init, list(INIT_SCHEMES), "model.init")
    _choice(cfg.data.normalization, list(NORMALIZATIONS), "data.normalization")
    if int(cfg.data.image_size) < 64:
        raise UserError(
            f"data.image_size={cfg.data.image_size} is too small for the 5-conv models; use >= 64 "
            f"(224 is the paper's size)."
        )
    overrides = cfg.model.get("overrides") or {}
    unknown = set(overrides) - {"remove", "fc_units", "conv_widths", "dropout"}
    if unknown:
        raise UserError(
            f"model.overrides has unknown key(s) {sorted(unknown)}; valid keys: remove, fc_units, conv_widths, dropout."
        )
