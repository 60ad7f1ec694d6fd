"""timm and torchvision CNNs trained and diagnosed by the same code (``model=timm``, ``model=torchvision``),
the model contract's adapter, local weights, and the paper's networks inside timm's registry."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from helpers import CONF, TINY_DATA, compose_train

from zfnet_exp.diagnostics.layers import conv_layer_names
from zfnet_exp.errors import ConfigError
from zfnet_exp.models import create_model, list_models
from zfnet_exp.models.external import TorchvisionContract, create_external, load_weights


def test_paper_models_in_timm_registry():
    """Reference: the paper's parameter count (fact sheet: 62,357,608 at C = 1000) and our own registry."""
    assert set(list_models()) <= set(timm.list_models())
    with torch.device("meta"):
        zf = timm.create_model("zfnet")
        assert sum(p.numel() for p in zf.parameters()) == 62_357_608
        small = timm.create_model("alexnet_no34", num_classes=10, img_size=112)
        ours = create_model("alexnet_no34", num_classes=10, input_size=112)
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in ours.parameters())
    assert type(zf).__name__ == "ConvNet" and zf.get_classifier() is zf.classifier.fc8
    cfg = timm.data.resolve_data_config({}, model=zf)
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("zfnet", pretrained=True)


def test_contract_on_our_model_and_torchvision_adapter():
    """forward == forward_head o forward_features (our ConvNet; torchvision through the adapter, whose module
    names and state_dict keys stay torchvision's)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    ours = create_model("zfnet", num_classes=5, input_size=64).eval()
    torch.testing.assert_close(ours.forward_head(ours.forward_features(x)), ours(x))
    net = create_external("torchvision", "resnet18", num_classes=5, input_size=64).eval()
    assert isinstance(net, TorchvisionContract)
    reference = torchvision.models.resnet18(num_classes=5)
    assert list(net.state_dict()) == list(reference.state_dict())
    reference.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net.forward_head(net.forward_features(x)), reference.eval()(x))
    assert conv_layer_names(net)[:2] == ["relu", "layer1.0.relu"]


def test_local_checkpoint_loads_and_reinitializes_a_different_head(tmp_path):
    """A torchvision-format file of another class count: every tensor but the classifier is loaded."""
    torch.manual_seed(1)
    saved = torchvision.models.resnet18(num_classes=7)
    torch.save(saved.state_dict(), tmp_path / "w.pth")
    net = create_external("torchvision", "resnet18", num_classes=3, input_size=64)
    with pytest.warns(UserWarning, match=r"kept the new initialization of fc.weight, fc.bias"):  # rank 0 says so
        skipped = load_weights(net, tmp_path / "w.pth")
    assert skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(net.layer3[0].conv1.weight, saved.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="does not match the model"):
        load_weights(create_external("torchvision", "vgg11", num_classes=3, input_size=64), tmp_path / "w.pth")


def _analyze(run_dir: Path, out: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from zfnet_exp.tasks.analyze import analyze

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "analyze", overrides=[f"ckpt={run_dir}", f"paths.output_dir={out}", "device=cpu", "logger=none", *overrides]
        )
    return analyze(cfg)


# (library, name): a timm ResNet (BatchNorm, residual adds) and a torchvision VGG with BatchNorm (128 M
# parameters, almost all in its fixed 25088 -> 4096 classifier: the slow one)
MODELS = [
    pytest.param(("timm", "resnet18"), id="resnet18"),
    pytest.param(("torchvision", "vgg11_bn"), id="vgg11_bn", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=MODELS)
def external_run(request, tmp_path_factory, data_dir):
    """Two batches with every default callback on, then analyze.py top9 and occlusion on the checkpoint."""
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    library, name = request.param
    run_dir = tmp_path_factory.mktemp(name)
    overrides = [
        "debug=smoke",
        *TINY_DATA,
        "logger=none",
        f"model={library}",
        f"model.name={name}",
        "callbacks.top9.maps=2",
        "callbacks.evolution.maps=2",
        "callbacks.occlusion.num_probes=1",
        "callbacks.occlusion.patch=32",  # the offline analysis' geometry below: 3x3 positions, not 13x13
        "callbacks.occlusion.stride=16",
        "callbacks.model_checkpoint.save_top_k=0",  # last.ckpt only (VGG's classifier is large)
        "+callbacks.model_checkpoint.save_weights_only=true",
    ]
    handler = _Lines()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addHandler(handler)
    try:
        metrics = run_task(train, compose_train(overrides, run_dir, data_dir))
        out = tmp_path_factory.mktemp(f"{name}_analysis")
        _analyze(run_dir, out, "analysis=top9", "analysis.maps=2", "num_images=20")
        _analyze(run_dir, out, "analysis=occlusion", "analysis.num_probes=1", "analysis.patch=32", "analysis.stride=16")
    finally:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").removeHandler(handler)
    return library, name, run_dir, out, metrics, handler.lines


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_external_cnn_trains_and_is_diagnosed(external_run):
    library, name, run_dir, out, metrics, lines = external_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["library"] == library
    assert any(".running_mean" in k for k in ckpt["state_dict"])  # a BatchNorm model
    assert torch.isfinite(torch.tensor(metrics["val/loss"]))
    with torch.device("meta"):  # the reference network's structure only (no 128 M random weights drawn)
        layers = conv_layer_names(
            timm.create_model(name) if library == "timm" else torchvision.models.get_model(name, weights=None)
        )
    first = layers[0]  # the stem's rectified conv: a chain, so the ZF deconvnet applies
    for where in (run_dir, out):
        top9 = list((where / "diagnostics" / "diag" / first / "top9").glob("*.json"))
        assert top9 and json.loads(top9[0].read_text())["layer"] == first, where
    (occ,) = list((out / "diagnostics" / "analysis" / "occlusion").glob("*/*.json"))
    payload = json.loads(occ.read_text())
    assert payload["layer"] == layers[-1] and 0.0 <= payload["clean_prob"] <= 1.0  # last_conv
    if library == "timm":  # behind a residual add the deconvnet does not apply: one line, figure skipped
        assert not (run_dir / "diagnostics" / "diag" / "layer1.0.act2").exists()
        said = [line for line in lines if line.startswith("top9 figures: skipped")]
        # once per run: the training run and the offline top9 analysis each say it once
        assert len(said) == 2 and all("layer1.0.act2" in s and "not a chain" in s for s in said), said
    else:  # a VGG is a chain: every conv stage gets its figure, the incremental occlusion path applies
        for layer in layers:
            assert list((run_dir / "diagnostics" / "diag" / layer / "top9").glob("*.png")), layer
