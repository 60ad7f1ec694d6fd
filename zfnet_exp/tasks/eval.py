"""Evaluation of checkpoints with the paper's protocols: ``python eval.py ckpt=<file or run folder>`` (or a list of
them: an ensemble) on any datamodule (``data=imagenet data.root=...``, ``shapes``, ...).

Protocols (Zeiler & Fergus Sec. 3 / Krizhevsky et al. Sec. 4.1): each validation image is resized (shorter side)
and centre-cropped to the paper's 256x256 (``resize_for(input_size)`` in general); it is mean-subtracted there,
as a whole, exactly as training normalized it (per-channel mean, or the per-pixel mean image, both recorded in
the checkpoint); then

* ``center``: the centre ``input_size`` crop;
* ``10-crop``: the 4 corner crops and the centre crop, and the same 5 crops of the horizontally flipped image
  (``torchvision.transforms.v2.functional.ten_crop``), softmax probabilities averaged over the 10.

The pass over the images is a Lightning test loop (:class:`Protocols`, ``Trainer.test`` on ``device``), and the
errors are torchmetrics' top-1/top-5 accuracy, so the loop runs wherever a Trainer runs, the metrics synced over
processes.

An ensemble averages the softmax probabilities of its models (per protocol), as in the paper's "5 convnets" /
"6 convnets" rows of Table 2. One forward pass over the 10 crops gives both protocols (the centre crop is one of
the ten). Top-1/top-5 errors are printed and written (``eval.csv`` in the run folder and a logger table through
the image sink) as one Table 2-style row per model and per ensemble, with the paper's row beside it when the
architectures match and the dataset is ImageNet.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.classification import MulticlassAccuracy, MulticlassStatScores
from torchvision.transforms.v2 import functional as TF

from ..data.normalize import Normalizer
from ..data.transforms import center_uint8, resize_for
from ..errors import UserError
from ..models import is_preset
from ..runs import Checkpoint, evenly_spaced_subset, read_checkpoint
from ..schemas import validate_config
from ..utils.loaders import make_loader
from ..utils.tables import write_csv
from ..viz import ImageSink
from .offline import offline_trainer, task_loggers

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
PROTOCOLS = ("center", "10crop")
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
    checkpoint: Checkpoint | None = None  # read once; the weights are built from it when evaluation starts


def _read_member(ckpt: Checkpoint) -> Member:
    hp = ckpt.hparams
    record = ckpt.data
    if record.get("mean") is None:
        raise UserError(
            f"{ckpt.path} records no data normalization (it was not written by train.py's datamodule); eval.py "
            f"needs it to feed images the way training did."
        )
    name = hp["name"]
    overrides = dict(hp.get("overrides") or {})
    if not is_preset(name, hp.get("arch"), hp.get("library", "zfnet_exp")):
        overrides["arch"] = "edited model.arch or another library"  # no paper row applies
    return Member(ckpt.path, name, overrides, int(hp["num_classes"]), int(hp["input_size"]), record, checkpoint=ckpt)


def _checkpoints(ckpt: Any) -> list[Checkpoint]:
    items = list(ckpt) if isinstance(ckpt, (list, tuple, ListConfig)) else [ckpt]
    if not items:
        raise UserError("ckpt=[] names no checkpoint; pass ckpt=<file or run folder> or ckpt=[a,b,...].")
    return [read_checkpoint(str(p)) for p in items]


class _Counted(Dataset):
    """Items ``(image, label, counted)`` of a dataset whose items are ``(image, label, dataset index)``.

    An unreadable file arrives as a copy of its next readable neighbour (that neighbour's dataset index): such a
    stand-in is not counted, so skipped files drop out of the denominator instead of weighting a neighbour. The
    rule needs no memory of earlier batches, so it holds however the images are split over processes."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any, bool]:
        image, label, index = self.dataset[i]
        return image, label, int(index) == _source_index(self.dataset, i)


def _source_index(dataset: Dataset, i: int) -> int:
    """The index in the underlying dataset of item ``i`` of ``dataset`` (through any number of ``Subset``)."""
    while isinstance(dataset, Subset):
        i, dataset = int(dataset.indices[i]), dataset.dataset
    return int(i)


@dataclass
class _Tally:
    """Top-1/top-5 misses of one model or ensemble under both protocols (and top-1 misses per class)."""

    n: int
    miss: dict[str, list[int]]  # protocol -> [top-1 misses, top-5 misses]
    per_class: dict[int, list[int]]  # label -> [images, centre top-1 misses, 10-crop top-1 misses]

    def errors(self) -> dict[str, float]:
        return {
            f"{proto}_top{k}": 100.0 * self.miss[proto][i] / max(self.n, 1)
            for proto in PROTOCOLS
            for i, k in enumerate((1, 5))
        }


def _scores(num_classes: int) -> nn.ModuleDict:
    """torchmetrics' top-1 and top-5 accuracy per protocol, and per-class top-1 statistics (images, misses)."""
    out = {}
    for proto in PROTOCOLS:
        out[f"{proto}_top1"] = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        out[f"{proto}_top5"] = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        out[f"{proto}_classes"] = MulticlassStatScores(num_classes, top_k=1, average=None)
    return nn.ModuleDict(out)


def _tally(scores: nn.ModuleDict) -> _Tally:
    """The counts behind the metrics (computed, so synced over processes): top-k misses = (1 - accuracy) * n."""
    stats = {proto: scores[f"{proto}_classes"].compute().long().tolist() for proto in PROTOCOLS}  # tp fp tn fn sup
    n = sum(row[4] for row in stats["center"])
    miss = {
        proto: [round((1.0 - float(scores[f"{proto}_top{k}"].compute())) * n) if n else 0 for k in (1, 5)]
        for proto in PROTOCOLS
    }
    per_class = {
        label: [c[4], c[3], t[3]] for label, (c, t) in enumerate(zip(stats["center"], stats["10crop"])) if c[4]
    }
    return _Tally(n, miss, per_class)


class Protocols(L.LightningModule):
    """Both protocols for every member and their ensemble, in one test loop: each batch is cropped 10 times per
    member (after that member's normalization), one forward pass gives the 10 softmax outputs, the centre crop's is
    the centre protocol's, their mean the 10-crop protocol's; the ensemble averages the members' (per protocol)."""

    def __init__(self, members: list[Member], dataset: Dataset, crop: int, batch_size: int = 32, num_workers: int = 0):
        super().__init__()
        self.nets = nn.ModuleList([m.model for m in members])
        self.records = [m.record for m in members]
        self.dataset, self.crop = _Counted(dataset), crop
        self.batch_size, self.num_workers = batch_size, num_workers
        num_classes = members[0].num_classes
        self.scores = nn.ModuleList([_scores(num_classes) for _ in range(len(members) + (len(members) > 1))])
        self.tallies: list[_Tally] = []

    def test_dataloader(self) -> DataLoader:
        """Every image once: over several processes each gets its own share, none repeated to even them out (a
        repeated image would be counted twice)."""
        trainer = self.trainer
        sampler = None
        if trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                self.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        on_gpu = trainer.strategy.root_device.type == "cuda"
        return make_loader(self.dataset, self.batch_size, self.num_workers, sampler=sampler, pin_memory=on_gpu)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y, counted = batch
        if not counted.all():
            x, y = x[counted], y[counted]
        if not len(y):
            return
        center_sum, ten_sum = 0.0, 0.0
        for net, record, scores in zip(self.nets, self.records, self.scores):
            views = ten_crop_views(normalize_full(x, record), self.crop)  # [10,B,3,c,c]
            logits = net(views.flatten(0, 1)).view(10, len(y), -1)
            probs = F.softmax(logits.float(), dim=-1)
            center, ten = probs[CENTER], probs.mean(0)
            _update(scores, center, ten, y)
            center_sum, ten_sum = center_sum + center, ten_sum + ten
        if len(self.scores) > len(self.nets):
            _update(self.scores[-1], center_sum / len(self.nets), ten_sum / len(self.nets), y)

    def on_test_epoch_end(self) -> None:
        self.tallies = [_tally(scores) for scores in self.scores]


def _update(scores: nn.ModuleDict, center: torch.Tensor, ten: torch.Tensor, y: torch.Tensor) -> None:
    for proto, probs in (("center", center), ("10crop", ten)):
        for kind in ("top1", "top5", "classes"):
            scores[f"{proto}_{kind}"].update(probs, y)


def run_protocols(
    members: list[Member],
    dataset: Dataset,
    crop: int,
    device: str = "auto",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    out_dir: str | Path = ".",
) -> tuple[list[_Tally], _Tally | None]:
    """One pass over ``dataset`` (items ``(uint8 [3,S,S] image, label, dataset index)``) through a Lightning test
    loop on ``device``: per-model tallies and the ensemble's (None for one model)."""
    module = Protocols(members, dataset, crop, batch_size, num_workers)
    offline_trainer(device, out_dir, progress=progress).test(module, verbose=False)
    tallies = module.tallies
    return tallies[: len(members)], (tallies[-1] if len(members) > 1 else None)


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
    dataset = evenly_spaced_subset(dataset, cfg.get("num_images"))
    for m in members:
        m.model = m.checkpoint.model()  # the test loop puts it on the device
    names = [
        f"{m.path.parent.parent.name}/{m.path.name}" if m.path.parent.name == "checkpoints" else m.path.name
        for m in members
    ]
    print(
        f"Evaluating {len(members)} checkpoint(s) on {len(dataset)} images of data={datamodule.name} "
        f"(resize {resize_for(crop)}, crops {crop}) -> {out_dir}",
        flush=True,
    )
    tallies, ensemble = run_protocols(
        members,
        dataset,
        crop,
        cfg.get("device", "auto"),
        int(cfg.batch_size),
        int(cfg.num_workers),
        progress=bool(cfg.get("progress", True)),
        out_dir=out_dir,
    )

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
    with task_loggers(cfg, checkpoints=[str(m.path) for m in members]) as loggers:
        ImageSink(out_dir, loggers).log_table("eval/table2", rows, step=0)
        final = rows[-1]
        metrics = {
            f"eval/err_{k}": final[f"err_{k}"] for k in ("center_top1", "center_top5", "10crop_top1", "10crop_top5")
        }
        metrics["data/skipped_files"] = float(len(skipped))
        for lg in loggers:
            lg.log_metrics(metrics, step=0)
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
