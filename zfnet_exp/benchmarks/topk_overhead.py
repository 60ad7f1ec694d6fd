"""Benchmark: what top-9 mining adds to a validation epoch (issue goal: at most 15%).

``python -m zfnet_exp.benchmarks.topk_overhead [--size 224] [--images 256] [--batch 64] [--record]``

Runs the same validation forward passes twice in one process: plain, and with exactly what the top-9
callback adds per batch (forward hooks on every conv layer via ``capture_activations(keep="first")`` and
``TopKAccumulator.update`` with the batch's dataset indices). Images are a fixed random tensor held in memory,
so data loading does not dilute the overhead (a real epoch's loading makes the percentage smaller). The
projection and drawing at epoch end are a separate, once-per-epoch cost measured by the deconvnet benchmark.
"""

from __future__ import annotations

import argparse
import time

import torch

from ..diagnostics.layers import capture_activations, conv_layer_names
from ..diagnostics.topk import TopKAccumulator
from ..models import create_model
from ..utils.records import Figure, add_record_option, recording


def _epoch(model, images, batch, acc=None, acts=None) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            model(images[i : i + batch])
            if acc is not None:
                acc.update(acts, torch.arange(i, min(i + batch, len(images))))
                acts.clear()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zfnet")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    add_record_option(ap)
    args = ap.parse_args(argv)
    with recording("topk_overhead", args.record, "python -m zfnet_exp.benchmarks.topk_overhead", argv) as rec:
        result = measure(args)
        rec.extend(
            [
                Figure("plain_s", result["plain_s"], "s"),
                Figure("mined_s", result["mined_s"], "s"),
                Figure("overhead_pct", result["overhead_pct"], "%"),
                Figure("threads", torch.get_num_threads()),
            ]
        )
    return result


def measure(args: argparse.Namespace) -> dict:
    """Time and print the workload of ``args`` (what :func:`main` parsed); return the numbers for the caller and
    the record."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=1000, input_size=args.size, init="kaiming").eval()
    images = torch.randn(args.images, 3, args.size, args.size)
    layers = conv_layer_names(model)
    _epoch(model, images[: args.batch], args.batch)  # warm-up
    plain, mined = [], []
    for _ in range(args.repeats):  # interleaved, best of N: robust to other load on the machine
        plain.append(_epoch(model, images, args.batch))
        acc = TopKAccumulator(layers, args.k)
        with capture_activations(model, layers, keep="first") as acts:
            mined.append(_epoch(model, images, args.batch, acc, acts))
        acc.result()
    p, m = min(plain), min(mined)
    overhead = 100 * (m - p) / p
    print(
        f"{args.model} at {args.size} px, {args.images} images, batch {args.batch}, {torch.get_num_threads()} "
        f"threads, layers {', '.join(layers)}, k={args.k}"
    )
    print(f"plain validation pass : {p:8.2f} s")
    print(f"with top-{args.k} mining  : {m:8.2f} s")
    print(f"overhead              : {overhead:8.1f} %  (goal <= 15%)")
    return {"plain_s": p, "mined_s": m, "overhead_pct": overhead}


if __name__ == "__main__":
    main()
