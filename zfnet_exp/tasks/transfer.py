"""Transfer of a trained network to Caltech-101/256 and PASCAL VOC 2012 (paper Sec. 5.2, Tables 4-7, Fig. 9).

``python transfer.py ckpt=<checkpoint or run folder> data=caltech101 data.root=... transfer.layer=7
transfer.per_class=30``. Modes (``transfer.mode``):

- ``features`` (the paper's): layers 1..k frozen; features of layer ``k`` (see ``diagnostics.features``) feed a
  new linear classifier, scikit-learn's multinomial ``LogisticRegression`` ("softmax") or ``LinearSVC``
  ("svm", Table 7), on standardized features. Features are extracted once per (checkpoint, layer, grid,
  images) and cached under ``transfer.cache_dir``, so the 5 splits and every N of a sweep reuse them.
- ``finetune``: the checkpoint's network with a new last layer, all layers trained on the target data
  (pretrained layers at ``transfer.finetune_lr_mult`` times the learning rate).
- ``scratch``: the paper's "non-pretrained" baseline: the same architecture re-initialized, all layers
  trained with the softmax on the target data.

The checkpoint's class count does not matter: its last layer is replaced. Caltech: ``per_class`` N training
images per class (a list sweeps N: the Fig. 9 curve), up to ``test_per_class`` test images, ``splits`` seeded
splits, mean per-class accuracy, mean +- std over splits. VOC: train on ``data.train_split``, per-class AP and
mAP on ``data.eval_split``; the "softmax" on multi-label images is the softmax cross-entropy against the
image's labels weighted equally (= one training sample per present class, weight 1/#classes).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.caltech import CaltechDataModule, derived, protocol_split
from ..data.normalize import Normalizer
from ..data.voc import IGNORE, VOCDataModule
from ..diagnostics.features import layer_features
from ..diagnostics.transfer_metrics import average_precision, mean_and_std, mean_per_class_accuracy
from ..errors import ConfigError, UserError
from ..models import LitClassifier
from ..schemas import per_class_counts, validate_config
from ..utils.checkpoints import resolve_checkpoint
from ..utils.instantiators import instantiate_group
from ..utils.tables import write_csv
from ..viz import ImageSink
from . import transfer_tables as tables
from .analyze import load_checkpoint
from .runner import finish_wandb

_LIT_ARGS = set(inspect.signature(LitClassifier.__init__).parameters) - {"self"}
FEATURE_CACHE_VERSION = 2  # bump when what a cache file holds changes, so older files are not read
# normalization for a from-scratch run without a checkpoint to copy it from (ImageNet statistics)
DEFAULT_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "normalization": "standard"}


def _progress(iterable, **kwargs):
    """A tqdm bar on a terminal; on a log file a plain line every 30 s instead of a redraw per step."""
    tty = sys.stderr.isatty()
    return tqdm(iterable, mininterval=0.5 if tty else 30, dynamic_ncols=tty, **kwargs)


# ---------------------------------------------------------------------------------------------------- features
def _loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, pin_memory=torch.cuda.is_available()
    )


def feature_cache_path(
    cache_dir: str | Path, checkpoint: Path, layer: int, grid: int, dataset, image_size: int
) -> Path:
    """One file per (checkpoint file version, layer, grid, image size, list of image files)."""
    stat = checkpoint.stat()
    files = hashlib.sha1("\n".join(p for p, _ in dataset.samples).encode()).hexdigest()
    key = json.dumps(
        [
            FEATURE_CACHE_VERSION,
            str(checkpoint.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            int(layer),
            int(grid),
            int(image_size),
            files,
        ]
    )
    return Path(cache_dir) / f"L{layer}_g{grid}_{image_size}px_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    layer: int,
    normalize: Callable,
    device: torch.device,
    grid: int = 6,
    batch_size: int = 64,
    num_workers: int = 0,
    cache_path: Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, D]`` float32 features of every image of ``dataset`` (in dataset order) and ``readable [N]`` (bool):
    False where the file could not be read (the loader put the next image in its place; such rows must be
    left out, not labelled with the unreadable file's class). With ``cache_path``, a cached file is read
    instead of running the network, and a fresh extraction is written there (float16: half the disk, far below
    the precision a linear classifier needs) atomically."""
    if cache_path is not None and cache_path.is_file():
        print(f"Features: {cache_path} (cached)", flush=True)
        cached = torch.load(cache_path, map_location="cpu")
        return cached["features"].float(), cached["readable"]
    chunks, readable = [], []
    loader = _loader(dataset, batch_size, num_workers)
    start = 0
    for x, _, index in _progress(loader, desc=f"features layer {layer}", unit="batch"):
        chunks.append(layer_features(model, normalize(x.to(device)), layer, grid).cpu())
        readable.append(index == torch.arange(start, start + len(index)))
        start += len(index)
    features, readable = torch.cat(chunks), torch.cat(readable)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features.half(), "readable": readable, "layer": layer, "grid": grid}, tmp)
        os.replace(tmp, cache_path)
    return features, readable


def make_classifier(kind: str, C: float, max_iter: int, seed: int):
    """scikit-learn's linear classifiers on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "svm":
        clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    else:
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


# ---------------------------------------------------------------------------------------------------- networks
def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """The model with its last ``nn.Linear`` replaced by a fresh one with ``num_classes`` outputs."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes).to(old.weight.device))
    return model


def soft_targets(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-probability targets of multi-label ``y`` ([B,C], 1 = present): the present classes weighted
    equally; and the mask of rows with at least one present class."""
    pos = (y == 1).float()
    count = pos.sum(1, keepdim=True)
    return pos / count.clamp(min=1), count[:, 0] > 0


def train_network(
    net: nn.Module,
    dataset: Dataset,
    t: DictConfig,
    normalize: Callable,
    device: torch.device,
    new_params: set[int] | None = None,
    num_workers: int = 0,
) -> nn.Module:
    """SGD with momentum and a cosine schedule on the softmax cross-entropy (soft targets for multi-label data).
    ``new_params``: ids of parameters trained at the full rate when fine-tuning (the others at
    ``finetune_lr_mult`` times it)."""
    lr = float(t.lr)
    if new_params is None:
        groups = [{"params": list(net.parameters()), "lr": lr}]
    else:
        params = list(net.parameters())
        groups = [
            {"params": [p for p in params if id(p) in new_params], "lr": lr},
            {"params": [p for p in params if id(p) not in new_params], "lr": lr * float(t.finetune_lr_mult)},
        ]
    opt = torch.optim.SGD(groups, momentum=0.9, weight_decay=float(t.weight_decay))
    loader = _loader(dataset, int(t.train_batch_size), num_workers, shuffle=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(t.epochs) * len(loader)))
    net.train()
    for _ in _progress(range(int(t.epochs)), desc="training", unit="epoch", leave=False):
        for x, y, _ in loader:
            x, y = normalize(x.to(device)), y.to(device)
            logits = net(x)
            if y.ndim == 2:
                target, keep = soft_targets(y)
                loss = F.cross_entropy(logits[keep], target[keep]) if keep.any() else logits.sum() * 0
            else:
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def predict(
    net: nn.Module, dataset: Dataset, normalize: Callable, device: torch.device, batch_size: int, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every item and the dataset index each row actually comes from (an unreadable file's row holds
    the next readable image, which is then scored against its own target)."""
    net.eval()
    logits, indices = [], []
    for x, _, index in _loader(dataset, batch_size, num_workers):
        logits.append(net(normalize(x.to(device))).cpu())
        indices.append(index)
    return torch.cat(logits), torch.cat(indices)


class _Setup:
    """What every mode needs: the pretrained network (or how to build a fresh one) and the input format."""

    def __init__(self, cfg: DictConfig, device: torch.device):
        t = cfg.transfer
        self.device = device
        self.checkpoint = resolve_checkpoint(cfg.ckpt) if cfg.get("ckpt") else None
        if self.checkpoint is None and t.mode != "scratch":
            raise ConfigError(
                f"transfer.mode={t.mode} needs a pretrained network: pass ckpt=<checkpoint file or run folder> "
                f"(transfer.mode=scratch alone needs none)."
            )
        self.model = None
        if self.checkpoint is not None:  # the architecture now (cheap, memory-mapped); the weights in load()
            hp = torch.load(self.checkpoint, map_location="cpu", weights_only=False, mmap=True)["hyper_parameters"]
            self.hparams, self.input_size = dict(hp), int(hp["input_size"])
        else:
            self.input_size = int(cfg.data.image_size)
            self.hparams = {"name": str(t.arch), "input_size": self.input_size}
        self.record = DEFAULT_NORMALIZATION
        self.normalize = Normalizer.from_record(self.record).to(self.device)

    def load(self) -> None:
        """The pretrained network and the input normalization it was trained with."""
        if self.checkpoint is None:
            return
        self.model, record = load_checkpoint(self.checkpoint, self.device)
        if not record.get("mean"):
            raise UserError(
                f"{self.checkpoint} records no input normalization (it was not saved by LitClassifier during "
                f"training with a datamodule); transfer needs it to feed images the way training did."
            )
        self.record = record
        self.normalize = Normalizer.from_record(record).to(self.device)

    def fresh_network(self, num_classes: int, pretrained: bool) -> tuple[nn.Module, set[int] | None]:
        """A network to train: the pretrained one with a new head (and the ids of the head's parameters), or
        the same architecture freshly initialized."""
        if pretrained:
            net = replace_head(copy.deepcopy(self.model), num_classes)
            head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
            return net.to(self.device), {id(p) for p in head.parameters()}
        # the checkpoint's own model config (architecture, init) with the new class count and no weights to load
        hp = {**self.hparams, "num_classes": num_classes, "checkpoint": None}
        net = LitClassifier(**{k: v for k, v in hp.items() if k in _LIT_ARGS}).model
        return net.to(self.device), None


# ---------------------------------------------------------------------------------------------------- protocols
def _method_label(t: DictConfig) -> str:
    if t.mode == "features":
        return f"Ours: layer {t.layer} features + {t.classifier}"
    return "Ours: fine-tuned" if t.mode == "finetune" else "Ours: from scratch"


def _layer_features(cfg: DictConfig, setup: _Setup, dataset, image_size: int):
    """(features, readable) of ``dataset`` at ``transfer.layer``, through the on-disk cache when one is set."""
    t = cfg.transfer
    cache = None
    if t.cache_dir:
        cache = feature_cache_path(t.cache_dir, setup.checkpoint, int(t.layer), int(t.grid), dataset, image_size)
    return extract_features(
        setup.model,
        dataset,
        int(t.layer),
        setup.normalize,
        setup.device,
        int(t.grid),
        int(cfg.batch_size),
        int(cfg.num_workers),
        cache,
    )


def run_caltech(cfg: DictConfig, dm: CaltechDataModule, setup: _Setup, sink: ImageSink, out_dir: Path) -> dict:
    t = cfg.transfer
    per_class_list = per_class_counts(t)
    dm.scan()
    targets = np.asarray(dm.dataset.targets)
    num_classes = dm.num_classes
    print(
        f"{dm.name}: {len(dm.dataset)} images, {num_classes} classes; N = {per_class_list}, {t.splits} splits",
        flush=True,
    )
    features, keep = None, np.arange(len(targets))
    if t.mode == "features":
        features, readable = _layer_features(cfg, setup, dm.dataset, dm.image_size)
        features, keep = features.numpy(), np.flatnonzero(readable.numpy())
        if len(keep) < len(targets):
            print(f"  {len(targets) - len(keep)} unreadable image(s) left out of the splits", flush=True)
    per_split = []
    for n in per_class_list:
        for s in range(int(t.splits)):
            seed = int(t.seed) + s
            # the protocol over the readable images (all of them, unless the feature pass found unreadable ones)
            train_pos, test_pos = protocol_split(targets[keep], n, dm.test_per_class, seed, dm.classes)
            train_idx, test_idx = keep[train_pos], keep[test_pos]
            test_targets = targets[test_idx]
            if features is not None:
                clf = make_classifier(t.classifier, float(t.C), int(t.max_iter), seed)
                clf.fit(features[train_idx], targets[train_idx])
                preds = torch.as_tensor(clf.predict(features[test_idx]))
            else:
                torch.manual_seed(seed)
                net, new = setup.fresh_network(num_classes, pretrained=t.mode == "finetune")
                train_network(net, dm.augmented(train_idx), t, setup.normalize, setup.device, new, int(cfg.num_workers))
                logits, rows = predict(
                    net,
                    derived(dm.dataset, test_idx),
                    setup.normalize,
                    setup.device,
                    int(cfg.batch_size),
                    int(cfg.num_workers),
                )
                preds, test_targets = logits.argmax(1), targets[test_idx[rows.numpy()]]
            acc = mean_per_class_accuracy(preds, torch.as_tensor(test_targets), num_classes)
            per_split.append(
                {
                    "per_class": n,
                    "split": s,
                    "seed": seed,
                    "train_images": len(train_idx),
                    "test_images": len(test_idx),
                    "mean_class_acc": acc,
                }
            )
            print(f"  N={n:>3} split {s}: mean per-class accuracy {100 * acc:.2f}%", flush=True)
    ours = {}
    for n in per_class_list:
        m, sd = mean_and_std([r["mean_class_acc"] for r in per_split if r["per_class"] == n])
        ours[n] = (100 * m, 100 * sd)
    write_csv(per_split, out_dir / "splits.csv")
    label = _method_label(t)
    paper_row = (tables.SCRATCH_ROW if t.mode == "scratch" else tables.PRETRAINED_ROW)[dm.name]
    rows = tables.caltech_rows(dm.name, label, ours, paper_row)
    table = tables.CALTECH_TABLES[dm.name]
    note = (
        f"mean per-class accuracy over {t.splits} splits (seeds {t.seed}..{int(t.seed) + int(t.splits) - 1}), "
        f"up to {dm.test_per_class} test images per class, mean +- std over splits"
    )
    print("\n" + tables.render(rows, table["title"], note), flush=True)
    sink.log_table(f"transfer/{dm.name}/table", rows, step=0)
    if t.mode == "features":
        rows7 = tables.table7_rows(dm.name, t.classifier, int(t.layer), ours)
        print("\n" + tables.render(rows7, f"Table 7 - discriminative power of layer {t.layer}"), flush=True)
        sink.log_table(f"transfer/{dm.name}/table7", rows7, step=0)
    curve = [{"per_class": n, "mean_class_acc": ours[n][0], "std": ours[n][1]} for n in per_class_list]
    write_csv(curve, out_dir / "curve.csv")
    if len(per_class_list) > 1:
        sink.log_table(f"transfer/{dm.name}/fig9", curve, step=0)
        sink.log_image(f"transfer/{dm.name}/fig9", _curve_figure(dm.name, curve, label), step=0)
    return {
        "dataset": dm.name,
        "mean_class_acc": {n: ours[n][0] for n in ours},
        "std": {n: ours[n][1] for n in ours},
        "splits": per_split,
    }


def _curve_figure(dataset: str, curve: list[dict], label: str):
    """Fig. 9: accuracy vs training images per class, ours with the paper's rows of Table 4/5 as markers."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(5, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ns = [r["per_class"] for r in curve]
    ax.errorbar(
        ns, [r["mean_class_acc"] for r in curve], yerr=[r["std"] for r in curve], marker="o", capsize=3, label=label
    )
    for method, cells in tables.CALTECH_TABLES[dataset]["rows"].items():
        xs = sorted(cells)
        ax.plot(xs, [cells[n][0] for n in xs], linestyle="--", marker="x", alpha=0.7, label=f"{method} (paper)")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("mean per-class accuracy %")
    ax.set_title(f"{dataset}: accuracy vs training set size (paper Fig. 9)", fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def run_voc(cfg: DictConfig, dm: VOCDataModule, setup: _Setup, sink: ImageSink, out_dir: Path) -> dict:
    t = cfg.transfer
    dm.setup()
    y_train, y_eval = dm.train_set.target_matrix, dm.eval_set.target_matrix
    print(
        f"voc2012: train on {dm.train_split} ({len(dm.train_set)} images), evaluate on {dm.eval_split} "
        f"({len(dm.eval_set)} images)",
        flush=True,
    )
    seed = int(t.seed)
    if t.mode == "features":
        feats, readable = [], []
        for ds in (dm.train_set, dm.eval_set):
            x, ok = _layer_features(cfg, setup, ds, dm.image_size)
            feats.append(x[ok].numpy())  # unreadable images are left out (their row holds another image)
            readable.append(ok)
        x_train, x_eval = feats
        y_train, y_eval = y_train[readable[0]], y_eval[readable[1]]
        if t.classifier == "svm":  # one binary SVM per class (multi-label)
            from sklearn.multiclass import OneVsRestClassifier

            clf = OneVsRestClassifier(make_classifier("svm", float(t.C), int(t.max_iter), seed))
            clf.fit(x_train, (y_train == 1).numpy().astype(int))
            scores = clf.decision_function(x_eval)
        else:  # softmax: one row per present class, weight 1/(#present classes)
            target, keep = soft_targets(y_train)
            rows, cols = torch.nonzero(target, as_tuple=True)
            clf = make_classifier("softmax", float(t.C), int(t.max_iter), seed)
            clf.fit(x_train[rows.numpy()], cols.numpy(), logisticregression__sample_weight=target[rows, cols].numpy())
            proba = clf.predict_proba(x_eval)
            scores = np.zeros((len(x_eval), dm.num_classes))
            scores[:, clf.classes_] = proba  # a class without training positives keeps score 0
    else:
        torch.manual_seed(seed)
        net, new = setup.fresh_network(dm.num_classes, pretrained=t.mode == "finetune")
        train_network(net, dm.augmented_train_set(), t, setup.normalize, setup.device, new, int(cfg.num_workers))
        logits, rows = predict(
            net, dm.eval_set, setup.normalize, setup.device, int(cfg.batch_size), int(cfg.num_workers)
        )
        scores, y_eval = logits.softmax(1).numpy(), y_eval[rows]
    ap = average_precision(torch.as_tensor(scores), y_eval, ignore_index=IGNORE)
    rows = tables.voc_rows(ap.tolist())
    note = (
        f"Paper: VOC 2012 *test* set (server-scored), trained on train+val; this run: trained on "
        f"{dm.train_split}, scored on {dm.eval_split} ({_method_label(t)}). AP = area under the stepwise "
        f"precision-recall curve (torchmetrics); the VOC devkit interpolates (can only be higher). "
        f"'difficult'-only images {'count as positives' if dm.include_difficult else 'are ignored per class'}. "
        f"[A]/[B] Dining table as printed (a copy of the Cow row; their printed means imply ~68.5/~75.1)."
    )
    print("\n" + tables.render(rows, "Table 6 - PASCAL VOC 2012 classification, per-class AP %", note), flush=True)
    sink.log_table("transfer/voc2012/table6", rows, step=0)
    write_csv(rows, out_dir / "table6.csv")
    return {"dataset": dm.name, "ap": ap.tolist(), "mAP": float(ap.nanmean())}


def _device(name: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def transfer(cfg: DictConfig) -> dict:
    validate_config(cfg, "transfer")  # every group, before any checkpoint or image is read
    t = cfg.transfer
    targets = (f"{CaltechDataModule.__module__}.CaltechDataModule", f"{VOCDataModule.__module__}.VOCDataModule")
    if cfg.data.get("_target_") not in targets:
        raise ConfigError(
            f"transfer.py runs on data=caltech101, caltech256 or voc2012 (got data._target_="
            f"{cfg.data.get('_target_')}); the other datasets are evaluated with eval.py."
        )
    device = _device(cfg.get("device", "auto"))
    torch.manual_seed(int(t.seed))
    setup = _Setup(cfg, device)
    with open_dict(cfg):  # images are fed at the network's own input size
        cfg.data.image_size = setup.input_size
    dm = instantiate(cfg.data)
    # a wrong layout stops here, before the network is loaded, and so does a class too small for the largest N
    if isinstance(dm, CaltechDataModule):
        dm.split(int(t.seed), max(per_class_counts(t)))
    else:
        dm.setup()
    setup.load()
    out_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_group(cfg.get("logger"), "logger")
    sink = ImageSink(out_dir, loggers)
    status = "failed"
    try:
        for lg in loggers:
            hparams = OmegaConf.to_container(cfg, resolve=True)
            hparams.pop("hydra", None)
            lg.log_hyperparams({**hparams, "checkpoint": str(setup.checkpoint)})
        run = run_voc if isinstance(dm, VOCDataModule) else run_caltech
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        with threadpool_limits(limits=t.get("blas_threads")):  # None: the BLAS default (all cores)
            result = run(cfg, dm, setup, sink, out_dir)
        status = "success"
    finally:
        for lg in loggers:
            lg.finalize(status)
        finish_wandb()
    skipped = dm.skipped_files
    result["skipped_files"] = len(skipped)
    if skipped:
        write_csv([{"path": p, "reason": r} for p, r in skipped.items()], out_dir / "skipped_files.csv")
        print(f"Skipped {len(skipped)} unreadable image(s): {out_dir / 'skipped_files.csv'}", flush=True)
    print(f"Done: results in {out_dir}", flush=True)
    return result
