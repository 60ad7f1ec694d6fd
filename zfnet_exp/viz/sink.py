"""One place where figures and JSON results go: PNG/JSON files in the run folder, forwarded to every active
logger (W&B ``log_image``, TensorBoard ``add_image``; CSV has no image channel, the files are its record).

Callbacks never talk to a logger directly: they hand the sink a key (``diag/conv1/top9``), a step and an image,
so adding a logger or running without one changes nothing in the diagnostics. Only global rank 0 writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from ..utils.diagnostic_files import step_file
from ..utils.tables import write_csv
from .images import to_pil

# zlib level of the PNG files: 1 encodes a dashboard figure of deconvnet noise 2-3x faster than the default 6
# for files 10-40% larger (figures are written every epoch; lossless either way)
PNG_LEVEL = 1


class ImageSink:
    def __init__(self, run_dir: str | Path, loggers: Sequence[Logger] = (), enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.loggers = list(loggers)
        self.enabled = enabled

    @classmethod
    def from_trainer(cls, trainer) -> ImageSink:
        return cls(trainer.default_root_dir, trainer.loggers, enabled=trainer.is_global_zero)

    def _path(self, key: str, step: int, suffix: str) -> Path:
        path = step_file(self.run_dir, key, step, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log_image(self, key: str, image: Any, step: int, caption: str | None = None) -> Path | None:
        """Write ``diagnostics/<key>/step<step>.png`` and forward the image to the loggers; ``caption`` is the
        W&B media caption (the numbers a reader should see beside the picture). W&B gets the written file
        (it copies the PNG instead of encoding the image a second time)."""
        if not self.enabled:
            return None
        pil = to_pil(image).convert("RGB")
        path = self._path(key, step, ".png")
        pil.save(path, compress_level=PNG_LEVEL)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                kw = {"caption": [caption]} if caption else {}
                logger.log_image(key=key, images=[str(path)], step=step, **kw)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, np.asarray(pil), global_step=step, dataformats="HWC")
        return path

    def log_table(self, key: str, rows: Sequence[dict], step: int) -> Path | None:
        """Write ``diagnostics/<key>/step<step>.csv`` and forward the rows as a table (W&B ``log_table``;
        TensorBoard gets a Markdown table as text)."""
        if not self.enabled or not rows:
            return None
        path = write_csv(rows, self._path(key, step, ".csv"))
        columns = list(dict.fromkeys(k for row in rows for k in row))
        data = [[row.get(c) for c in columns] for row in rows]
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=key, columns=columns, data=data, step=step)
            elif isinstance(logger, TensorBoardLogger):
                lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in data]
                logger.experiment.add_text(key, "\n".join(lines), global_step=step)
        return path

    def log_json(self, key: str, payload: Any, step: int) -> Path | None:
        """Write ``diagnostics/<key>/step<step>.json`` (results that figures are made from)."""
        if not self.enabled:
            return None
        path = self._path(key, step, ".json")
        path.write_text(json.dumps(payload, indent=1, default=_jsonable))
        return path


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
