"""CNNs from timm and torchvision (``model=timm model.name=resnet18``, ``model=torchvision model.name=vgg11``).

Built with random weights (nothing is downloaded; ``model.checkpoint=<file>`` loads local weights with
:func:`load_weights`). timm models already follow the model contract the diagnostics use
(``forward_features`` / ``forward_head``); torchvision models get :class:`TorchvisionContract` when their layout
is one of the known ones (VGG/AlexNet: ``features`` -> ``avgpool`` -> ``classifier``; ResNet: stem and
``layer1..4`` -> ``avgpool`` -> ``fc``). Any other torchvision model is used as it is: every diagnostic still
runs on it, and the few that need the contract say so and take their general path.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from ..errors import ConfigError
from ..utils.torch_files import load_torch_file

# torchvision layouts: (children that form forward_features, in order), (children of the head, in order);
# the head flattens after its first module (the global pooling).
_LAYOUTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("features",), ("avgpool", "classifier")),
    (("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), ("avgpool", "fc")),
)


class TorchvisionContract(nn.Module):
    """A torchvision CNN with timm's ``forward_features`` / ``forward_head``.

    The network's own children are registered here under their own names, so module paths
    (``features.3``) and ``state_dict`` keys are exactly torchvision's, and ``forward`` runs the network's
    own ``forward`` on them. The split into features and head is checked against that ``forward`` on a
    probe when the adapter is built (:func:`with_contract`), so it cannot silently differ.
    """

    def __init__(self, net: nn.Module, features: Sequence[str], head: Sequence[str]):
        super().__init__()
        for name, child in net.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_net", net)  # not a submodule: its children are ours already
        self._features, self._head = tuple(features), tuple(head)

    def train(self, mode: bool = True):
        super().train(mode)
        self._net.training = mode  # the wrapped forward may read its own flag
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._features:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pool, *rest = self._head
        x = torch.flatten(getattr(self, pool)(x), 1)
        if pre_logits:
            return x
        for name in rest:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x)


def with_contract(net: nn.Module, input_size: int) -> nn.Module:
    """``net`` wrapped in :class:`TorchvisionContract` if its layout is a known one and the split reproduces
    its forward on a probe; otherwise ``net`` itself."""
    children = [name for name, _ in net.named_children()]
    for features, head in _LAYOUTS:
        if children == [*features, *head]:
            adapted = TorchvisionContract(net, features, head)
            was_training = net.training
            adapted.eval()
            with torch.no_grad():
                x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
                same = torch.allclose(adapted.forward_head(adapted.forward_features(x)), net(x), atol=1e-5)
            adapted.train(was_training)
            if same:
                return adapted
    return net


def _unknown_name(library: str, name: str, choices: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ConfigError(
        f"model.name={name!r} is not a {library} model.{hint} List them with: python -c "
        f'"import {library}{".models" if library == "torchvision" else ""}; '
        f'print({library}{".models" if library == "torchvision" else ""}.list_models())"'
    )


def check_name(library: str, name: str) -> None:
    """ConfigError (with close matches) unless ``name`` is a model of ``library`` (timm / torchvision)."""
    if library == "timm":
        import timm

        choices = timm.list_models()
    elif library == "torchvision":
        import torchvision

        choices = torchvision.models.list_models()
    else:
        raise ConfigError(f"model.library={library!r}: choose zfnet_exp, timm or torchvision.")
    if name not in choices:
        raise _unknown_name(library, name, choices)


def create_external(library: str, name: str, num_classes: int, input_size: int = 224) -> nn.Module:
    """A timm or torchvision classifier with random weights and ``num_classes`` outputs."""
    check_name(library, name)
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    return with_contract(net, input_size)


def _state_dict(obj) -> dict[str, torch.Tensor]:
    """The parameter dict inside a checkpoint file: a bare state_dict, or under ``state_dict`` / ``model``
    (Lightning, timm, torchvision reference scripts), with a common ``model.`` / ``module.`` prefix removed."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError("model.checkpoint: the file holds no state_dict (a dict of tensors).")
    for prefix in ("model.", "module."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path, key: str = "model.checkpoint") -> dict[str, torch.Tensor]:
    """The parameter dict in a local weights file (``.pth``/``.pt``/``.ckpt`` read with ``weights_only=True`` and
    tensors memory-mapped, or ``.safetensors``); ``key`` names the option in the error message."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r} does not exist; give a local weights file (no downloads).")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _state_dict(load_file(str(path)))
    return _state_dict(load_torch_file(path, "a weights file (a state dict, or a checkpoint holding one)", mmap=True))


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load weights from a local file (``.pth``/``.pt``/``.ckpt`` or ``.safetensors``) into ``model``.

    Tensors whose shape differs from the model's (typically the classifier of a checkpoint trained on another
    number of classes) are skipped and their names returned (and printed, one line): fine-tuning starts from
    every other layer. Any other missing or unexpected key is a :class:`ConfigError`.

    A published ImageNet weight file (pytorchcv's ZFNet/AlexNet, torchvision's AlexNet:
    :mod:`~zfnet_exp.models.pretrained`) loaded into our :class:`~.convnet.ConvNet` has its keys renamed to ours,
    and the network must have the layer table the file implies (LitClassifier builds it so).
    """
    from .convnet import ConvNet
    from .pretrained import identify

    state = read_state_dict(path)
    published = identify(state) if isinstance(model, ConvNet) else None
    if published is not None:
        if model.spec != published.layout.spec:
            raise ConfigError(
                f"model.checkpoint={str(path)!r} holds {published.layout.source} `{published.layout.name}` weights, "
                f"but the model's layer table differs from theirs. Build it with their table: "
                f"zfnet_exp.models.pretrained.LAYOUTS (LitClassifier and train.py do this by themselves)."
            )
        state = published.state
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ConfigError(
            f"model.checkpoint={str(path)!r} does not match the model: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]} ({len(missing)} and {len(unexpected)} in all). Is model.name the network the file "
            f"was saved from?"
        )
    model.load_state_dict(state, strict=False)
    if skipped:
        rank_zero_warn(f"model.checkpoint: kept the new initialization of {', '.join(skipped)} (shape differs).")
    return skipped
