"""Offline Fig. 2: ``python analyze.py ckpt=<ckpt or run folder> analysis=top9``.

Mines the top-k of the configured layers over ``images`` (default: the checkpoint's val split) with
:func:`mine_topk` and draws the same grids as the :class:`~zfnet_exp.callbacks.top9.Top9Deconv` callback
(``diag/<layer>/top9`` PNG + JSON). ``analysis.sanity=true`` adds the Adebayo et al. cascading
randomization check on each layer's top-1 images of the drawn maps: a JSON of the per-step similarity and a
figure (rows = maps, columns = steps: original, then cumulatively re-initialized from the top down), under
``diag/<layer>/sanity``. A deconvnet that still draws the same pictures with random weights is showing
the image, not the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...data.normalize import denormalizer
from ...diagnostics.deconvnet import DeconvnetNotApplicable
from ...diagnostics.geometry import NoReceptiveField
from ...diagnostics.layers import conv_layer_names
from ...diagnostics.projections import topk_projections
from ...diagnostics.sanity import cascading_randomization
from ...diagnostics.topk import mine_topk, topk_payload
from ...utils.options import at_least, maps_option, one_of, option_rules
from ...utils.skips import say_skipped
from ...utils.tensors import class_names_of, pick_maps, unwrap_subset
from ...viz.grids import evolution_figure, top9_cells, top9_figure
from ...viz.images import normalize_each

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


@option_rules(
    k=at_least(1), maps=maps_option, maps_per_row=at_least(1), step=at_least(0), similarity=one_of(("ssim", "spearman"))
)
def run(
    ctx: AnalysisContext,
    *,
    layers: list[str] | None = None,
    k: int = 9,
    maps: int | str | list[int] = 8,
    seed: int = 0,
    maps_per_row: int = 3,
    step: int = 0,
    sanity: bool = False,
    similarity: str = "ssim",
) -> dict[str, Any]:
    """Top-``k`` grids of ``layers`` (None: every conv layer); ``maps`` as in the top9 callback; ``sanity``
    adds the cascading randomization check with ``similarity`` (ssim | spearman)."""
    if ctx.model is None or ctx.dataset is None:
        raise ValueError("analysis=top9 needs ckpt=<checkpoint> and images=<split or folder>")
    layers = layers or conv_layer_names(ctx.model)
    topk = mine_topk(
        ctx.model,
        ctx.dataset,
        layers,
        k=k,
        batch_size=ctx.batch_size,
        num_workers=ctx.num_workers,
        device=ctx.device,
    )
    base = unwrap_subset(ctx.dataset)
    denorm = denormalizer(ctx.data)
    maps_opt = maps
    out: dict[str, Any] = {}
    skipped = {}
    for layer in layers:
        t = topk[layer]
        maps = pick_maps(t.values.shape[0], maps_opt, seed, layer)
        if not maps:  # maps=[]: mine (last_result / JSON-free) but draw nothing
            continue
        try:
            proj, patches, filled = topk_projections(ctx.model, base, layer, t, maps, ctx.device)
        except (DeconvnetNotApplicable, NoReceptiveField) as err:
            skipped[layer] = err
            continue
        P, Q = top9_cells(proj, patches, filled, denorm)
        labels = [class_names_of(base, t.indices[c].tolist(), ctx.data.get("classes")) for c in maps]
        title = [
            f"{layer}: top-{k} images of {len(maps)} feature maps ({ctx.checkpoint})",
            "left: deconvnet projections, each contrast-normalized on its own (grey = 0); "
            "right: the same images' receptive-field patches, with their class",
        ]
        grid = top9_figure(P, Q, maps, labels, title, maps_per_row=maps_per_row)
        payload = topk_payload(t, layer, maps)
        payload["checkpoint"] = str(ctx.checkpoint)
        ctx.sink.log_image(f"diag/{layer}/top9", grid, step=step, caption=f"{layer} top-{k}, maps {maps}")
        ctx.sink.log_json(f"diag/{layer}/top9", payload, step=step)
        out[layer] = {"maps": maps}
        if sanity:
            keep = [c for c in maps if int(t.indices[c, 0]) >= 0]
            if not keep:
                continue
            images = torch.stack([base[int(t.indices[c, 0])][0] for c in keep]).to(ctx.device)
            with torch.enable_grad():
                scores, projs = cascading_randomization(
                    ctx.model,
                    images,
                    layer,
                    torch.tensor(keep, device=ctx.device),
                    similarity=similarity,
                    positions=t.positions[keep, 0].to(ctx.device),
                    seed=seed,
                    return_projections=True,
                )
            cells = torch.stack([normalize_each(p.cpu()) for p in projs], 1)  # [M, steps, 3, H, W]
            cells = torch.cat([denorm(images.cpu())[:, None], cells], 1)  # first column: the image
            ctx.sink.log_image(
                f"diag/{layer}/sanity",
                evolution_figure(
                    cells,
                    ["image"] + [name for name, _ in scores],
                    [f"{layer}\nmap {c}" for c in keep],
                    f"{layer}: cascading randomization (columns: weights re-initialized from the top down)",
                ),
                step=step,
                caption="image | " + " | ".join(name for name, _ in scores),
            )
            ctx.sink.log_json(
                f"diag/{layer}/sanity",
                {
                    "layer": layer,
                    "maps": keep,
                    "similarity": similarity,
                    "steps": [{"step": n, "score": s} for n, s in scores],
                },
                step=step,
            )
            out[layer]["sanity"] = scores
    say_skipped("top9 figures", skipped)
    return out
