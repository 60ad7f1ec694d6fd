"""Published ImageNet weights (pytorchcv's ZFNet/AlexNet family, torchvision's AlexNet) read into our network.

The reference for every equality is the publisher's own model definition (``pytorchcv.model_provider.get_model``,
``torchvision.models.alexnet``) at random initialization: nothing is downloaded. A "published file" here is that
model's ``state_dict`` written with ``torch.save``, exactly as the publishers distribute theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import ROOT
from image_files import image_folder
from test_caltech import make_caltech

from zfnet_exp.errors import ConfigError, UserError
from zfnet_exp.models import ConvNet, LitClassifier, config_from_spec, preset_spec
from zfnet_exp.models.pretrained import LAYOUTS, identify, imagenet_classes, read_published
from zfnet_exp.runs import read_checkpoint

pytorchcv = pytest.importorskip("pytorchcv.model_provider")  # the dev extra installs it (pyproject.toml)


def _reference(layout, num_classes: int = 1000) -> torch.nn.Module:
    """The publisher's own network for ``layout``, random weights, eval mode."""
    torch.manual_seed(0)
    if layout.source == "torchvision":
        net = torchvision.models.alexnet(weights=None, num_classes=num_classes)
    else:
        net = pytorchcv.get_model(layout.name, num_classes=num_classes)
    return net.eval()


def _images(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def _zfnet_file(path: Path, num_classes: int) -> tuple[Path, torch.nn.Module]:
    """pytorchcv's ``zfnet`` (random weights) saved as its publisher saves it: a bare state dict."""
    ref = _reference(LAYOUTS[0], num_classes)
    torch.save(ref.state_dict(), path)
    return path, ref


@pytest.mark.parametrize("layout", LAYOUTS, ids=[lo.label for lo in LAYOUTS])
def test_our_network_gives_the_publishers_logits(layout):
    """For each supported network: the file is recognised from its keys and shapes alone, our ConvNet built with
    its layer table has the publisher's parameter count (their reported one), and for the same weights gives the
    publisher's model's logits to float round-off."""
    ref = _reference(layout)
    found = identify(ref.state_dict())
    assert found is not None and found.layout == layout
    ours = ConvNet(found.layout.spec, found.num_classes, found.input_size).eval()
    ours.load_state_dict(found.state)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == layout.parameters
    x = _images()
    with torch.no_grad():
        theirs, mine = ref(x), ours(x)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))


def test_pytorchcv_zfnet_normalizes_contrast():
    """pytorchcv's ``zfnet`` prints conv/ReLU/pool modules only, yet normalizes (a functional LRN in its conv block's
    forward): the same layer table with the normalization off, and the paper's ZF table (normalization after the
    pool), give logits far from theirs. So the import must build their table, normalization included."""
    layout = LAYOUTS[0]
    ref = _reference(layout)
    assert not any(isinstance(m, torch.nn.LocalResponseNorm) for m in ref.modules())  # what printing it shows
    found = identify(ref.state_dict())
    x = _images()
    with torch.no_grad():
        theirs = ref(x)
        lrn_off = config_from_spec(layout.spec)
        for name in ("conv1", "conv2"):
            lrn_off[name]["norm"] = None
        for arch in (lrn_off, config_from_spec(preset_spec("zfnet"))):
            net = LitClassifier(arch=arch, num_classes=1000, input_size=224, init=None).model.eval()
            net.load_state_dict(found.state)
            gap = float((net(x) - theirs).abs().max())
            assert gap > 100 * 1e-5 * float(theirs.abs().max()), gap


def test_model_checkpoint_builds_the_files_network(tmp_path, capsys):
    """``model.checkpoint=<pytorchcv zfnet file>`` with the paper's ZF table configured: the network is theirs (the
    log names it and the replaced model.arch keys), its logits are their model's, and the hyper-parameters record
    their table, so a checkpoint of the run rebuilds the same network without the file."""
    path, ref = _zfnet_file(tmp_path / "zfnet-0000.pth", num_classes=1000)
    lit = LitClassifier(
        name="zfnet", arch=config_from_spec(preset_spec("zfnet")), checkpoint=str(path), num_classes=1000,
        input_size=224, init="kaiming",
    )  # fmt: skip
    log = capsys.readouterr().out
    assert "pytorchcv `zfnet` weights" in log and "62,357,608 parameters" in log
    assert "before the pool" in log and "model.arch values replaced: conv1.norm, conv2.norm" in log
    assert lit.hparams.name == "pytorchcv_zfnet" and lit.hparams.arch["conv1"]["norm"]["position"] == "before_pool"
    x = _images()
    with torch.no_grad():
        theirs = ref(x)
        torch.testing.assert_close(lit.model.eval()(x), theirs)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": lit.state_dict(), "hyper_parameters": {**lit.hparams, "checkpoint": None}}, ckpt)
    with torch.no_grad():
        torch.testing.assert_close(read_checkpoint(ckpt).model()(x), theirs)


@pytest.mark.slow
def test_train_py_fine_tunes_from_published_weights(tmp_path, data_dir, capsys):
    """A real ``train.py model=zfnet model.checkpoint=<file>`` run at 64 px on the 10 shapes classes: it starts
    from the file's conv layers (fc6, whose input size differs, and the classifier are re-initialized) and its
    checkpoint records the file's network."""
    from helpers import TINY_DATA, compose_train

    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    path, ref = _zfnet_file(tmp_path / "zfnet.pth", num_classes=1000)
    overrides = ["debug=smoke", *TINY_DATA, "logger=none", "callbacks=model_checkpoint", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", f"model.checkpoint={path}",
                 "model.optimizer.lr=0"]  # fmt: skip
    run_dir = tmp_path / "run"
    run_task(train, compose_train(overrides, run_dir, data_dir))
    assert capsys.readouterr().out.count("pytorchcv `zfnet` weights") == 1  # said once (not by the structure check)
    ckpt = read_checkpoint(run_dir)
    assert ckpt.hparams["name"] == "pytorchcv_zfnet" and ckpt.hparams["num_classes"] == 10
    net = ckpt.model()
    for ours, theirs in (("conv1", "stage1.unit1"), ("conv5", "stage3.unit3")):
        torch.testing.assert_close(
            getattr(net.features, ours).weight, ref.features.get_submodule(theirs).conv.weight
        )  # lr=0: the loaded weights, unchanged


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """``python -m zfnet_exp.models.pretrained <file> --out <folder>`` on a pytorchcv zfnet with a 3-class head."""
    tmp = tmp_path_factory.mktemp("pretrained")
    path, ref = _zfnet_file(tmp / "zfnet.pth", num_classes=3)
    out = tmp / "zfnet_imagenet"
    proc = _python("-m", "zfnet_exp.models.pretrained", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pytorchcv `zfnet` weights" in proc.stdout and f"python eval.py ckpt={out}" in proc.stdout
    return out, ref


def test_converted_checkpoint_is_the_network_with_imagenet_normalization(converted):
    out, ref = converted
    ckpt = read_checkpoint(out)
    assert ckpt.hparams["name"] == "pytorchcv_zfnet" and ckpt.hparams["input_size"] == 224
    assert ckpt.data["mean"] == [0.485, 0.456, 0.406] and ckpt.data["std"] == [0.229, 0.224, 0.225]
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model()(x), ref(x))
    # a 1000-class head records the class names in output order (sorted wnids: index 0 is n01440764, tench)
    names = imagenet_classes(1000)
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"


@pytest.mark.slow
def test_eval_analyze_transfer_read_the_converted_checkpoint(converted, tmp_path, data_dir, capsys):
    """eval.py (10 crops over 3 images), analyze.py (top-9 of conv1 and conv5) and transfer.py (layer-7 features
    on a Caltech-101 fixture) run on the converted file."""
    from test_eval import _compose_eval

    from zfnet_exp.tasks.eval import evaluate
    from zfnet_exp.tasks.runner import run_task

    out, _ = converted
    folder = image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=1)
    result = run_task(
        evaluate,
        _compose_eval(
            [f"ckpt={out}", "data=imagefolder", f"data.root={folder}", "data.num_workers=0", "num_images=3"],
            tmp_path / "eval",
            data_dir,
        ),
    )
    assert [r["images"] for r in result["rows"]] == [3]

    proc = _python(
        "analyze.py", f"ckpt={out}", "analysis=top9", f"images={folder / 'val'}", "logger=none", "device=cpu",
        "analysis.layers=[conv1,conv5]", "analysis.maps=2", f"hydra.run.dir={tmp_path / 'analyze'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "analyze" / "diagnostics").rglob("*.png"))

    from test_transfer import _transfer

    caltech = make_caltech(tmp_path / "c101", "101", [3, 3, 3])
    capsys.readouterr()
    result = _transfer(tmp_path / "transfer", f"ckpt={out}", "data=caltech101", f"data.root={caltech}",
                       "transfer.layer=7", "transfer.per_class=2", "transfer.splits=1")  # fmt: skip
    assert "Ours: layer 7 features" in capsys.readouterr().out and result["mean_class_acc"]


def test_other_files_are_one_paragraph(tmp_path):
    """The converter on a file that is no published network, a publisher's key layout with shapes of none of its
    networks, and a published file passed where a checkpoint is expected: each says what the file is and what to
    do, no traceback."""
    own = tmp_path / "own.pth"
    torch.save({"features.conv1.weight": torch.zeros(4, 3, 7, 7), "features.conv1.bias": torch.zeros(4)}, own)
    proc = _python("-m", "zfnet_exp.models.pretrained", str(own), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "needs no conversion" in proc.stderr

    state = _reference(LAYOUTS[0], num_classes=5).state_dict()
    state["features.stage3.unit1.conv.weight"] = torch.zeros(100, 256, 3, 3)
    with pytest.raises(ConfigError, match="match none of its networks"):
        identify(state)

    path, _ = _zfnet_file(tmp_path / "zfnet.pth", num_classes=5)
    assert read_published(path).layout.label == "pytorchcv_zfnet"
    with pytest.raises(UserError, match=r"published pytorchcv `zfnet` ImageNet weights.*python -m zfnet_exp"):
        read_checkpoint(path)
