"""The loader benchmark measures the real training pipeline: ImageNet-sized JPEGs in ImageNet's layout go
through the datamodule's own ``train_dataloader()`` and arrive as uint8 crops (normalization is left to the
device), and the rows it prints are the ones it returns."""

from __future__ import annotations

from PIL import Image

from zfnet_exp.benchmarks import loader


def test_loader_benchmark_runs_the_training_pipeline(tmp_path, capsys):
    """Reference: the profile's JPEG size read back from a generated file, the contract's uint8 dtype."""
    rows = loader.main(
        [
            "--datasets",
            "caltech101",
            "--workers",
            "0",
            "--images",
            "8",
            "--batch",
            "4",
            "--image-size",
            "64",
            "--windows",
            "1",
            "--batches-per-window",
            "1",
            "--root",
            str(tmp_path),
            "--csv",
            str(tmp_path / "r.csv"),
        ]
    )
    jpeg = next((tmp_path / "caltech101" / "train").rglob("*.JPEG"))
    assert Image.open(jpeg).size == loader.PROFILES["caltech101"] and Image.open(jpeg).format == "JPEG"
    assert len(rows) == 1 and rows[0]["dtype"] == "uint8" and rows[0]["crop"] == 64 and rows[0]["img_per_s"] > 0
    assert f"{rows[0]['img_per_s']:.1f} img/s" in capsys.readouterr().out
    assert (tmp_path / "r.csv").read_text().startswith("dataset,source,crop,workers,dtype")
