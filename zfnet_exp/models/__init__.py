"""Models: the ``create_model`` registry (ZFNet, AlexNet, Table 3 variants) and the Lightning module."""

from .convnet import ArchSpec, ConvNet, ConvSpec, feature_map_size
from .init import INIT_SCHEMES, init_weights
from .lit import LitClassifier
from .registry import create_model, describe_models, list_models
from .renorm import renormalize_filters

__all__ = [
    "ArchSpec",
    "ConvNet",
    "ConvSpec",
    "INIT_SCHEMES",
    "LitClassifier",
    "create_model",
    "describe_models",
    "feature_map_size",
    "init_weights",
    "list_models",
    "renormalize_filters",
]
