"""Published ImageNet weights for these architectures, read into the project's own network.

Training a 224-px ZFNet on ImageNet takes days; trained weights for the same family are published:

* ``pytorchcv`` (imgclsmob, Oleg Sémery): ``zfnet`` (the paper's Fig. 3 layer sizes, 62,357,608 parameters;
  their reported 1-crop ImageNet val error 39.21 / 16.78), ``zfnetb`` (conv3-5 = 512/1024/512), ``alexnet`` (dense
  single-tower AlexNet, 62,378,344) and ``alexnetb`` (the "one weird trick" widths);
* torchvision's ``alexnet`` (the "one weird trick" single-tower variant, 61,100,840 parameters), not the
  dense replication of Krizhevsky et al.

Each is our :class:`~.convnet.ConvNet` with a particular layer table (:data:`LAYOUTS`); a weight file is recognised
by its keys and tensor shapes alone, its keys are renamed to ours (``features.stage1.unit1.conv`` ->
``features.conv1``), and the network is built with *that file's* table, whatever ``model.arch`` said: the weights
fix the architecture, and a padding, pooling or normalization of another network would silently change what
they compute. tests/test_pretrained.py checks that our network gives the logits of the publishers' own model
definitions for the same weights.

Why the tables differ from our presets: pytorchcv normalizes (``F.local_response_norm(x, size=5, k=2.0)``,
PyTorch's default alpha 1e-4 and beta 0.75) after the ReLU and *before* the pool in layers 1-2, inside its conv
block's ``forward``, so printing the model shows conv/ReLU/pool only; its pools are ceil-mode, and its AlexNet's
conv1 has no padding. torchvision's AlexNet has no normalization, floor-mode pools and an adaptive average pool to
6x6, the identity at 224 px (at other sizes fc6's input differs and fc6 is re-initialized, as for any size change).

Two ways in: ``python train.py model.checkpoint=<file>`` starts a run from the weights (fine-tuning: a classifier
of another size is re-initialized), and ``python -m zfnet_exp.models.pretrained <file> --out <folder>`` writes a
checkpoint ``eval.py``, ``analyze.py`` and ``transfer.py`` read (``ckpt=<folder>``), with the ImageNet
normalization record those tasks feed images by. Nothing is downloaded here; the README says where the files are.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, UserError
from ..utils.launch import say
from .arch import config_from_spec, spec_from_config
from .convnet import ArchSpec, ConvSpec, FCSpec, NormSpec, PoolSpec

# torchvision's (and pytorchcv's) ImageNet input normalization, as a checkpoint's data record holds it
IMAGENET_NORMALIZATION = {"normalization": "standard", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

_CEIL, _FLOOR = PoolSpec(3, 2, ceil_mode=True), PoolSpec(3, 2, ceil_mode=False)
_CV_LRN = NormSpec(size=5, alpha=1e-4, beta=0.75, k=2.0, before_pool=True)  # F.local_response_norm's defaults, k=2
_FCS = {"fc6": FCSpec(4096), "fc7": FCSpec(4096)}


def _table(widths, kernels, strides, paddings, pool: PoolSpec, lrn: NormSpec | None) -> ArchSpec:
    """Five conv layers, pooling after 1, 2 and 5, normalization (if any) in 1 and 2, then fc6 and fc7."""
    convs = {}
    for i, (w, k, s, p) in enumerate(zip(widths, kernels, strides, paddings, strict=True), start=1):
        pooled = i in (1, 2, 5)
        convs[f"conv{i}"] = ConvSpec(w, k, s, p, pool=pool if pooled else None, norm=lrn if i <= 2 else None)
    return ArchSpec(convs=convs, fcs=dict(_FCS))


@dataclass(frozen=True)
class Layout:
    """One published network: whose it is, its layer table in our terms, and what it is."""

    source: str  # "pytorchcv" | "torchvision"
    name: str  # the publisher's model name
    spec: ArchSpec
    parameters: int  # at 1000 classes (what the publisher reports)
    what: str

    @property
    def label(self) -> str:
        """The model name runs and checkpoints record (``model.name``)."""
        return f"{self.source}_{self.name}"


_ZF = ([7, 5, 3, 3, 3], [2, 2, 1, 1, 1], [1, 0, 1, 1, 1])
_AX = ([11, 5, 3, 3, 3], [4, 1, 1, 1, 1])
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "pytorchcv",
        "zfnet",
        _table([96, 256, 384, 384, 256], *_ZF, _CEIL, _CV_LRN),
        62_357_608,
        "ZFNet with the paper's Fig. 3 layer sizes",
    ),
    Layout(
        "pytorchcv",
        "zfnetb",
        _table([96, 256, 512, 1024, 512], *_ZF, _CEIL, _CV_LRN),
        107_627_624,
        "ZFNet with conv3-5 = 512/1024/512 maps (the paper's Table 2 model (b))",
    ),
    Layout(
        "pytorchcv",
        "alexnet",
        _table([96, 256, 384, 384, 256], *_AX, [0, 2, 1, 1, 1], _CEIL, _CV_LRN),
        62_378_344,
        "dense single-tower AlexNet (Krizhevsky et al. 2012 widths)",
    ),
    Layout(
        "pytorchcv",
        "alexnetb",
        _table([64, 192, 384, 256, 256], *_AX, [2, 2, 1, 1, 1], _CEIL, None),
        61_100_840,
        'AlexNet, "one weird trick" widths, no normalization',
    ),
    Layout(
        "torchvision",
        "alexnet",
        _table([64, 192, 384, 256, 256], *_AX, [2, 2, 1, 1, 1], _FLOOR, None),
        61_100_840,
        'AlexNet, the "one weird trick" single-tower variant (not the paper\'s dense replication), no normalization',
    ),
)

# their module prefix -> ours, per publisher (each has .weight and .bias)
KEY_MAPS: dict[str, dict[str, str]] = {
    "pytorchcv": {
        "features.stage1.unit1.conv": "features.conv1",
        "features.stage2.unit1.conv": "features.conv2",
        "features.stage3.unit1.conv": "features.conv3",
        "features.stage3.unit2.conv": "features.conv4",
        "features.stage3.unit3.conv": "features.conv5",
        "output.fc1.fc": "classifier.fc6",
        "output.fc2.fc": "classifier.fc7",
        "output.fc3": "classifier.fc8",
    },
    "torchvision": {
        "features.0": "features.conv1",
        "features.3": "features.conv2",
        "features.6": "features.conv3",
        "features.8": "features.conv4",
        "features.10": "features.conv5",
        "classifier.1": "classifier.fc6",
        "classifier.4": "classifier.fc7",
        "classifier.6": "classifier.fc8",
    },
}


@dataclass(frozen=True)
class Published:
    """A published weight file recognised: its network and its weights under our names."""

    layout: Layout
    state: dict[str, torch.Tensor]  # ConvNet keys

    @property
    def num_classes(self) -> int:
        return int(self.state["classifier.fc8.weight"].shape[0])

    @property
    def input_size(self) -> int:
        """224: every publisher's fc6 reads a 6x6 map of the last conv, which a 224-px input gives."""
        return 224

    def describe(self) -> str:
        """One paragraph: which network the file implies and how it differs from the paper's layer table."""
        spec = self.layout.spec
        c1, norm = spec.convs["conv1"], spec.convs["conv1"].norm
        pools = "ceil-mode" if c1.pool.ceil_mode else "floor-mode"
        if norm is None:
            lrn = "no contrast normalization"
        else:
            lrn = (
                f"contrast normalization in layers 1-2 after the ReLU and before the pool (LRN size {norm.size}, "
                f"alpha {norm.alpha:g} in PyTorch's convention, beta {norm.beta:g}, k {norm.k:g})"
            )
        return (
            f"{self.layout.source} `{self.layout.name}` weights: {self.layout.what}, {self.layout.parameters:,} "
            f"parameters at 1000 classes (this file: {self.num_classes} classes). The network is built with its "
            f"layer table, not model.arch: conv1 {c1.kernel}x{c1.kernel}/{c1.stride} padding {c1.padding}, "
            f"3x3/2 {pools} pools, {lrn}; input {self.input_size} px, ImageNet mean/std normalization."
        )


def identify(state: dict[str, Any], where: str = "model.checkpoint") -> Published | None:
    """The published network a state dict (bare, as the publishers save it) holds, with its keys renamed to ours;
    None when its keys are no publisher's layout (our own checkpoints, other libraries). A publisher's key layout
    with shapes of none of its networks is a :class:`ConfigError` listing what the file holds."""
    keys = set(state)
    for source, mapping in KEY_MAPS.items():
        if keys != {f"{prefix}.{kind}" for prefix in mapping for kind in ("weight", "bias")}:
            continue
        ours = {f"{mapping[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in state.items()}
        for layout in LAYOUTS:
            if layout.source == source and _shapes_fit(layout.spec, ours):
                return Published(layout, ours)
        shapes = {k: tuple(v.shape) for k, v in ours.items() if k.endswith("weight")}
        names = ", ".join(lo.name for lo in LAYOUTS if lo.source == source)
        raise ConfigError(
            f"{where}: the file has the key layout of {source}'s AlexNet family, but its layer shapes {shapes} match "
            f"none of its networks this project reads ({names}). Use one of those weight files."
        )
    return None


def _shapes_fit(spec: ArchSpec, ours: dict[str, torch.Tensor]) -> bool:
    in_ch = 3
    for name, c in spec.convs.items():
        if tuple(ours[f"features.{name}.weight"].shape) != (c.out_channels, in_ch, c.kernel, c.kernel):
            return False
        in_ch = c.out_channels
    in_f = in_ch * 6 * 6
    for name, f in spec.fcs.items():
        if tuple(ours[f"classifier.{name}.weight"].shape) != (f.units, in_f):
            return False
        in_f = f.units
    return tuple(ours["classifier.fc8.weight"].shape[1:]) == (in_f,)


def read_published(path: str | Path, where: str = "model.checkpoint") -> Published | None:
    """The published network in the weights file at ``path`` (see :func:`identify`); None for any other weights
    file. Read through the one safe reader (``weights_only=True``), tensors memory-mapped."""
    from .external import read_state_dict

    return identify(read_state_dict(path, key=where), where)


def arch_changes(arch: Any, spec: ArchSpec) -> list[str]:
    """The ``model.arch`` keys (``conv1.norm``, ``conv1.padding``) whose values ``spec`` replaces."""
    try:
        mine = config_from_spec(spec_from_config(arch)) if arch is not None else {}
    except ConfigError:
        mine = {}
    theirs = config_from_spec(spec)
    changed = []
    for layer in sorted(set(mine) | set(theirs)):
        a, b = mine.get(layer), theirs.get(layer)
        if a is None or b is None:
            changed.append(layer)
        else:
            changed += [f"{layer}.{k}" for k in b if a.get(k) != b.get(k)]
    return changed


def published_model_config(path: str | Path, arch: Any = None, announce: bool = True) -> tuple[str, dict] | None:
    """For ``model.checkpoint=<path>``: (``model.name`` label, ``model.arch`` table) of the published network the
    file holds, announced in the job log (``announce``) with what it replaces in ``arch``; None for any other
    weights file."""
    found = read_published(path)
    if found is None:
        return None
    if announce:
        changed = arch_changes(arch, found.layout.spec) if arch is not None else []
        replaced = f" (model.arch values replaced: {', '.join(changed)})" if changed else ""
        say(f"model.checkpoint={path}: {found.describe()}{replaced}")
    return found.layout.label, config_from_spec(found.layout.spec)


def imagenet_classes(num_classes: int) -> list[str] | None:
    """The 1000 ImageNet class names in the publishers' (sorted-wnid) output order, from torchvision's weight
    metadata (no download); None for a head of another size."""
    if num_classes != 1000:
        return None
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def convert(path: str | Path, out: str | Path, data_root: str | None = None) -> tuple[Path, Published]:
    """Write ``<out>/checkpoints/last.ckpt``: the published network in the file at ``path`` as a checkpoint of this
    project (LitClassifier hyper-parameters, weights, and the ImageNet data record eval/analyze/transfer feed
    images by), and what it read. ``data_root``: the ImageNet folder recorded for ``images=val`` (optional)."""
    import lightning as L

    from .lit import LitClassifier

    found = read_published(path, where=str(path))
    if found is None:
        raise UserError(
            f"{path} holds no published weights this command reads (pytorchcv zfnet / zfnetb / alexnet / alexnetb, "
            f"torchvision alexnet: a bare state dict with their keys). A checkpoint written by train.py needs no "
            f"conversion; pass it to eval.py / analyze.py / transfer.py as ckpt=<file> directly."
        )
    lit = LitClassifier(
        name=found.layout.label,
        arch=config_from_spec(found.layout.spec),
        num_classes=found.num_classes,
        input_size=found.input_size,
        init="kaiming",  # what transfer.py's from-scratch baseline re-initializes this architecture with
        zero_head=True,
        first_conv={},
    )
    lit.model.load_state_dict(found.state)
    record = {
        "zfnet_data": 2,  # zfnet_exp.data.datamodule.DATA_STATE_KEY / DATA_STATE_VERSION
        **IMAGENET_NORMALIZATION,
        "image_size": found.input_size,
        "classes": imagenet_classes(found.num_classes),
        "root": str(Path(data_root).expanduser()) if data_root else None,
    }
    target = Path(out).expanduser() / "checkpoints" / "last.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    torch.save(
        {
            "state_dict": lit.state_dict(),
            "hyper_parameters": dict(lit.hparams),
            "pytorch-lightning_version": L.__version__,
            "epoch": -1,  # no epoch of this project's training
            "global_step": 0,
            "published_weights": {**record, "source": str(Path(path).expanduser()), "architecture": found.describe()},
        },
        tmp,
    )
    tmp.replace(target)
    return target, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zfnet_exp.models.pretrained",
        description="Convert a published ImageNet weight file (pytorchcv zfnet/zfnetb/alexnet/alexnetb, torchvision "
        "alexnet) into a checkpoint that eval.py, analyze.py and transfer.py read (ckpt=<out folder>).",
    )
    parser.add_argument("file", help="the weight file (.pth), e.g. zfnet-0810-....pth or alexnet-owt-7be5be79.pth")
    parser.add_argument("--out", required=True, help="folder to write (<out>/checkpoints/last.ckpt)")
    parser.add_argument("--data-root", default=None, help="ImageNet folder (train/, val/) for analyze images=val")
    args = parser.parse_args(argv)
    try:
        target, found = convert(args.file, args.out, args.data_root)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(found.describe())
    print(f"Wrote {target}")
    print(f"  python eval.py ckpt={args.out} data=imagenet data.root=<ImageNet folder>")
    print(f"  python analyze.py ckpt={args.out} analysis=top9 images=<folder of images in ImageFolder layout>")
    print(f"  python transfer.py ckpt={args.out} data=caltech101 data.root=<Caltech-101 folder>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
