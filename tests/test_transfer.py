"""The transfer task (paper Sec. 5.2): layer features, the feature cache, and short end-to-end runs on Caltech-101,
Caltech-256 and PASCAL VOC fixtures (real JPEG/XML files in their own layouts) from a tiny trained checkpoint whose
class count (4) differs from the targets'."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONF, compose_train
from test_caltech import make_caltech
from test_voc import make_voc

from zfnet_exp.data.caltech import CaltechDataset, protocol_split
from zfnet_exp.data.transforms import eval_transform
from zfnet_exp.diagnostics.features import layer_features
from zfnet_exp.models import create_model


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("transfer_data")
    make_caltech(root / "c101", "101", [8, 8, 8])
    make_caltech(root / "c256", "256", [7, 7, 7, 7])
    make_voc(root / "voc")
    return root


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, datasets) -> Path:
    """A real (two-step) ``train.py data=caltech256`` run at 64 px: a 4-class network, trained on split 0 of
    the Caltech-256 fixture (3 images per class), to transfer to 3-class Caltech-101 and 20-class VOC."""
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    run_dir = tmp_path_factory.mktemp("tiny_train")
    overrides = ["debug=smoke", "logger=none", "callbacks=model_checkpoint", "data=caltech256",
                 f"data.root={datasets / 'c256'}", "data.image_size=64", "data.per_class=3"]  # fmt: skip
    cfg = compose_train(overrides, run_dir, tmp_path_factory.mktemp("cache"))
    run_task(train, cfg)
    return run_dir


def _transfer(out: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from zfnet_exp.tasks.transfer import transfer

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "transfer",
            overrides=[f"paths.output_dir={out}", "device=cpu", "logger=none", "num_workers=0", "data.num_workers=0",
                       f"transfer.cache_dir={out.parent / 'features'}", "transfer.blas_threads=1", *overrides],
        )  # fmt: skip
    return transfer(cfg)


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_train_py_on_caltech256(tiny_ckpt, datasets):
    """``train.py data=caltech256`` trains on the protocol's split 0: the checkpoint's datamodule state names the
    4 classes without their NNN. prefix, the head has 4 outputs, and the stored mean is the per-channel pixel
    mean of exactly that split's 12 training files in the paper's centre geometry (reference: torchvision's
    Resize + CenterCrop at 73 px = 64 * 256/224, then numpy)."""
    from PIL import Image
    from torchvision import transforms as T

    from zfnet_exp.runs import load_model

    model, state = load_model(tiny_ckpt)
    assert state["classes"] == ["zebra", "accordion", "Faces_easy", "ant"]
    assert model.classifier.fc8.out_features == 4
    ds = CaltechDataset(datasets / "c256", "256")
    train, _ = protocol_split(ds.targets, 3, 50, seed=0)
    centre = T.Compose([T.Resize(73), T.CenterCrop(73)])
    pixels = np.concatenate(
        [np.asarray(centre(Image.open(ds.samples[i][0]).convert("RGB"))).reshape(-1, 3) for i in train]
    )
    assert state["mean"] == pytest.approx((pixels / 255.0).mean(0).tolist(), abs=1e-5)


def test_layer_features_match_the_network():
    """At 224 px, layer 5 with grid 6 is exactly pool5 (what fc6 reads) and layer 7 is relu(fc7) computed by
    running the classifier modules by hand; layer 1 is 96 channels x 6 x 6."""
    torch.manual_seed(0)
    model = create_model("zfnet", num_classes=5, input_size=224).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pool5 = model.features(x)
        fc7 = model.classifier[:5](model.flatten(pool5))  # fc6, relu6, drop6 (off), fc7, relu7
    assert torch.equal(layer_features(model, x, 5, grid=6), pool5.flatten(1))
    assert torch.allclose(layer_features(model, x, 7), fc7)
    assert layer_features(model, x, 1, grid=6).shape == (2, 96 * 36)


def test_feature_cache_is_reused(tiny_ckpt, tmp_path):
    """The second extraction for the same (checkpoint, layer, images) runs no forward pass (counted by a hook)
    and returns the first one's features (stored as float16) and readable mask; another layer is another cache
    file. A truncated JPEG is marked unreadable (its row holds the next image, so it must be left out)."""
    from zfnet_exp.data.normalize import Normalizer
    from zfnet_exp.runs import load_model, resolve_checkpoint
    from zfnet_exp.tasks.transfer_features import extract_features, feature_cache_path

    make_caltech(tmp_path / "c101", "101", [4, 3, 3])
    bad = tmp_path / "c101" / "101_ObjectCategories" / "accordion" / "image_0002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    ckpt = resolve_checkpoint(tiny_ckpt)
    model, record = load_model(ckpt)
    ds = CaltechDataset(tmp_path / "c101", "101", transform=eval_transform(64))
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    path = feature_cache_path(tmp_path / "cache", ckpt, 6, 6, ds, 64)
    kwargs = dict(normalize=Normalizer.from_record(record), device=torch.device("cpu"), batch_size=4, cache_path=path)
    with pytest.warns(UserWarning, match="image_0002.jpg"):
        first, readable = extract_features(model, ds, 6, **kwargs)
    assert len(calls) == 3 and path.is_file() and first.shape[0] == len(ds) == 10
    assert readable.tolist() == [i != [p for p, _ in ds.samples].index(str(bad)) for i in range(10)]
    second, readable2 = extract_features(model, ds, 6, **kwargs)
    assert len(calls) == 3 and torch.equal(readable2, readable)
    assert torch.allclose(second, first, rtol=1e-3, atol=1e-3)
    assert feature_cache_path(tmp_path / "cache", ckpt, 5, 6, ds, 64) != path


def test_caltech101_features_softmax_end_to_end(tiny_ckpt, datasets, tmp_path, capsys):
    """Layer-7 features + softmax, 3 images/class, 2 splits. The printed "Ours" cell is the mean of the split
    scores, and split 0's score equals sklearn's balanced accuracy (= mean per-class recall, the independent
    oracle) of a classifier refit on the cached features; the paper's Table 4 rows are printed beside ours."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    out = tmp_path / "run"
    result = _transfer(out, f"ckpt={tiny_ckpt}", "data=caltech101", f"data.root={datasets / 'c101'}",
                       "transfer.layer=7", "transfer.per_class=3", "transfer.splits=2")  # fmt: skip
    printed = capsys.readouterr().out
    splits = _csv(out / "splits.csv")
    accs = [float(r["mean_class_acc"]) for r in splits]
    assert [int(r["train_images"]) for r in splits] == [9, 9] and [int(r["test_images"]) for r in splits] == [15, 15]
    ours = re.search(r"Ours: layer 7 features \+ softmax\s*\|\s*([\d.]+) \+- ([\d.]+)", printed)
    assert ours, printed
    assert float(ours.group(1)) == pytest.approx(100 * np.mean(accs), abs=0.05)
    assert float(ours.group(2)) == pytest.approx(100 * np.std(accs), abs=0.05)
    assert re.search(
        r"ImageNet-pretrained convnet \(paper\)\s*\|\s*-\s*\|\s*83\.8 \+- 0\.5\s*\|\s*86\.5 \+- 0\.5", printed
    )

    (cache,) = (tmp_path / "features").glob("L7_*.pt")
    feats = torch.load(cache)["features"].float().numpy()
    ds = CaltechDataset(datasets / "c101", "101")
    y = np.asarray(ds.targets)
    train, test = protocol_split(y, 3, 50, seed=0)
    with threadpool_limits(1):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0))
        clf.fit(feats[train], y[train])
    assert accs[0] == pytest.approx(balanced_accuracy_score(y[test], clf.predict(feats[test])), abs=1e-6)
    assert result["mean_class_acc"][3] == pytest.approx(100 * np.mean(accs))
    assert min(accs) >= 0.6  # colour-coded classes: even a two-step network's features separate them (chance 1/3)


def test_caltech256_svm_sweep_and_fig9(tiny_ckpt, datasets, tmp_path, capsys):
    """Linear SVM on layer-3 features over N = 1, 3 (the Fig. 9 sweep): one curve point per N in curve.csv, the
    figure written through the sink, and the Table 7 row "SVM (3)" with the paper's Caltech-256 cell."""
    out = tmp_path / "run"
    _transfer(out, f"ckpt={tiny_ckpt}", "data=caltech256", f"data.root={datasets / 'c256'}", "transfer.layer=3",
              "transfer.classifier=svm", "transfer.per_class=[1,3]", "transfer.splits=2")  # fmt: skip
    printed = capsys.readouterr().out
    curve = _csv(out / "curve.csv")
    assert [int(r["per_class"]) for r in curve] == [1, 3]
    splits = _csv(out / "splits.csv")
    for r in curve:
        accs = [float(s["mean_class_acc"]) for s in splits if s["per_class"] == r["per_class"]]
        assert float(r["mean_class_acc"]) == pytest.approx(100 * np.mean(accs))
    assert (out / "diagnostics" / "transfer" / "caltech256" / "fig9" / "step0000000.png").is_file()
    assert re.search(r"SVM \(3\)\s*\|\s*60\s*\|\s*46\.0 \+- 0\.3", printed), printed
    assert "Sohn et al. 2011 (paper)" in printed


@pytest.mark.parametrize(
    ("mode", "label", "paper_row"),
    [
        ("scratch", "Ours: from scratch", "Non-pretrained convnet"),
        ("finetune", "Ours: fine-tuned", "ImageNet-pretrained"),
    ],
)
def test_caltech101_trained_network_end_to_end(tiny_ckpt, datasets, tmp_path, capsys, mode, label, paper_row):
    """The "non-pretrained" baseline (the checkpoint's architecture re-initialized) and fine-tuning (the pretrained
    network with its 4-class head replaced by a 3-class one), trained 1 epoch: the row printed beside the
    paper's row of the same protocol holds the score of splits.csv."""
    out = tmp_path / "run"
    overrides = [f"transfer.mode={mode}", "transfer.epochs=1", "transfer.per_class=3", "transfer.splits=1"]
    result = _transfer(out, f"ckpt={tiny_ckpt}", "data=caltech101", f"data.root={datasets / 'c101'}", *overrides)
    printed = capsys.readouterr().out
    acc = float(_csv(out / "splits.csv")[0]["mean_class_acc"])
    assert 0.0 <= acc <= 1.0 and result["mean_class_acc"][3] == pytest.approx(100 * acc)
    assert re.search(rf"{label}\s*\|\s*{100 * acc:.1f} \+- 0\.0", printed), printed
    assert re.search(rf"{paper_row}.*same protocol as ours", printed), printed


def test_voc_features_end_to_end(tiny_ckpt, datasets, tmp_path, capsys):
    """VOC: layer-6 features + softmax trained on `train`, scored on `val`: per-class AP for the classes with
    positives (cat, dog, person), "-" for the others, Table 6 printed with the paper's columns and the
    test-set caveat, and the printed mean equal to the mean of the scored classes' AP."""
    out = tmp_path / "run"
    result = _transfer(out, f"ckpt={tiny_ckpt}", "data=voc2012", f"data.root={datasets / 'voc'}", "transfer.layer=6")
    printed = capsys.readouterr().out
    rows = {r["class"]: r for r in _csv(out / "table6.csv")}
    scored = [float(rows[c]["this run"]) for c in ("Cat", "Dog", "Person")]
    assert rows["Airplane"]["this run"] == "-" and rows["Airplane"]["paper ours"] == "96.0"
    assert float(rows["Mean"]["this run"]) == pytest.approx(np.mean(scored), abs=0.1)
    assert result["mAP"] == pytest.approx(np.mean(scored) / 100, abs=1e-3)
    assert "Table 6" in printed and "*test* set" in printed and re.search(r"Mean\s*\|\s*74\.3\s*\|\s*82\.2", printed)


@pytest.mark.parametrize(
    ("library", "name", "head"),
    [("zfnet_exp", "zfnet", "classifier.fc8"), ("timm", "resnet18", "fc"), ("torchvision", "alexnet", "classifier.6")],
)
def test_finetune_network_keeps_the_pretrained_layers(tmp_path, library, name, head):
    """The network fine-tuning trains, from a checkpoint file of a 4-class model: every tensor but the last layer's
    is the checkpoint's (reference: the saved state dict), the last layer has the target's 3 outputs (timm's
    ``reset_classifier`` for ours and timm's, the last ``nn.Linear`` of a torchvision network), and the optimizer
    Lightning gets trains that layer at ``transfer.lr`` and the pretrained ones at ``lr * finetune_lr_mult``, with
    a cosine schedule over the given steps."""
    import lightning as L
    from omegaconf import OmegaConf

    from zfnet_exp.models import LitClassifier
    from zfnet_exp.tasks.transfer_source import TransferSource
    from zfnet_exp.tasks.transfer_training import transfer_classifier

    torch.manual_seed(0)
    lit = LitClassifier(name=name, library=library, num_classes=4, input_size=64, init=None)
    record = {"mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "normalization": "standard"}
    saved = {k.removeprefix("model."): v.clone() for k, v in lit.state_dict().items()}
    torch.save({"state_dict": lit.state_dict(), "hyper_parameters": dict(lit.hparams),
                "pytorch-lightning_version": L.__version__, "ImageFolderDataModule": {"zfnet_data": 2, **record}},
               tmp_path / "pre.ckpt")  # fmt: skip
    cfg = OmegaConf.create({"ckpt": str(tmp_path / "pre.ckpt"), "transfer": {"mode": "finetune"}})
    source = TransferSource(cfg, torch.device("cpu"))
    source.load()
    t = OmegaConf.create({"lr": 0.01, "weight_decay": 5e-4, "finetune_lr_mult": 0.1})
    net = transfer_classifier(source, 3, True, t, steps=10)
    state = net.model.state_dict()
    assert sorted(k for k in state if not torch.equal(state[k], saved.get(k, torch.empty(0)))) == [
        f"{head}.bias",
        f"{head}.weight",
    ]
    assert state[f"{head}.weight"].shape == (3, saved[f"{head}.weight"].shape[1])
    assert net.model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    config = net.configure_optimizers()
    new, old = config["optimizer"].param_groups
    head_params = {id(p) for p in net.model.get_submodule(head).parameters()}
    assert {id(p) for p in new["params"]} == head_params and new["lr"] == 0.01
    assert len(old["params"]) == len(list(net.model.parameters())) - 2 and old["lr"] == pytest.approx(0.001)
    assert config["lr_scheduler"]["scheduler"].T_max == 10 and config["lr_scheduler"]["interval"] == "step"


def test_multilabel_loss_weights_each_present_class_equally():
    """The fine-tuning loss on multi-label images (VOC): for each image with at least one present class, the mean
    over its present classes of -log softmax (reference: a per-image loop); images without one are left out,
    "difficult"-only labels (IGNORE) are not present classes."""
    from zfnet_exp.data.voc import IGNORE
    from zfnet_exp.tasks.transfer_training import TransferClassifier

    torch.manual_seed(0)
    record = {"mean": [0.5] * 3, "std": [0.25] * 3, "normalization": "standard"}
    lit = TransferClassifier(record, name="zfnet", num_classes=4, input_size=64, optimizer={"lr": 0.1})
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    y = torch.tensor([[1, 0, 1, 0], [0, 0, 0, IGNORE], [0, 1, 0, 0]])
    x = lit.on_after_batch_transfer((x, y), 0)[0]
    lit.eval()  # dropout off, so the reference sees the same logits
    with torch.no_grad():
        loss = lit.training_step((x, y), 0)
        logp = torch.log_softmax(lit(x), 1)
    reference = torch.stack([-(logp[0, 0] + logp[0, 2]) / 2, -logp[2, 1]]).mean()
    assert loss == pytest.approx(float(reference), rel=1e-5)


def test_voc_finetune_end_to_end(tiny_ckpt, datasets, tmp_path, capsys):
    """VOC fine-tuning (soft targets, Lightning's Trainer) one epoch: Table 6 with this run's column, its mean the
    mean of the scored classes' AP (cat, dog, person have positives), and the result's mAP the same."""
    out = tmp_path / "run"
    result = _transfer(out, f"ckpt={tiny_ckpt}", "data=voc2012", f"data.root={datasets / 'voc'}",
                       "transfer.mode=finetune", "transfer.epochs=1")  # fmt: skip
    rows = {r["class"]: r for r in _csv(out / "table6.csv")}
    scored = [float(rows[c]["this run"]) for c in ("Cat", "Dog", "Person")]
    assert rows["Airplane"]["this run"] == "-"
    assert float(rows["Mean"]["this run"]) == pytest.approx(np.mean(scored), abs=0.1)
    assert result["mAP"] == pytest.approx(np.mean(scored) / 100, abs=1e-3)
    assert "Ours: fine-tuned" in capsys.readouterr().out
