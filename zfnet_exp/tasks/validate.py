"""Config checks that run before anything is built, so a wrong value fails at start in one clear paragraph."""

from __future__ import annotations

from omegaconf import DictConfig

from ..data.transforms import NORMALIZATIONS
from ..errors import UserError
from ..schemas import validate_model


def _choice(value, choices, key: str) -> None:
    if value not in choices:
        raise UserError(
            f"{key}={value!r} is not a valid choice; choose one of: {', '.join(map(str, choices))}. "
            f"Example: python train.py {key}={choices[0]}"
        )


def validate_config(cfg: DictConfig) -> None:
    validate_model(cfg.model)  # model.library/init choices, every model.arch range and the geometry
    _choice(cfg.data.normalization, list(NORMALIZATIONS), "data.normalization")
    if int(cfg.data.image_size) < 64:
        raise UserError(
            f"data.image_size={cfg.data.image_size} is too small for the 5-conv models; use >= 64 "
            f"(224 is the paper's size)."
        )
