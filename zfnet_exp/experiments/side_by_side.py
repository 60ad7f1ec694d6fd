"""What the variants learned differently, as pictures side by side: for one diagnostic key (``diag/filters/conv1``,
``diag/<layer>/top9``, ``diag/<layer>/evolution``, ``diag/occlusion/<probe>``) one figure with a column per variant
(one chosen replicate of each) and a row per matched epoch (1, 2, 5, 10, 20, 50, ... clipped to the runs, and the
final epoch).

Each cell is the PNG the run's own callback wrote at that epoch (``diagnostics/<key>/step<global step>.png``, the
step matched to the epoch through ``metrics.csv``), never recomputed when it exists. Where the callback was off,
the cell is drawn from the run's checkpoint of that epoch (``last.ckpt`` for the final one, ``epoch<NNN>-*.ckpt``
kept by ``save_top_k``) by the figure function the callback uses (``viz.grids.filter_figure`` for the conv1
filters, ``mine_topk`` + ``topk_projections`` + ``viz.grids.top9_figure`` for top-9); a cell with neither says
"not recorded". Cells keep their aspect and are scaled to one column width (:data:`COLUMN_PX`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..runs import Run, read_checkpoint
from ..utils.diagnostic_files import key_folder, key_path
from ..viz.canvas import Canvas, line_height, wrap_lines

SCHEDULE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
COLUMN_PX = 480
LABEL_PX = 110
PAD = 8
HEAD_SIZE, LABEL_SIZE, TITLE_SIZE = 10, 10, 11
KEY = re.compile(r"^diag/(filters/conv1|[A-Za-z0-9_.]+/(top9|evolution)|occlusion/[A-Za-z0-9_.-]+)$")


def matched_epochs(final: int, requested: Sequence[int] | None = None) -> list[int]:
    """The epochs to show: ``requested`` (default :data:`SCHEDULE`) clipped to ``1..final``, and ``final``."""
    wanted = requested or SCHEDULE
    return sorted({int(e) for e in wanted if 1 <= int(e) <= final} | ({final} if final > 0 else set()))


def epoch_steps(run: Run) -> dict[int, int]:
    """1-based epoch -> the step ``metrics.csv`` logged it at (the epoch's last optimizer step, 0-based)."""
    return {int(float(r["epoch"])) + 1: int(float(r["step"])) for r in run.metrics if r.get("step") not in (None, "")}


def recorded_file(run: Run, key: str, epoch: int) -> Path | None:
    """The PNG the run's callback wrote for ``key`` at ``epoch``: the latest one whose global step lies after the
    previous epoch's end and no later than this epoch's end (callbacks log at ``trainer.global_step``, one more
    than the 0-based step ``metrics.csv`` records for the same epoch end)."""
    folder = key_folder(run.path, key)
    steps = epoch_steps(run)
    if epoch not in steps or not folder.is_dir():
        return None
    high = steps[epoch] + 1
    low = steps.get(epoch - 1, -10) + 1
    found = []
    for png in folder.glob("step*.png"):
        digits = png.stem.removeprefix("step")
        if digits.isdigit() and low < int(digits) <= high:
            found.append((int(digits), png))
    return max(found)[1] if found else None


def epoch_checkpoint(run: Run, epoch: int) -> Path | None:
    """A checkpoint written at the end of ``epoch`` (1-based): a kept ``epoch<NNN>-*.ckpt`` (0-based in its
    name, as ModelCheckpoint's filename in conf/callbacks/model_checkpoint.yaml writes it), else ``last.ckpt``
    when it holds that epoch's end."""
    folder = run.path / "checkpoints"
    kept = sorted(folder.glob(f"epoch{epoch - 1:03d}-*.ckpt")) if folder.is_dir() else []
    if kept:
        return kept[0]
    if run.last is not None and epoch == run.epochs_done:
        return run.last
    return None


def draw_from_checkpoint(path: Path, key: str, epoch: int) -> torch.Tensor | None:
    """The figure the callback of ``key`` would have logged at this checkpoint, made by the same figure function
    (None for keys that need the callback's state: evolution strips, occlusion probes)."""
    ckpt = read_checkpoint(path)
    model = ckpt.model()
    note = f"drawn from {path.name} (the callback was off)"
    if key == "diag/filters/conv1":
        from ..viz.grids import filter_figure

        first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if first is None or first.weight.shape[1] not in (1, 3):
            return None
        n, _, kh, kw = first.weight.shape
        canvas = filter_figure(first.weight.detach(), [f"conv1 filters ({n} x {kh}x{kw}), epoch {epoch}", note])
        return _pixels(canvas.to_pil())
    match = re.fullmatch(r"diag/([A-Za-z0-9_.]+)/top9", key)
    if match:
        return _top9(model, ckpt.data, match.group(1), epoch, note)
    return None


def _top9(model, data: dict, layer: str, epoch: int, note: str) -> torch.Tensor:
    """The Top9Deconv callback's figure (its defaults: 8 maps, seed 0, 3 panels to a row) for ``layer``, mined
    over the checkpoint's own validation split."""
    from ..data.normalize import denormalizer
    from ..diagnostics.projections import topk_projections
    from ..diagnostics.topk import mine_topk
    from ..runs import build_dataset
    from ..utils.tensors import class_names_of, pick_maps
    from ..viz.grids import top9_cells, top9_figure

    dataset = build_dataset(data, "val")
    topk = mine_topk(model, dataset, [layer], k=9, batch_size=64, device="cpu")[layer]
    maps = pick_maps(topk.values.shape[0], 8, 0, layer)
    proj, patches, filled = topk_projections(model, dataset, layer, topk, maps, "cpu")
    P, Q = top9_cells(proj, patches, filled, denormalizer(data))
    names = list(data.get("classes") or [])
    base = getattr(dataset, "dataset", dataset)
    labels = [class_names_of(base, topk.indices[c, :9].tolist(), names) for c in maps]
    title = [f"{layer}: top-9 validation images of {len(maps)} feature maps, epoch {epoch}", note]
    return _pixels(top9_figure(P, Q, maps, labels, title).to_pil())


def _pixels(pil) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def load_png(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return _pixels(im)


def fit_width(image: torch.Tensor, width: int = COLUMN_PX) -> torch.Tensor:
    """``image`` scaled to ``width`` pixels, aspect kept (PIL: Lanczos when shrinking, nearest when enlarging, so
    a filter's pixels stay squares)."""
    from PIL import Image

    h, w = image.shape[-2:]
    if w == width:
        return image
    pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    size = (width, max(1, round(h * width / w)))
    return _pixels(pil.resize(size, Image.Resampling.LANCZOS if w > width else Image.Resampling.NEAREST))


def cell(run: Run, key: str, epoch: int) -> tuple[torch.Tensor | None, str]:
    """The picture of ``key`` at ``epoch`` and where it came from (``file`` / ``checkpoint`` / ``none``)."""
    png = recorded_file(run, key, epoch)
    if png is not None:
        return load_png(png), "file"
    ckpt = epoch_checkpoint(run, epoch)
    if ckpt is not None:
        image = draw_from_checkpoint(ckpt, key, epoch)
        if image is not None:
            return image, "checkpoint"
    return None, "none"


def side_by_side(
    columns: dict[str, Run], key: str, epochs: Sequence[int], title: str | None = None
) -> tuple[Canvas, dict[tuple[str, int], tuple[int, int, int, int]], dict[tuple[str, int], str]]:
    """One figure: a column per ``columns`` entry (label -> run), a row per epoch in ``epochs``. Returns the
    canvas, each cell's box ``(x, y, w, h)`` and each cell's source, keyed by (label, epoch)."""
    images = {(v, e): cell(run, key, e) for v, run in columns.items() for e in epochs}
    labels = list(columns)
    heads = {v: wrap_lines(v.split("\n"), COLUMN_PX, HEAD_SIZE) for v in labels}
    titles = wrap_lines(title or key, LABEL_PX + len(labels) * (COLUMN_PX + PAD), TITLE_SIZE)
    head_h = max(len(h) for h in heads.values()) * line_height(HEAD_SIZE)
    top = PAD + len(titles) * line_height(TITLE_SIZE) + PAD + head_h + PAD
    fitted = {k: (fit_width(img) if img is not None else None, src) for k, (img, src) in images.items()}
    row_h = {e: max([img.shape[-2] for (v, ee), (img, _) in fitted.items() if ee == e and img is not None] or [60])
             for e in epochs}  # fmt: skip
    width = LABEL_PX + len(labels) * (COLUMN_PX + PAD) + PAD
    height = top + sum(row_h[e] + PAD for e in epochs) + PAD
    canvas = Canvas(width, height)
    for i, line in enumerate(titles):
        canvas.text(PAD, PAD + i * line_height(TITLE_SIZE), line, size=TITLE_SIZE, bold=True)
    boxes, sources = {}, {}
    y = top
    for e in epochs:
        canvas.text(PAD, y + row_h[e] / 2, f"epoch {e}", size=LABEL_SIZE, va="center", bold=True)
        for i, v in enumerate(labels):
            x = LABEL_PX + i * (COLUMN_PX + PAD)
            if e == epochs[0]:
                for j, line in enumerate(heads[v]):
                    canvas.text(x + COLUMN_PX / 2, top - PAD - head_h + j * line_height(HEAD_SIZE), line,
                                size=HEAD_SIZE, ha="center", bold=True)  # fmt: skip
            img, src = fitted[(v, e)]
            sources[(v, e)] = src
            if img is None:
                canvas.text(x + COLUMN_PX / 2, y + row_h[e] / 2, "not recorded", size=LABEL_SIZE, ha="center",
                            va="center")  # fmt: skip
                continue
            canvas.paste(img, x, y)
            boxes[(v, e)] = (x, y, img.shape[-1], img.shape[-2])
        y += row_h[e] + PAD
    return canvas, boxes, sources


def figure_runs(jobs: Sequence[Any], variants: Sequence[str], seed: str | None) -> dict[str, Any]:
    """One job (:class:`.compare.Job`) per variant: the replicate ``seed`` (``1`` or ``seed=1``), else the lowest
    replicate every variant has finished (so the columns differ in the variant only), else each variant's furthest
    run."""
    by_variant = {v: [j for j in jobs if j.variant == v] for v in variants}
    if seed is not None:
        want = seed if "=" in seed else f"seed={seed}"
        chosen = {v: next((j for j in js if j.replicate == want), None) for v, js in by_variant.items()}
        missing = [v for v, j in chosen.items() if j is None]
        if missing:
            raise UserError(
                f"--figure-seed {seed}: no run of {'; '.join(missing)} has {want}. Pass a replicate every variant "
                f"has (see the Runs table), or leave --figure-seed out."
            )
        return chosen  # type: ignore[return-value]
    finished = [{j.replicate for j in js if j.finished} for js in by_variant.values()]
    common = set.intersection(*finished) if finished else set()
    if common:
        rep = min(common, key=_replicate_order)
        return {v: next(j for j in js if j.replicate == rep and j.finished) for v, js in by_variant.items()}
    return {v: max(js, key=lambda j: j.epochs) for v, js in by_variant.items() if js}


def _replicate_order(rep: str) -> tuple:
    return tuple((0, int(p), "") if p.lstrip("-").isdigit() else (1, 0, p) for p in re.split(r"[=,]", rep))


def comparison_figures(
    c: Any, key: str, seed: str | None = None, epochs: Sequence[int] | None = None
) -> list[tuple[str, Canvas]]:
    """The side-by-side figure of ``key`` for each table of the comparison ``c`` (a :class:`.compare.Comparison`;
    not imported here: compare imports this module): ``(file name, canvas)``."""
    if not KEY.match(key):
        raise UserError(
            f"--figure {key}: not a diagnostic key. Pass diag/filters/conv1, diag/<layer>/top9, "
            f"diag/<layer>/evolution or diag/occlusion/<probe> (the folders under a run's diagnostics/diag/), or none."
        )
    out = []
    for i, table in enumerate(c.tables):
        chosen = figure_runs(table.jobs, table.variants, seed)
        final = min((j.epochs for j in chosen.values()), default=0)
        rows = matched_epochs(final, epochs)
        if not rows:
            continue
        columns = {f"{v}\n{j.replicate}, {j.status}": j.run for v, j in chosen.items()}
        title = f"{key}: one column per variant, one row per epoch" + (f" ({table.label})" if table.label else "")
        canvas, _, _ = side_by_side(columns, key, rows, title)
        suffix = f"_{i + 1}" if len(c.tables) > 1 else ""
        out.append((f"compare_{key_path(key).replace('/', '_')}{suffix}.png", canvas))
    return out
