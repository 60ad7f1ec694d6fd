"""Data backends behind the same datamodule: GPU-decode geometry (run on the CPU), its one-warning fallback,
and LitData shards (resumable conversion, equal batches per rank, mid-epoch resume, datamodule batches)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg
from torchvision.transforms.v2 import functional as TF

from zfnet_exp.data.backends.gpu_decode import EncodedImages, collate_encoded, decode_batch
from zfnet_exp.data.transforms import eval_transform, resize_for


def _jpeg_folder(root: Path, per_class: int = 4, size=(90, 70)) -> Path:
    for split in ("train", "val"):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                rng = np.random.default_rng(100 * c + k)
                # smooth content (JPEG artefacts stay small) with a class-dependent colour
                base = np.kron(rng.integers(0, 256, (size[1] // 10 + 1, size[0] // 10 + 1, 3)), np.ones((10, 10, 1)))
                img = Image.fromarray(base[: size[1], : size[0]].astype(np.uint8))
                img.save(root / split / cls / f"{k}.jpg", quality=95)
    return root


def test_gpu_decode_geometry_matches_default_pipeline(tmp_path):
    """The batched decode path (here on the CPU device) against the default backend's PIL decode + transforms:
    eval crops agree to resampling round-off; each training crop is exactly one of the crops/flips of the
    resized square (brute-force search over every offset and flip)."""
    root = _jpeg_folder(tmp_path / "ds", per_class=1)
    paths = sorted(str(p) for p in (root / "train").rglob("*.jpg"))
    data, labels, index = collate_encoded([EncodedImages([(p, 0) for p in paths])[i] for i in range(len(paths))])
    assert all(d.ndim == 1 for d in data) and index.tolist() == [0, 1]
    out = decode_batch(data, 32, train=False, device="cpu")
    ref = torch.stack([eval_transform(32)(Image.open(p).convert("RGB")) for p in paths])
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 32, 32)
    assert (out.float() - ref.float()).abs().mean() < 2.0
    g = torch.Generator().manual_seed(0)
    train = decode_batch(data, 32, train=True, device="cpu", generator=g)
    s = resize_for(32)
    # the resized centre square, computed with torchvision's functional ops
    full = [TF.center_crop(TF.resize(decode_jpeg(d), s, antialias=True), s) for d in data]
    for b in range(2):
        cands = [full[b][:, t : t + 32, u : u + 32] for t in range(s - 31) for u in range(s - 31)]
        assert any(torch.equal(train[b], c) or torch.equal(train[b], c.flip(-1)) for c in cands)


def test_gpu_decode_without_cuda_falls_back_with_one_warning(tmp_path, monkeypatch):
    """Without CUDA the datamodule runs the default backend, warning once per process (reference: the default
    backend's own batch)."""
    import zfnet_exp.data.backends as backends
    from zfnet_exp.data import ImageFolderDataModule

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backends, "_warned", set())
    root = _jpeg_folder(tmp_path / "ds")
    kw = dict(root=str(root), image_size=32, batch_size=4, num_workers=0, mean=[0.5] * 3, std=[0.2] * 3)
    with pytest.warns(UserWarning, match="gpu_decode needs CUDA") as rec:
        dms = [ImageFolderDataModule(backend="gpu_decode", **kw) for _ in range(2)]
        for dm in dms:
            dm.setup("fit")
    assert len([w for w in rec if "gpu_decode" in str(w.message)]) == 1
    assert dms[0].backend == "default"
    x, _, _ = next(iter(dms[0].val_dataloader()))
    ref = ImageFolderDataModule(**kw)
    ref.setup("fit")
    assert torch.equal(x, next(iter(ref.val_dataloader()))[0])


@pytest.fixture(scope="module")
def shard_source(tmp_path_factory):
    return _jpeg_folder(tmp_path_factory.mktemp("src") / "ds")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_shard_conversion_resumes_to_identical_shards(shard_source, tmp_path):
    """An interrupted conversion (one part finished, one half-written) re-run with the same arguments gives
    byte-identical shards to an uninterrupted one; the items are the source images re-encoded, in source order."""
    from zfnet_exp.data.shards import ShardMap, convert_folder, convert_samples, encode

    whole = convert_folder(shard_source, tmp_path / "whole", size=40, part_size=3, progress=False)
    # interruption: only the first part of train finished, the second left as a partial temporary folder
    from zfnet_exp.data.folder import IndexedImageFolder

    samples = IndexedImageFolder(shard_source / "train").samples
    parts = tmp_path / "resumed" / ".train.parts"
    convert_samples(samples[:3], parts / "00000", size=40, part_size=3, progress=False)
    (parts / "00001.tmp").mkdir(parents=True)
    (parts / "00001.tmp" / "chunk-0-0.bin").write_bytes(b"half written")
    resumed = convert_folder(shard_source, tmp_path / "resumed", size=40, part_size=3, progress=False)
    for split in ("train", "val"):
        assert _files(whole / split) == _files(resumed / split)
    assert not parts.exists()
    ds = ShardMap(whole, "train")
    assert len(ds) == len(samples) and ds.classes == ["a", "b"]
    for i in (0, 4, 7):
        img, label, index = ds[i]
        expected = torch.from_numpy(np.asarray(Image.open(__import__("io").BytesIO(encode(samples[i][0], 40, 90)))))
        assert (label, index) == (samples[i][1], i)
        assert (img.permute(1, 2, 0).float() - expected.float()).abs().max() <= 1  # same decoder family


def test_shards_command_line(shard_source, tmp_path, capsys):
    """``python -m zfnet_exp.data.shards FOLDER OUT --size --part-size`` (a real subprocess): exit 0, the shards are
    byte-identical to :func:`convert_folder` with the same arguments, and the last line says how to train on them;
    a folder that is not an ImageFolder tree is one ``error:`` paragraph naming it, exit code 2 (the command's
    ``main`` in this process: the subprocess above already covers the entry point, a second one would only pay
    the imports again)."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    from zfnet_exp.data.shards import convert_folder, main

    def cli(*args):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "zfnet_exp.data.shards", *map(str, args)]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    out = tmp_path / "cli"
    r = cli(shard_source, out, "--size", 40, "--part-size", 3)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == (
        f"Shards written to {out}; train with data.backend=shards data.root={out}"
    )
    ref = convert_folder(shard_source, tmp_path / "ref", size=40, part_size=3, progress=False)
    for split in ("train", "val"):
        assert _files(out / split) == _files(ref / split) != {}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing"), str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().startswith("error: "), err
    assert str(tmp_path / "missing") in err and "Traceback" not in err


def test_shards_equal_batches_per_rank_and_mid_epoch_resume(shard_source, tmp_path):
    """Two simulated ranks get the same number of batches and disjoint images (LitData's own sharding);
    a loader restored from state_dict after one batch yields exactly the rest of the epoch."""
    from litdata import StreamingDataLoader
    from litdata.utilities.env import _DistributedEnv

    from zfnet_exp.data.shards import convert_folder, streaming_dataset

    out = convert_folder(shard_source, tmp_path / "shards", size=40, part_size=100, progress=False)
    seen = []
    for rank in (0, 1):
        ds = streaming_dataset(out, "train", None, shuffle=True, drop_last=True)
        ds.distributed_env = _DistributedEnv(2, rank, 1)
        batches = [b[2].tolist() for b in StreamingDataLoader(ds, batch_size=2, num_workers=0, drop_last=True)]
        seen.append(batches)
    assert len(seen[0]) == len(seen[1]) >= 1
    assert not {i for b in seen[0] for i in b} & {i for b in seen[1] for i in b}

    def loader():
        return StreamingDataLoader(
            streaming_dataset(out, "train", None, shuffle=True, drop_last=True, seed=3), batch_size=2, num_workers=0
        )

    full = [b[2].tolist() for b in loader()]
    first = loader()
    it = iter(first)
    assert next(it)[2].tolist() == full[0]
    state = first.state_dict()
    again = loader()
    again.load_state_dict(state)
    assert [b[2].tolist() for b in again] == full[1:]


def test_shapes_datamodule_on_shards(data_dir):
    """``data.backend=shards`` on the generated data: uint8 batches through the streaming loader, and the
    diagnostics' ``val_set[index]`` is the image the loader delivered with that index."""
    from zfnet_exp.data import ShapesDataModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = ShapesDataModule(
            cache_dir=str(data_dir),
            image_size=64,
            train_per_class=2,
            val_per_class=1,
            batch_size=4,
            num_workers=0,
            backend="shards",
        )
        dm.prepare_data()
        dm.setup("fit")
        x, y, idx = next(iter(dm.val_dataloader()))
        tx, _, _ = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 64, 64) and tx.shape == (4, 3, 64, 64)
    assert dm.classes[:2] == ["arrow", "circle"] and len(dm.val_set) == 10
    assert torch.equal(dm.val_set[int(idx[1])][0], x[1]) and int(dm.val_set[int(idx[1])][1]) == int(y[1])
    assert dm.state_dict()["root"].endswith(Path(dm.root).name)


def test_unknown_backend_is_a_config_error():
    """A typo in data.backend fails at setup with the list of backends (before any model is built)."""
    from zfnet_exp.data.backends import resolve_backend
    from zfnet_exp.errors import ConfigError

    with pytest.raises(ConfigError, match="data.backend='lmdb'.*default, gpu_decode, shards"):
        resolve_backend("lmdb")
