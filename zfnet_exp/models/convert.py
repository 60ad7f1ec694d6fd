"""``python -m zfnet_exp.models.convert <weights file> --out <folder>``: a published ImageNet weight file (pytorchcv
ZFNet/AlexNet, torchvision AlexNet: :mod:`.pretrained` recognises it) as a checkpoint of this project, which
``eval.py``, ``analyze.py`` and ``transfer.py`` read like any run's (``ckpt=<folder>``). A module of its own: it
builds a :class:`~.lit.LitClassifier`, which itself reads published files through :mod:`.pretrained`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch

from ..errors import UserError
from .arch import config_from_spec
from .lit import LitClassifier
from .pretrained import IMAGENET_NORMALIZATION, Published, imagenet_classes, read_published


def convert(path: str | Path, out: str | Path, data_root: str | None = None) -> tuple[Path, Published]:
    """Write ``<out>/checkpoints/last.ckpt``: the published network in the file at ``path`` as a checkpoint of this
    project (LitClassifier hyper-parameters, weights, and the ImageNet data record eval/analyze/transfer feed
    images by), and what it read. ``data_root``: the ImageNet folder recorded for ``images=val`` (optional)."""
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
        prog="python -m zfnet_exp.models.convert",
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
