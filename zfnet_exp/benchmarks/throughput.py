"""Training throughput and how far it is from the hardware's limit.

    python -m zfnet_exp.benchmarks.throughput [--model zfnet] [--backend default|gpu_decode|shards]
        [--image-size 224] [--batch 128] [--steps 10] [--windows 5] [--device auto] [--precision bf16-mixed]
        [--channels-last] [--compile] [--workers 4] [--data shapes|<ImageFolder root>] [--csv results.csv]
        [--record [DIR]]

Prints, each the median over ``--windows`` timed windows of ``--steps`` steps after ``--warmup`` steps:

(a) ``synthetic``: training img/s on random uint8 batches already on the device (the model's ceiling here);
(b) ``loader``: img/s of the training DataLoader alone (decode + crop + flip + collate), in total and per
    worker (the data ceiling);
(c) ``lightning``: end-to-end training img/s through ``Trainer.fit`` with the real datamodule;
(d) ``plain``: the same step (normalize on the device, forward, loss, backward, SGD) in a plain PyTorch loop
    over the same loader, and Lightning's overhead relative to it;
(e) FLOPs per training image counted from the model (``torch.utils.flop_counter.FlopCounterMode`` over one
    forward + backward) and, on a GPU with a known (or ``--peak-tflops``) bf16 peak, the fraction achieved;
and with ``--diag-images N`` the diagnostics' cost at scale: the extra seconds of one epoch in which every
diagnostic callback (top-9, evolution, filter health, occlusion; default configs) is due, measured on a
synthetic validation epoch of N images (the paper's ImageNet: 50,000 at 224 px).

One CSV row per run (``--csv``, appended); ``--record`` also keeps the run as a results record
(:mod:`zfnet_exp.utils.records`: command, machine, versions, figures) in ``results/throughput/``. Why medians
of windows: on a shared machine single timings swing by 2x; the median of several windows after warm-up is what
a long run converges to.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from ..data.normalize import Normalizer
from ..models import LitClassifier
from ..utils.records import Figure, add_record_option, numeric_figures, recording

ROOT = Path(__file__).resolve().parents[2]
# dense bf16 tensor-core peaks (vendor datasheets; performance-anchors.md section 6)
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}
DIAGNOSTIC_CALLBACKS = ("top9", "evolution", "filter_health", "occlusion")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_rate(step_times: list[float], images_per_step: int, steps: int) -> float:
    """Median img/s over consecutive windows of ``steps`` step durations."""
    windows = [sum(step_times[i : i + steps]) for i in range(0, len(step_times) - steps + 1, steps)]
    return images_per_step * steps / statistics.median(windows) if windows else float("nan")


def _autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


class SyntheticImages(Dataset):
    """``n`` deterministic random uint8 images (each from its own seed: no memory held), ``(img, label, idx)``."""

    def __init__(self, n: int, size: int, num_classes: int):
        self.n, self.size, self.num_classes = n, size, num_classes
        self.classes = [f"class{i}" for i in range(num_classes)]
        self.targets = [i % num_classes for i in range(n)]
        self.transform = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randint(0, 256, (3, self.size, self.size), dtype=torch.uint8, generator=g), i % self.num_classes, i


class SyntheticDataModule(L.LightningDataModule):
    """The datamodule contract (uint8 items, ``normalizer``, ``classes``, ``val_set``/``train_set``) on
    synthetic images: for the diagnostics' cost at ImageNet scale without ImageNet."""

    def __init__(self, train: int, val: int, size: int, num_classes: int, batch_size: int, workers: int):
        super().__init__()
        self.train_set = SyntheticImages(train, size, num_classes)
        self.val_set = SyntheticImages(val, size, num_classes)
        self.image_size, self.batch_size, self.workers = size, batch_size, workers
        self.normalizer = Normalizer([0.5] * 3, [0.25] * 3)
        self.classes = self.train_set.classes

    def _loader(self, ds, shuffle):
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return [self.normalizer(batch[0]), *batch[1:]]


def _plain_step(net, norm, opt, x, y, device, precision: str) -> None:
    """One optimizer step of the plain PyTorch loop (synthetic and real-data timings share it), then a sync so
    the caller's clock stops after the device finished."""
    with _autocast(device, precision):
        loss = F.cross_entropy(net(norm(x)), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    _sync(device)


def _lit(args, num_classes: int) -> LitClassifier:
    return LitClassifier(
        name=args.model,
        num_classes=num_classes,
        input_size=args.image_size,
        init="kaiming",
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1e-4, "momentum": 0.9},
        channels_last=args.channels_last,
        compile=args.compile,
        compile_options={"backend": args.compile_backend} if args.compile_backend != "inductor" else None,
    )


def flops_per_image(model: torch.nn.Module, image_size: int, device: torch.device) -> float:
    """Training FLOPs of one image (forward + backward), counted by PyTorch's FlopCounterMode (matmuls and
    convolutions; pointwise ops, pooling and LRN are not counted, as in every published FLOP figure)."""
    x = torch.randn(2, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def synthetic_rate(args, lit: LitClassifier, device: torch.device) -> float:
    """(a) optimizer steps on random uint8 batches already on the device."""
    net, norm = lit.train_network, Normalizer([0.5] * 3, [0.25] * 3, channels_last=args.channels_last)
    opt = lit.configure_optimizers()  # the optimizer Trainer.fit builds in (c)
    x = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    times = []
    for i in range(args.warmup + args.steps * args.windows):
        _sync(device)
        t = time.perf_counter()
        _plain_step(net, norm, opt, x, y, device, args.precision)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    return _median_rate(times, args.batch, args.steps)


def build_datamodule(args):
    from ..data import ImageFolderDataModule, ShapesDataModule

    common = dict(
        image_size=args.image_size,
        batch_size=args.batch,
        num_workers=args.workers,
        backend=args.backend,
        channels_last=args.channels_last,
        normalization="standard",
    )
    if args.data == "shapes":
        n = max(1, (args.warmup + args.steps * args.windows + 2) * args.batch // 10)
        dm = ShapesDataModule(
            cache_dir=args.cache_dir, train_per_class=n, val_per_class=1, balanced_batches=False, **common
        )
    else:
        dm = ImageFolderDataModule(root=args.data, cache_dir=args.cache_dir, **common)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def loader_rate(args, dm) -> float:
    """(b) img/s of the training loader alone (in total)."""
    times, it = [], iter(dm.train_dataloader())
    t = time.perf_counter()
    for i in range(args.warmup + args.steps * args.windows):
        try:
            next(it)
        except StopIteration:
            break
        now = time.perf_counter()
        if i >= args.warmup:
            times.append(now - t)
        t = now
    return _median_rate(times, args.batch, args.steps)


class _StepTimer(L.Callback):
    def __init__(self, device):
        self.device, self.times, self._t = device, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        _sync(self.device)
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now


def lightning_rate(args, dm, device: torch.device) -> float:
    """(c) end-to-end through Trainer.fit (no validation, logging or checkpoints: the training loop alone)."""
    timer = _StepTimer(device)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps * args.windows + 1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        num_sanity_val_steps=0,
    )
    trainer.fit(_lit(args, dm.num_classes), datamodule=dm)
    return _median_rate(timer.times[args.warmup :], args.batch, args.steps)


def plain_rate(args, dm, device: torch.device) -> float:
    """(d) the same step in a plain PyTorch loop over the same loader."""
    lit = _lit(args, dm.num_classes).to(device)
    net, norm = lit.train_network, dm.normalizer
    opt = lit.configure_optimizers()  # the optimizer Trainer.fit builds in (c)
    times, it = [], iter(dm.train_dataloader())
    _sync(device)
    t = time.perf_counter()
    for i in range(args.warmup + args.steps * args.windows):
        try:
            x, y, _ = next(it)
        except StopIteration:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        _plain_step(net, norm, opt, x, y, device, args.precision)
        now = time.perf_counter()
        if i >= args.warmup:
            times.append(now - t)
        t = now
    return _median_rate(times, args.batch, args.steps)


def diagnostics_cost(args, device: torch.device) -> dict[str, float]:
    """Extra seconds of one epoch in which every diagnostic callback is due (the worst epoch of the default
    schedules: ``max_epochs=1`` makes it the last epoch, on which all of them run), on a synthetic
    validation epoch of ``--diag-images`` images."""
    from ..utils.instantiators import instantiate_group

    def run(with_diagnostics: bool, root: Path) -> float:
        callbacks = []
        if with_diagnostics:
            nodes = {
                name: OmegaConf.load(ROOT / "conf" / "callbacks" / f"{name}.yaml")[name] for name in args.diag_callbacks
            }
            callbacks = instantiate_group(OmegaConf.create(nodes), "callbacks")
        dm = SyntheticDataModule(
            args.diag_train_images, args.diag_images, args.image_size, 10, args.batch, args.workers
        )
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            precision=args.precision,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
            num_sanity_val_steps=0,
            default_root_dir=str(root),
        )
        lit = _lit(args, 10)
        _sync(device)
        t = time.perf_counter()
        trainer.fit(lit, datamodule=dm)
        _sync(device)
        return time.perf_counter() - t

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = run(False, Path(tmp) / "base")
        full = run(True, Path(tmp) / "diag")
    return {"epoch_s": base, "diagnostics_extra_s": full - base}


def device_peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in sorted(BF16_PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return tflops * 1e12
    return None


def run(args) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    row: dict[str, Any] = {
        "model": args.model,
        "backend": args.backend,
        "data": args.data,
        "image_size": args.image_size,
        "batch": args.batch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile_backend if args.compile else "off",
        "workers": args.workers,
        "threads": torch.get_num_threads(),
    }
    lit = _lit(args, 1000 if args.data == "synthetic" else 10).to(device)
    row["train_flops_per_image"] = flops_per_image(lit.model, args.image_size, device)
    if "synthetic" in args.measure:
        row["synthetic_img_s"] = synthetic_rate(args, lit, device)
        peak = device_peak(device, args.peak_tflops)
        if peak:
            row["peak_fraction"] = row["synthetic_img_s"] * row["train_flops_per_image"] / peak
    if args.data != "synthetic" and {"loader", "lightning", "plain"} & set(args.measure):
        dm = build_datamodule(args)
        row["backend"] = dm.backend  # after a fallback
        if "loader" in args.measure:
            row["loader_img_s"] = loader_rate(args, dm)
            row["loader_img_s_per_worker"] = row["loader_img_s"] / max(1, args.workers)
        if "lightning" in args.measure:
            row["lightning_img_s"] = lightning_rate(args, dm, device)
        if "plain" in args.measure:
            row["plain_img_s"] = plain_rate(args, dm, device)
        if "lightning_img_s" in row and "plain_img_s" in row:
            row["lightning_overhead_pct"] = 100 * (row["plain_img_s"] / row["lightning_img_s"] - 1)
    if args.diag_images:
        row.update(diagnostics_cost(args, device))
    return row


def report(row: dict[str, Any]) -> str:
    lines = [
        f"Throughput: {row['model']} {row['image_size']}px batch {row['batch']} on {row['device']} "
        f"({row['precision']}, channels_last={row['channels_last']}, compile={row['compile']}, "
        f"backend={row['backend']}, workers={row['workers']})"
    ]
    gf = row["train_flops_per_image"] / 1e9
    lines.append(f"  (e) training FLOPs per image (counted): {gf:.3f} GFLOP")
    if "synthetic_img_s" in row:
        frac = f", {100 * row['peak_fraction']:.1f}% of bf16 peak" if "peak_fraction" in row else ""
        lines.append(f"  (a) synthetic training:    {row['synthetic_img_s']:10.1f} img/s{frac}")
    if "loader_img_s" in row:
        lines.append(
            f"  (b) loader only:           {row['loader_img_s']:10.1f} img/s "
            f"({row['loader_img_s_per_worker']:.1f} per worker)"
        )
    if "lightning_img_s" in row:
        lines.append(f"  (c) end-to-end Lightning:  {row['lightning_img_s']:10.1f} img/s")
    if "plain_img_s" in row:
        lines.append(f"  (d) plain PyTorch loop:    {row['plain_img_s']:10.1f} img/s")
    if "lightning_overhead_pct" in row:
        lines.append(f"      Lightning overhead:    {row['lightning_overhead_pct']:+.1f}% of the plain loop's rate")
    if "diagnostics_extra_s" in row:
        lines.append(
            f"  diagnostics (all due): +{row['diagnostics_extra_s']:.1f} s on an epoch of "
            f"{row['epoch_s']:.1f} s ({100 * row['diagnostics_extra_s'] / row['epoch_s']:.1f}%)"
        )
    return "\n".join(lines)


def write_csv(row: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m zfnet_exp.benchmarks.throughput",
        description="Training throughput: model ceiling, data ceiling, end to end.",
    )
    ap.add_argument("--model", default="zfnet")
    ap.add_argument("--backend", default="default", choices=["default", "gpu_decode", "shards"])
    ap.add_argument(
        "--data", default="shapes", help="shapes (generated), synthetic (model only), or an ImageFolder / shard folder"
    )
    ap.add_argument("--cache-dir", default=str(ROOT / "data"))
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: dynamo only)")
    ap.add_argument(
        "--measure",
        default="synthetic,loader,lightning,plain",
        help="comma-separated subset of synthetic,loader,lightning,plain",
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak if not in the built-in table")
    ap.add_argument(
        "--diag-images",
        type=int,
        default=0,
        help="validation images for the diagnostics cost (0: skip; ImageNet: 50000)",
    )
    ap.add_argument("--diag-train-images", type=int, default=0, help="training images of that epoch (0: one batch)")
    ap.add_argument(
        "--diag-callbacks",
        default=",".join(DIAGNOSTIC_CALLBACKS),
        help="diagnostic callbacks (conf/callbacks/<name>.yaml, default settings) in the cost run",
    )
    ap.add_argument("--csv", default=None, help="append one row per run to this CSV")
    add_record_option(ap)
    args = ap.parse_args(argv)
    args.measure = [m for m in args.measure.split(",") if m]
    args.diag_callbacks = [c for c in args.diag_callbacks.split(",") if c]
    args.diag_train_images = args.diag_train_images or args.batch
    return args


UNITS = {"train_flops_per_image": "FLOP", "peak_fraction": "", "image_size": "px", "batch": "img"} | {
    k: "img/s" for k in ("synthetic_img_s", "loader_img_s", "loader_img_s_per_worker", "lightning_img_s", "plain_img_s")
}


def main(argv=None) -> int:
    args = parse_args(argv)
    with recording("throughput", args.record, "python -m zfnet_exp.benchmarks.throughput", argv) as rec:
        row = run(args)
        print(report(row), flush=True)
        rec.extend(Figure(k, v) for k, v in row.items() if isinstance(v, (str, bool)))  # device, backend, ...
        rec.extend(numeric_figures(row, units=UNITS))
    if args.csv:
        write_csv(row, args.csv)
        print(f"CSV row appended to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
