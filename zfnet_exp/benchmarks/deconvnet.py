"""Fig. 2 workload: deconvnet projections of the top-9 units of several maps of every conv layer of ZFNet.

Ours: one batched :func:`zfnet_exp.diagnostics.deconvnet.project` call per layer (all maps x 9 units).
Reference: a per-unit loop over Captum's ``NeuronDeconvolution`` (neuron_selector = (c, y, x)), which
starts from 1.0, so it is multiplied by the unit's activation before comparing. Captum back-propagates
LRN's true Jacobian while the paper (and our default) skips contrast normalization on the way down, so
the exact comparison uses ``skip_norm=False``; the ZF default is timed too, and its (expected, large)
difference from Captum is printed as the size of the LRN effect.

The "top-9 images" of each map are a fixed batch of random images (distinct per map and rank) and the
unit is that map's maximum in the image, as the top-k miner would record it: the projection cost is what
is measured, the mining pass is not timed. Weights are random (Kaiming init) unless --checkpoint is given.

    python -m zfnet_exp.benchmarks.deconvnet            # 224 px, 8 maps x 9 units x conv1..conv5 = 360
    python -m zfnet_exp.benchmarks.deconvnet --quick    # 112 px, 2 maps: 90 projections
    python -m zfnet_exp.benchmarks.deconvnet --record   # also keep the figures in results/deconvnet/
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from zfnet_exp.diagnostics.deconvnet import project
from zfnet_exp.diagnostics.geometry import run_until
from zfnet_exp.diagnostics.layers import resolve_layer
from zfnet_exp.models import create_model
from zfnet_exp.utils.records import Figure, add_record_option, recording
from zfnet_exp.utils.torch_files import load_torch_file


def rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Worst projection's max |ours - ref| over max |ref| (projections that are zero in both count as 0)."""
    ours, ref = ours.flatten(1).double(), ref.flatten(1).double()
    num = (ours - ref).abs().amax(1)
    den = ref.abs().amax(1)
    rel = torch.where(den > 0, num / den.clamp_min(1e-300), torch.where(num > 0, torch.inf, 0.0))
    return float(rel.max())


def workload(model, layer: str, maps: int, k: int, size: int, gen: torch.Generator):
    """(images [maps*k,3,H,W], channels [maps*k], positions [maps*k,2], activations [maps*k])."""
    _, module = resolve_layer(model, layer)
    images = torch.randn(maps * k, 3, size, size, generator=gen)
    with torch.no_grad():
        (acts,) = run_until(model, images, [module])
    # maps that are alive on these images, so that the comparison is not between zeros
    alive = (acts.amax((2, 3)) > 0).float().mean(0)
    channels = alive.argsort(descending=True, stable=True)[:maps].sort().values
    ch = channels.repeat_interleave(k)
    planes = acts[torch.arange(maps * k), ch].flatten(1)
    arg = planes.argmax(1)
    pos = torch.stack([arg // acts.shape[3], arg % acts.shape[3]], 1)
    return images, ch, pos, planes.gather(1, arg[:, None])[:, 0]


def captum_loop(model, layer: str, images, ch, pos, act) -> torch.Tensor:
    from captum.attr import NeuronDeconvolution

    _, module = resolve_layer(model, layer)
    nd = NeuronDeconvolution(model, module)
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        sel = (int(ch[i]), int(pos[i, 0]), int(pos[i, 1]))
        out[i] = nd.attribute(images[i : i + 1], neuron_selector=sel)[0] * act[i]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="112 px, 2 maps per layer (90 projections)")
    ap.add_argument("--model", default="zfnet")
    ap.add_argument("--size", type=int, default=None, help="input size (default 224, quick 112)")
    ap.add_argument("--maps", type=int, default=None, help="maps per layer (default 8, quick 2)")
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--layers", default="conv1,conv2,conv3,conv4,conv5")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--checkpoint", default=None, help="state_dict (or Lightning checkpoint) to load")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-ablation",
        dest="ablation",
        action="store_false",
        help="skip timing the project's own simple path, the batched pass without receptive-field crops "
        "(crop=False), against which the crop planner must pay to stay",
    )
    add_record_option(ap)
    args = ap.parse_args(argv)
    with recording("deconvnet", args.record, "python -m zfnet_exp.benchmarks.deconvnet", argv) as rec:
        result = measure(args)
        rec.extend(figures(result))
    return result


def figures(result: dict) -> list[Figure]:
    """The record's rows: per layer and in total, the four timings, the speed-up and the two differences."""
    out = [Figure(k, result[k], u) for k, u in (("size", "px"), ("threads", ""), ("n", "projections"))]
    for scope, t, speedup, exact, lrn in [
        *((r["layer"], r["times"], r["speedup"], r["max_rel_diff"], r["lrn_effect"]) for r in result["layers"]),
        ("total", result["totals"], result["speedup"], result["max_rel_diff"], result["lrn_effect"]),
    ]:
        out += [Figure(f"{scope}/{key}_s", value, "s") for key, value in t.items()]
        out += [
            Figure(f"{scope}/speedup_vs_captum", speedup, "x"),
            Figure(f"{scope}/max_rel_diff", exact),
            Figure(f"{scope}/lrn_effect", lrn),
        ]
    for r in result["layers"]:
        out += [Figure(f"{r['layer']}/n", r["n"], "projections"), Figure(f"{r['layer']}/nonzero", r["nonzero"])]
    for key in ("speedup_zf_vs_captum", "speedup_uncropped_vs_captum", "crop_vs_uncropped"):
        if result.get(key) is not None:
            out.append(Figure(f"total/{key}", result[key], "x"))
    return out


def measure(args: argparse.Namespace) -> dict:
    """Time and print the workload of ``args`` (what :func:`main` parsed); return the numbers for the caller and
    the record."""
    size = args.size or (112 if args.quick else 224)
    maps = args.maps or (2 if args.quick else 8)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="captum")
    warnings.filterwarnings("ignore", message=".*(backward hooks|required_grads|require gradients).*")

    torch.manual_seed(args.seed)
    model = create_model(args.model, input_size=size, init="kaiming").eval()
    if args.checkpoint:
        state = load_torch_file(args.checkpoint, "a checkpoint or weights file")
        state = state.get("state_dict", state)
        state = {k.removeprefix("model."): v for k, v in state.items()}
        model.load_state_dict(state)
    gen = torch.Generator().manual_seed(args.seed)
    work = {layer: workload(model, layer, maps, args.k, size, gen) for layer in layers}
    n = sum(w[0].shape[0] for w in work.values())
    print(
        f"deconvnet benchmark: {args.model} at {size}px, {len(layers)} layers x {maps} maps x top-{args.k} "
        f"= {n} projections; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        "the top-9 'images' of each map are a fixed batch of random images (distinct per map and rank); "
        "each unit is its map's maximum in that image; only the projection is timed"
    )

    # warm-up both paths once (first-call allocations / kernel selection), not timed
    w0 = work[layers[0]]
    project(model, w0[0][:1], layers[0], w0[1][:1], positions=w0[2][:1])
    captum_loop(model, layers[0], w0[0][:1], w0[1][:1], w0[2][:1], w0[3][:1])

    rows, totals = [], {"zf": 0.0, "captum_sem": 0.0, "uncropped": 0.0, "captum": 0.0}
    worst_exact, worst_lrn = 0.0, 0.0
    for layer in layers:
        images, ch, pos, act = work[layer]
        t = {}
        t0 = time.perf_counter()
        zf = project(model, images, layer, ch, positions=pos)
        t["zf"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = project(model, images, layer, ch, positions=pos, skip_norm=False)
        t["captum_sem"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        uncropped = (
            project(model, images, layer, ch, positions=pos, skip_norm=False, crop=False) if args.ablation else ours
        )
        t["uncropped"] = time.perf_counter() - t0 if args.ablation else float("nan")
        t0 = time.perf_counter()
        ref = captum_loop(model, layer, images, ch, pos, act)
        t["captum"] = time.perf_counter() - t0
        exact = max(rel_diff(ours, ref), rel_diff(uncropped, ref))
        lrn = rel_diff(zf, ref)
        worst_exact, worst_lrn = max(worst_exact, exact), max(worst_lrn, lrn)
        nonzero = int((ref.flatten(1).abs().amax(1) > 0).sum())
        for key in totals:
            totals[key] += t[key]
        rows.append((layer, images.shape[0], nonzero, t, exact, lrn))

    print(
        f"\n{'layer':>8} {'n':>4} {'nonzero':>7} {'ours ZF':>9} {'ours =Captum':>12} {'uncropped':>10} "
        f"{'Captum loop':>11} {'speed-up':>8} {'max rel diff':>12} {'LRN effect':>10}"
    )

    def secs(v: float) -> str:
        return f"{v:.2f}s" if v == v else "-"

    for layer, count, nonzero, t, exact, lrn in rows:
        print(
            f"{layer:>8} {count:>4} {nonzero:>7} {secs(t['zf']):>9} {secs(t['captum_sem']):>12} "
            f"{secs(t['uncropped']):>10} {secs(t['captum']):>11} {t['captum'] / t['captum_sem']:>7.1f}x "
            f"{exact:>12.1e} {lrn:>10.2f}"
        )
    speed = totals["captum"] / totals["captum_sem"]
    print(
        f"{'total':>8} {n:>4} {'':>7} {secs(totals['zf']):>9} {secs(totals['captum_sem']):>12} "
        f"{secs(totals['uncropped']):>10} {secs(totals['captum']):>11} {speed:>7.1f}x {worst_exact:>12.1e} "
        f"{worst_lrn:>10.2f}"
    )
    print(
        f"\nspeed-up vs the Captum per-unit loop: {speed:.1f}x with identical semantics (skip_norm=False), "
        f"{totals['captum'] / totals['zf']:.1f}x for the ZF default (LRN skipped)"
        + (
            f", {totals['captum'] / totals['uncropped']:.1f}x batched without receptive-field crops; "
            f"crop planner vs uncropped (same semantics): {totals['uncropped'] / totals['captum_sem']:.2f}x"
            if args.ablation
            else ""
        )
    )
    print(
        f"max relative difference vs Captum x activation: {worst_exact:.1e} (float32 round-off); "
        f"ZF default vs Captum: {worst_lrn:.2f} (LRN skipped on the way down, as in the paper)"
    )
    return {
        "totals": totals,
        "speedup": speed,
        "max_rel_diff": worst_exact,
        "lrn_effect": worst_lrn,
        "n": n,
        "size": size,
        "threads": torch.get_num_threads(),
        "speedup_zf_vs_captum": totals["captum"] / totals["zf"],
        "speedup_uncropped_vs_captum": totals["captum"] / totals["uncropped"] if args.ablation else None,
        "crop_vs_uncropped": totals["uncropped"] / totals["captum_sem"] if args.ablation else None,
        "layers": [
            {
                "layer": layer,
                "n": count,
                "nonzero": nonzero,
                "times": t,
                "speedup": t["captum"] / t["captum_sem"],
                "max_rel_diff": exact,
                "lrn_effect": lrn,
            }  # fmt: skip
            for layer, count, nonzero, t, exact, lrn in rows
        ],
    }


if __name__ == "__main__":
    main()
