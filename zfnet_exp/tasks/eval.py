"""Evaluation of checkpoints with the paper's protocols: ``python eval.py ckpt=<file or run folder>`` (or a list of
them: an ensemble) on any datamodule (``data=imagenet data.root=...``, ``shapes``, ...).

Protocols (Zeiler & Fergus Sec. 3 / Krizhevsky et al. Sec. 4.1): each validation image is resized (shorter side)
and centre-cropped to the paper's 256x256 (``resize_for(input_size)`` in general); it is mean-subtracted there,
as a whole, exactly as training normalized it (per-channel mean, or the per-pixel mean image, both recorded in
the checkpoint); then

* ``center``: the centre ``input_size`` crop;
* ``10-crop``: the 4 corner crops and the centre crop, and the same 5 crops of the horizontally flipped image
  (``torchvision.transforms.v2.functional.ten_crop``), softmax probabilities averaged over the 10.

An ensemble averages the softmax probabilities of its models (per protocol), as in the paper's "5 convnets" /
"6 convnets" rows of Table 2. One forward pass over the 10 crops gives both protocols (the centre crop is one of
the ten). Top-1/top-5 errors are printed and written (``eval.csv`` in the run folder and a logger table through
the image sink) as one Table 2-style row per model and per ensemble, with the paper's row beside it when the
architectures match and the dataset is ImageNet.
"""

from __future__ import annotations

import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from ..data.datamodule import data_state
from ..data.normalize import Normalizer
from ..data.transforms import center_uint8, resize_for
from ..errors import UserError
from ..models import LitClassifier, is_preset
from ..schemas import validate_config
from ..utils.checkpoints import resolve_checkpoint
from ..utils.instantiators import instantiate_group
from ..utils.tables import write_csv
from ..viz import ImageSink
from .runner import finish_wandb

# Paper Table 2 (ImageNet 2012 classification error %, v3): the row whose models match, keyed by the sorted
# architecture names of the evaluated model or ensemble: (row label, val top-1, val top-5, test top-5).
PAPER_TABLE2: dict[tuple[str, ...], tuple[str, float, float, float | None]] = {
    ("alexnet",): ("Our replication of Krizhevsky, 1 convnet", 40.5, 18.1, None),
    ("alexnet",) * 5: ("Krizhevsky et al., 5 convnets", 38.1, 16.4, 16.4),
    ("zfnet",): ("1 convnet as per Fig. 3", 38.4, 16.5, None),
    ("zfnet",) * 5: ("5 convnets as per Fig. 3 - (a)", 36.7, 15.3, 15.3),
    ("zfnet_wide345",): ("1 convnet as Fig. 3 but layers 3,4,5 = 512,1024,512 maps - (b)", 37.5, 16.0, 16.1),
    ("zfnet",) * 5 + ("zfnet_wide345",): ("6 convnets, (a) & (b) combined", 36.0, 14.7, 14.8),
}
CENTER = 4  # index of the (unflipped) centre crop in ten_crop's output order: tl, tr, bl, br, centre, then flipped


def ten_crop_views(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[B,3,S,S]`` -> ``[10,B,3,size,size]``: corners (tl, tr, bl, br), centre, then the same of the
    horizontally flipped images (torchvision's ``ten_crop`` order)."""
    return torch.stack(TF.ten_crop(images, [size, size]))


def normalize_full(x: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
    """uint8 ``[B,3,S,S]`` -> network input scale with a checkpoint's normalization record (``Normalizer``). A
    per-pixel mean image must be S x S: it is subtracted whole, before the crops, exactly as the paper does."""
    mean = torch.as_tensor(record["mean"])
    if mean.ndim == 3 and tuple(mean.shape[-2:]) != tuple(x.shape[-2:]):
        raise UserError(
            f"The checkpoint's mean image is {tuple(mean.shape[-2:])} but the evaluated images are "
            f"{tuple(x.shape[-2:])}; evaluate at the input size the model was trained with."
        )
    return Normalizer.from_record(record).to(x.device)(x)


def topk_errors(probs: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[int, int]:
    """Numbers of top-1 and top-k misses (ties broken by ``torch.topk``)."""
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return int((~hits[:, 0]).sum()), int((~hits.any(1)).sum())


@dataclass
class Member:
    """One checkpoint of the evaluation: its model and how to feed it."""

    path: Path
    arch: str
    overrides: dict
    num_classes: int
    input_size: int
    record: dict[str, Any]
    model: nn.Module | None = None


def _read_member(path: Path) -> Member:
    raw = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    hp = raw.get("hyper_parameters") or {}
    record = data_state(raw)
    if "arch" not in hp and "name" not in hp:
        raise UserError(f"{path} is not a checkpoint written by train.py (no model hyper-parameters in it).")
    if record.get("mean") is None:
        raise UserError(
            f"{path} records no data normalization (it was not written by train.py's datamodule); eval.py "
            f"needs it to feed images the way training did."
        )
    name = hp.get("name") or hp["arch"]  # older checkpoints: arch = the preset name
    overrides = dict(hp.get("overrides") or {})
    if not is_preset(name, hp.get("arch"), hp.get("library", "zfnet_exp")):
        overrides["arch"] = "edited model.arch or another library"  # no paper row applies
    return Member(path, name, overrides, int(hp["num_classes"]), int(hp["input_size"]), record)


def _checkpoints(ckpt: Any) -> list[Path]:
    items = list(ckpt) if isinstance(ckpt, (list, tuple, ListConfig)) else [ckpt]
    if not items:
        raise UserError("ckpt=[] names no checkpoint; pass ckpt=<file or run folder> or ckpt=[a,b,...].")
    return [resolve_checkpoint(str(p)) for p in items]


def evenly_spaced(dataset, num_images: int | None):
    """At most ``num_images`` items, evenly spaced over the (class-sorted) dataset so every class is represented
    (a quick check; the paper's numbers are over the whole validation set)."""
    if num_images is None or int(num_images) >= len(dataset):
        return dataset
    picks = torch.linspace(0, len(dataset) - 1, int(num_images)).round().long().unique().tolist()
    return Subset(dataset, picks)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Tally:
    """Top-1/top-5 misses of one model or ensemble under both protocols (and top-1 misses per class)."""

    def __init__(self):
        self.n = 0
        self.miss = {"center": [0, 0], "10crop": [0, 0]}
        self.per_class: dict[int, list[int]] = {}  # label -> [images, centre top-1 misses, 10-crop top-1 misses]

    def add(self, center: torch.Tensor, ten: torch.Tensor, y: torch.Tensor) -> None:
        for name, probs in (("center", center), ("10crop", ten)):
            m1, m5 = topk_errors(probs, y)
            self.miss[name][0] += m1
            self.miss[name][1] += m5
        self.n += len(y)
        wrong_c, wrong_t = (center.argmax(1) != y).tolist(), (ten.argmax(1) != y).tolist()
        for label, wc, wt in zip(y.tolist(), wrong_c, wrong_t):
            counts = self.per_class.setdefault(label, [0, 0, 0])
            counts[0] += 1
            counts[1] += wc
            counts[2] += wt

    def errors(self) -> dict[str, float]:
        return {
            f"{proto}_top{k}": 100.0 * self.miss[proto][i] / max(self.n, 1)
            for proto in ("center", "10crop")
            for i, k in enumerate((1, 5))
        }


def run_protocols(
    members: list[Member], loader: DataLoader, crop: int, device: torch.device, progress: bool = True
) -> tuple[list[_Tally], _Tally | None]:
    """One pass over ``loader`` (items ``(uint8 [3,S,S] image, label, dataset index)``): per-model tallies and
    the ensemble's. An unreadable file arrives as a copy of its next readable neighbour (same dataset index):
    each index is counted once, so skipped files drop out of the denominator instead of weighting a neighbour."""
    seen: set[int] = set()
    tallies = [_Tally() for _ in members]
    ensemble = _Tally() if len(members) > 1 else None
    bar = tqdm(
        loader,
        desc="evaluating (10 crops)",
        unit="batch",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
        ascii=not sys.stderr.isatty(),
    )
    with torch.inference_mode():
        for batch in bar:
            keep = [i for i, j in enumerate(batch[2].tolist()) if not (j in seen or seen.add(j))]
            if not keep:
                continue
            x, y = batch[0][keep].to(device, non_blocking=True), batch[1][keep].to(device)
            center_sum, ten_sum = 0.0, 0.0
            for member, tally in zip(members, tallies):
                views = ten_crop_views(normalize_full(x, member.record), crop)  # [10,B,3,c,c]
                logits = member.model(views.flatten(0, 1)).view(10, len(y), -1)
                probs = F.softmax(logits.float(), dim=-1)
                center, ten = probs[CENTER], probs.mean(0)
                tally.add(center, ten, y)
                center_sum, ten_sum = center_sum + center, ten_sum + ten
            if ensemble is not None:
                ensemble.add(center_sum / len(members), ten_sum / len(members), y)
    return tallies, ensemble


def paper_row(archs: list[str], overrides: list[dict], dataset: str, num_classes: int, crop: int) -> tuple | None:
    """The paper's Table 2 row for these architectures, if the evaluation is comparable (ImageNet-1k)."""
    if dataset != "imagenet" or num_classes != 1000 or any(overrides):
        return None
    return PAPER_TABLE2.get(tuple(sorted(archs)))


def _row(name: str, archs: list[str], tally: _Tally, paper: tuple | None, crop: int) -> dict[str, Any]:
    row: dict[str, Any] = {"model": name, "arch": "+".join(archs), "images": tally.n, "crop": crop}
    row.update({f"err_{k}": round(v, 2) for k, v in tally.errors().items()})
    row.update(
        {
            "paper_row": paper[0] if paper else "",
            "paper_val_top1": paper[1] if paper else "",
            "paper_val_top5": paper[2] if paper else "",
            "paper_test_top5": (paper[3] if paper[3] is not None else "") if paper else "",
        }
    )
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Table 2-style plain text: top-1/top-5 error % per protocol, the paper's numbers beside them."""
    head = (
        f"{'model':<28} {'images':>7} | {'centre top-1':>12} {'top-5':>6} | {'10-crop top-1':>13} {'top-5':>6} | "
        f"paper (val top-1 / top-5)"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        paper = f"{r['paper_val_top1']} / {r['paper_val_top5']}  {r['paper_row']}" if r["paper_row"] else "-"
        lines.append(
            f"{r['model'][:28]:<28} {r['images']:>7} | {r['err_center_top1']:>12.2f} {r['err_center_top5']:>6.2f} | "
            f"{r['err_10crop_top1']:>13.2f} {r['err_10crop_top5']:>6.2f} | {paper}"
        )
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg, "eval")  # every group, before any checkpoint or image is read
    device = _device(cfg.get("device", "auto"))
    out_dir = Path(cfg.paths.output_dir)
    members = [_read_member(p) for p in _checkpoints(cfg.ckpt)]
    sizes = sorted({m.input_size for m in members})
    if len(sizes) > 1:
        raise UserError(
            f"The checkpoints were trained at different input sizes {sizes}; an ensemble needs one input size "
            f"(evaluate them separately)."
        )
    crop = sizes[0]

    # the dataset first: a missing folder or a wrong layout stops here, before any model is built
    datamodule = instantiate(cfg.data, image_size=crop)
    datamodule.prepare_data()
    train_set, val_set = datamodule.build_splits()
    split = cfg.get("split", "val")
    if split not in ("val", "train"):
        raise UserError(f"split={split!r} is not a split; choose val (the paper's Table 2) or train.")
    dataset = val_set if split == "val" else train_set
    targets = getattr(dataset, "targets", None) or [t for _, t in dataset.samples]
    if targets and not isinstance(targets[0], numbers.Integral):
        raise UserError(
            f"data={datamodule.name} has multi-label targets; eval.py reports the top-1/top-5 error of single-label "
            f"datasets (paper Table 2). Per-class AP of a multi-label dataset (Table 6) comes from transfer.py."
        )
    classes = len(dataset.classes)
    for m in members:
        if m.num_classes != classes:
            raise UserError(
                f"{m.path} predicts {m.num_classes} classes but data={datamodule.name} has {classes}; evaluate a "
                f"checkpoint trained on this dataset (or pass the dataset it was trained on: data=... data.root=...)."
            )
    dataset.transform = center_uint8(resize_for(crop))  # uint8 256x256 (at 224): normalized and cropped on device
    dataset = evenly_spaced(dataset, cfg.get("num_images"))
    for m in members:
        m.model = LitClassifier.load_from_checkpoint(m.path, map_location=device).model.eval().to(device)

    loader = DataLoader(
        dataset,
        batch_size=int(cfg.batch_size),
        shuffle=False,
        num_workers=int(cfg.num_workers),
        pin_memory=device.type == "cuda",
    )
    names = [
        f"{m.path.parent.parent.name}/{m.path.name}" if m.path.parent.name == "checkpoints" else m.path.name
        for m in members
    ]
    print(
        f"Evaluating {len(members)} checkpoint(s) on {len(dataset)} images of data={datamodule.name} "
        f"(resize {resize_for(crop)}, crops {crop}) -> {out_dir}",
        flush=True,
    )
    tallies, ensemble = run_protocols(members, loader, crop, device, progress=bool(cfg.get("progress", True)))

    rows = []
    for m, name, tally in zip(members, names, tallies):
        rows.append(
            _row(name, [m.arch], tally, paper_row([m.arch], [m.overrides], datamodule.name, classes, crop), crop)
        )
    if ensemble is not None:
        archs = [m.arch for m in members]
        paper = paper_row(archs, [m.overrides for m in members], datamodule.name, classes, crop)
        rows.append(_row(f"ensemble of {len(members)}", archs, ensemble, paper, crop))

    skipped = datamodule.skipped_files
    write_csv(rows, out_dir / "eval.csv")
    final = ensemble if ensemble is not None else tallies[0]
    class_names = getattr(val_set if split == "val" else train_set, "class_names", None)
    per_class = [
        {
            "label": label,
            "class": class_names[label] if class_names else label,
            "images": n,
            "err_center_top1": round(100.0 * c / n, 2),
            "err_10crop_top1": round(100.0 * t / n, 2),
        }
        for label, (n, c, t) in sorted(final.per_class.items())
    ]
    write_csv(per_class, out_dir / "eval_per_class.csv")
    loggers = instantiate_group(cfg.get("logger"), "logger")
    status = "failed"
    try:
        for lg in loggers:
            lg.log_hyperparams({"checkpoints": [str(m.path) for m in members], "data": datamodule.name})
        ImageSink(out_dir, loggers).log_table("eval/table2", rows, step=0)
        final = rows[-1]
        metrics = {
            f"eval/err_{k}": final[f"err_{k}"] for k in ("center_top1", "center_top5", "10crop_top1", "10crop_top5")
        }
        metrics["data/skipped_files"] = float(len(skipped))
        for lg in loggers:
            lg.log_metrics(metrics, step=0)
        status = "success"
    finally:
        for lg in loggers:
            lg.finalize(status)
        finish_wandb()
    print("\n" + format_table(rows), flush=True)
    if datamodule.name == "imagenet" and crop != 224:
        print(f"(input size {crop}, not the paper's 224: the paper's numbers are for reference only)")
    if skipped:
        print(f"skipped    : {len(skipped)} unreadable image file(s), left out of the error counts:")
        for p, reason in sorted(skipped.items()):
            print(f"  {p}  ({reason})")
    worst = sorted(per_class, key=lambda r: -r["err_10crop_top1"])[:5]
    print(
        "hardest classes (10-crop top-1 error %): "
        + ", ".join(f"{r['class']} {r['err_10crop_top1']:.0f}" for r in worst)
    )
    print(f"\nResults: {out_dir / 'eval.csv'} (per class: {out_dir / 'eval_per_class.csv'})", flush=True)
    return {"rows": rows, "skipped_files": len(skipped), "config": OmegaConf.to_container(cfg.data, resolve=True)}
