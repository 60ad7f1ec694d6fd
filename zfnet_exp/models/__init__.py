"""Models: the ``create_model`` registry (ZFNet, AlexNet, Table 3 variants; also in timm's registry), the
layer-table builder, timm/torchvision adapters and the Lightning module."""

from . import timm_registry  # noqa: F401  (registers zfnet, alexnet and the Table 3 presets with timm)
from .arch import apply_edits, check_geometry, config_from_spec, spec_from_config
from .convnet import ArchSpec, ConvNet, ConvSpec, FCSpec, NormSpec, PoolSpec, feature_map_size, layer_sizes
from .init import INIT_SCHEMES, first_conv, init_first_conv, init_weights
from .lit import LitClassifier
from .registry import LIBRARIES, build_model, create_model, describe_models, is_preset, list_models, preset_spec
from .renorm import renormalize_filters

__all__ = [
    "INIT_SCHEMES",
    "LIBRARIES",
    "ArchSpec",
    "ConvNet",
    "ConvSpec",
    "FCSpec",
    "LitClassifier",
    "NormSpec",
    "PoolSpec",
    "apply_edits",
    "build_model",
    "check_geometry",
    "config_from_spec",
    "create_model",
    "describe_models",
    "feature_map_size",
    "first_conv",
    "init_first_conv",
    "init_weights",
    "is_preset",
    "layer_sizes",
    "list_models",
    "preset_spec",
    "renormalize_filters",
    "spec_from_config",
]
