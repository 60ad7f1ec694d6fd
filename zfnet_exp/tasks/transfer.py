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

This module runs the protocols (Caltech splits, VOC train/eval) and the task; the jobs they call live in their own
modules: the pretrained network and input format (:mod:`.transfer_source`), layer features, their cache and the
scikit-learn classifiers (:mod:`.transfer_features`), training a ``LitClassifier`` through a Lightning ``Trainer``
for ``finetune`` / ``scratch`` (:mod:`.transfer_training`), the paper's numbers and tables (:mod:`.transfer_tables`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from ..data.caltech import CaltechDataModule, derived, protocol_split
from ..data.voc import IGNORE, VOCDataModule
from ..diagnostics.transfer_metrics import average_precision, mean_and_std, mean_per_class_accuracy
from ..errors import ConfigError
from ..figures import emit, fig9
from ..schemas import per_class_counts, validate_config
from ..utils.devices import torch_device
from ..utils.tables import write_csv
from ..viz import ImageSink
from . import transfer_tables as tables
from .offline import task_loggers
from .transfer_features import make_classifier, source_features
from .transfer_source import TransferSource
from .transfer_training import soft_targets, train_and_predict


# ---------------------------------------------------------------------------------------------------- protocols
def _method_label(t: DictConfig) -> str:
    if t.mode == "features":
        return f"Ours: layer {t.layer} features + {t.classifier}"
    return "Ours: fine-tuned" if t.mode == "finetune" else "Ours: from scratch"


def run_caltech(cfg: DictConfig, dm: CaltechDataModule, source: TransferSource, sink: ImageSink, out_dir: Path) -> dict:
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
        features, readable = source_features(cfg, source, dm.dataset, dm.image_size)
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
                test_set = derived(dm.dataset, test_idx)
                logits, rows = train_and_predict(source, num_classes, dm.augmented(train_idx), test_set, cfg, out_dir)
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
        emit(sink, fig9.draw(dm.name, curve, label, tables.CALTECH_TABLES[dm.name]["rows"]), step=0)
    return {
        "dataset": dm.name,
        "mean_class_acc": {n: ours[n][0] for n in ours},
        "std": {n: ours[n][1] for n in ours},
        "splits": per_split,
    }


def run_voc(cfg: DictConfig, dm: VOCDataModule, source: TransferSource, sink: ImageSink, out_dir: Path) -> dict:
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
            x, ok = source_features(cfg, source, ds, dm.image_size)
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
        logits, rows = train_and_predict(source, dm.num_classes, dm.augmented_train_set(), dm.eval_set, cfg, out_dir)
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


def transfer(cfg: DictConfig) -> dict:
    validate_config(cfg, "transfer")  # every group, before any checkpoint or image is read
    t = cfg.transfer
    targets = (f"{CaltechDataModule.__module__}.CaltechDataModule", f"{VOCDataModule.__module__}.VOCDataModule")
    if cfg.data.get("_target_") not in targets:
        raise ConfigError(
            f"transfer.py runs on data=caltech101, caltech256 or voc2012 (got data._target_="
            f"{cfg.data.get('_target_')}); the other datasets are evaluated with eval.py."
        )
    device = torch_device(cfg.get("device", "auto"))
    torch.manual_seed(int(t.seed))
    source = TransferSource(cfg, device)
    with open_dict(cfg):  # images are fed at the network's own input size
        cfg.data.image_size = source.input_size
    dm = instantiate(cfg.data)
    # a wrong layout stops here, before the network is loaded, and so does a class too small for the largest N
    if isinstance(dm, CaltechDataModule):
        dm.split(int(t.seed), max(per_class_counts(t)))
    else:
        dm.setup()
    source.load()
    out_dir = Path(cfg.paths.output_dir)
    checkpoint = str(source.checkpoint.path if source.checkpoint else None)
    with task_loggers(cfg, checkpoint=checkpoint) as loggers:
        sink = ImageSink(out_dir, loggers)
        run = run_voc if isinstance(dm, VOCDataModule) else run_caltech
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        with threadpool_limits(limits=t.get("blas_threads")):  # None: the BLAS default (all cores)
            result = run(cfg, dm, source, sink, out_dir)
    skipped = dm.skipped_files
    result["skipped_files"] = len(skipped)
    if skipped:
        write_csv([{"path": p, "reason": r} for p, r in skipped.items()], out_dir / "skipped_files.csv")
        print(f"Skipped {len(skipped)} unreadable image(s): {out_dir / 'skipped_files.csv'}", flush=True)
    print(f"Done: results in {out_dir}", flush=True)
    return result
