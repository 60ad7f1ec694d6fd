"""The image sink's table channel: the CSV in the run folder and the logger's copy hold the same rows."""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import TensorBoardLogger

from zfnet_exp.viz import ImageSink

ROWS = [{"method": "occlusion", "pointing_acc": 0.8125, "n": 16}, {"method": "center", "pointing_acc": 0.5, "n": 16}]


def test_log_table_writes_csv_and_tensorboard_text(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, name="tb", version="")
    path = ImageSink(tmp_path, [tb]).log_table("analysis/faithfulness", ROWS, step=0)
    assert path == tmp_path / "diagnostics" / "analysis" / "faithfulness" / "step0000000.csv"
    with path.open() as f:
        assert list(csv.DictReader(f)) == [{k: str(v) for k, v in r.items()} for r in ROWS]
    tb.experiment.flush()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0}).Reload()
    (event,) = acc.Tensors("analysis/faithfulness/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert text.splitlines() == [
        "| method | pointing_acc | n |",
        "|---|---|---|",
        "| occlusion | 0.8125 | 16 |",
        "| center | 0.5 | 16 |",
    ]


def test_disabled_sink_writes_nothing(tmp_path):
    assert ImageSink(tmp_path, enabled=False).log_table("t", ROWS, step=0) is None
    assert not (tmp_path / "diagnostics").exists()
