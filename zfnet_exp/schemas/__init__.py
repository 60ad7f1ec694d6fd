"""Structured-config schemas, registered in Hydra's ConfigStore when this package is imported."""

from .model import ModelConfig, register_configs, validate_model

__all__ = ["ModelConfig", "register_configs", "validate_model"]
