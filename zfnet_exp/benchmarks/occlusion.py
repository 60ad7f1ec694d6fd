"""Occlusion benchmark: exact incremental inference vs batched re-inference vs Captum ``Occlusion``.

Run ``python -m zfnet_exp.benchmarks.occlusion`` (ZFNet, 1000 classes, random init, 224 px, patch 32,
stride 8) or add ``--quick`` (112 px, patch 16, stride 8) for a smoke run; ``--record`` also keeps the figures
in ``results/occlusion/``.

Fairness: Captum computes a per-pixel map of logit drops rather than a position grid, but it does one
forward pass per occluder position, the same work as ours. With ``(H - patch) % stride == 0`` Captum's
window positions (``ceil((H - p) / s) + 1`` per axis, border-clipped windows included) coincide with ours
(``(H - p) // s + 1``, square fully inside), so both evaluate the same occluded images; the script
checks this and also compares our per-pixel view with Captum's map. All timings are wall-clock on the
same CPU in one process, interleaved per repeat; the minimum over repeats is reported because the
machine may be shared (the load average is printed). On a CPU shared with other jobs, ``--threads 1``
gives steadier numbers (OpenMP barriers stall when a sibling thread is descheduled).

Reading the result: the printed "FLOP ceiling" counts convolution + FC multiply-adds only. The measured
speed-up can exceed it because full re-inference also spends much of its time in memory-bound layers on
the large early maps (ReLU, 3x3 max-pool and LRN on 96 x 110 x 110 / 96 x 55 x 55 per image), which the
incremental path reduces to small windows; compare with "our full path" for the algorithmic gain alone.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from zfnet_exp.utils.records import Figure, add_record_option, recording


def _positions(size: int, patch: int, stride: int) -> tuple[int, int]:
    ours = (size - patch) // stride + 1
    captum = math.ceil((size - patch) / stride) + 1
    return ours, captum


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zfnet")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64, help="positions per batch (ours) = Captum ppe")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--ppe1-sample",
        type=int,
        default=16,
        help="estimate Captum ppe=1 from this many single-image forwards (0 = skip)",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="112 px, patch 16, stride 8, no ppe=1 estimate")
    add_record_option(ap)
    args = ap.parse_args(argv)
    with recording("occlusion", args.record, "python -m zfnet_exp.benchmarks.occlusion", argv) as rec:
        result = measure(args)
        rec.extend(figures(result))
    return result


def figures(result: dict) -> list[Figure]:
    """The record's rows: the best time of each path, the speed-ups, the FLOP ceiling and the differences."""
    best = result["best"]
    out = [Figure(k, result[k], u) for k, u in (("size", "px"), ("patch", "px"), ("stride", "px"), ("threads", ""),
                                                 ("positions", ""), ("load_avg", ""))]  # fmt: skip
    out += [Figure(f"{key}_s", value, "s") for key, value in best.items()]
    out += [
        Figure("captum_ppe1_estimate_s", result["ppe1_estimate"], "s"),
        Figure("speedup_incremental_vs_captum", best["captum"] / best["incremental"], "x"),
        Figure("speedup_incremental_vs_full", best["full"] / best["incremental"], "x"),
        Figure("speedup_full_vs_captum", best["captum"] / best["full"], "x"),
        Figure("flop_ceiling", result["flop_ceiling"], "x"),
        Figure("max_prob_diff", result["prob_diff"]),
        Figure("max_logit_diff", result["logit_diff"]),
        Figure("max_pixel_diff_vs_captum", result["pixel_diff"]),
    ]
    return out


def measure(args: argparse.Namespace) -> dict:
    """Time and print the workload of ``args`` (what :func:`main` parsed); return the numbers for the caller and
    the record."""
    from captum.attr import Occlusion

    from zfnet_exp.diagnostics.occlusion import occlusion_sensitivity
    from zfnet_exp.models import create_model

    if args.quick:
        args.size, args.patch, args.stride, args.ppe1_sample = 112, 16, 8, 0
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model = create_model(args.model, num_classes=args.num_classes, input_size=args.size, init="kaiming").eval()
    image = torch.randn(3, args.size, args.size)
    with torch.no_grad():  # the clean top class, so that its probability is not vanishingly small
        target = int(model(image[None]).argmax())
    ours_n, captum_n = _positions(args.size, args.patch, args.stride)
    load_avg = os.getloadavg()[0]
    print(
        f"model={args.model} classes={args.num_classes} (random init) target={target} input={args.size}px "
        f"patch={args.patch} stride={args.stride} batch/ppe={args.batch_size} threads={torch.get_num_threads()} "
        f"load_avg={load_avg:.1f}"
    )
    print(
        f"positions: ours {ours_n}x{ours_n} = {ours_n**2}, Captum {captum_n}x{captum_n} = {captum_n**2}"
        + ("" if ours_n == captum_n else "  (differ: Captum adds border-clipped windows)")
    )

    occ = Occlusion(model)
    from zfnet_exp.diagnostics.incremental import IncrementalOcclusion

    with torch.no_grad():
        plan = IncrementalOcclusion(model, image[None], (args.patch,) * 2, (args.stride,) * 2, torch.zeros(3))
    conv_full, conv_inc = plan.macs_per_position()
    head = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    ceiling = (conv_full + head) / (conv_inc + head)
    print(
        f"MACs per position: convs {conv_full / 1e6:.0f}M full vs {conv_inc / 1e6:.0f}M incremental; "
        f"+ FC {head / 1e6:.0f}M both -> FLOP ceiling {ceiling:.2f}x"
    )

    def run_captum():
        with torch.no_grad():
            return occ.attribute(
                image[None],
                sliding_window_shapes=(3, args.patch, args.patch),
                strides=(3, args.stride, args.stride),
                baselines=0.0,
                target=target,
                perturbations_per_eval=args.batch_size,
            )

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    # warm-up (allocator, oneDNN primitive caches) on a tiny problem of the same shapes
    occlusion_sensitivity(model, image, target, args.patch, args.size, method="incremental", batch_size=args.batch_size)
    occlusion_sensitivity(model, image, target, args.patch, args.size, method="full", batch_size=args.batch_size)

    times: dict[str, list[float]] = {"incremental": [], "full": [], "captum": []}
    for _ in range(args.repeats):
        t, inc = timed(
            lambda: occlusion_sensitivity(
                model, image, target, args.patch, args.stride, method="incremental", batch_size=args.batch_size
            )
        )
        times["incremental"].append(t)
        t, full = timed(
            lambda: occlusion_sensitivity(
                model, image, target, args.patch, args.stride, method="full", batch_size=args.batch_size
            )
        )
        times["full"].append(t)
        t, cap = timed(run_captum)
        times["captum"].append(t)
    best = {k: min(v) for k, v in times.items()}

    ppe1 = None
    if args.ppe1_sample:
        x = image[None]
        with torch.no_grad():
            model(x)
            t0 = time.perf_counter()
            for _ in range(args.ppe1_sample):
                model(x)
            ppe1 = (time.perf_counter() - t0) / args.ppe1_sample * (captum_n**2 + 1)

    prob_diff = float((inc.prob - full.prob).abs().max())
    logit_diff = float((inc.logit - full.logit).abs().max())
    act_diff = float(((inc.activation - full.activation).abs() / full.activation.abs().max()).max())
    top_same = bool((inc.top_class == full.top_class).all())
    captum_map = cap[0, 0].double()
    pix_diff = float((inc.per_pixel("logit") - captum_map).abs().max())
    pix_scale = float(captum_map.abs().max())

    print(f"ours incremental : {best['incremental']:7.2f} s   ({inc.method})")
    print(f"ours full        : {best['full']:7.2f} s   (batched re-inference)")
    print(f"Captum ppe={args.batch_size:<4}  : {best['captum']:7.2f} s")
    if ppe1 is not None:
        print(
            f"Captum ppe=1     : {ppe1:7.2f} s   ESTIMATE: {args.ppe1_sample} single-image forwards, "
            f"extrapolated to {captum_n**2 + 1} (Captum's own overhead not included)"
        )
    print(
        f"speed-up incremental vs Captum ppe={args.batch_size}: {best['captum'] / best['incremental']:.2f}x; "
        f"vs our full path: {best['full'] / best['incremental']:.2f}x; "
        f"our full vs Captum: {best['captum'] / best['full']:.2f}x"
    )
    if ppe1 is not None:
        print(f"speed-up incremental vs Captum ppe=1 (estimated): {ppe1 / best['incremental']:.1f}x")
    print(
        f"max |prob incremental - prob full| = {prob_diff:.2e} (max prob {float(full.prob.max()):.3g}); "
        f"max |logit diff| = {logit_diff:.2e}; top class identical: {top_same}; "
        f"max rel. activation diff = {act_diff:.2e}"
    )
    print(f"max |per-pixel (ours) - Captum map| = {pix_diff:.2e} logit units (Captum map max |.| {pix_scale:.3g})")
    if args.repeats > 1:
        print("all times:", {k: [round(t, 2) for t in v] for k, v in times.items()})
    return {
        "times": times,
        "best": best,
        "ppe1_estimate": ppe1,
        "prob_diff": prob_diff,
        "logit_diff": logit_diff,
        "pixel_diff": pix_diff,
        "positions": ours_n**2,
        "flop_ceiling": ceiling,
        "size": args.size,
        "patch": args.patch,
        "stride": args.stride,
        "threads": torch.get_num_threads(),
        "load_avg": load_avg,
    }


if __name__ == "__main__":
    main()
