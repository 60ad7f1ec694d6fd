"""The GPU fast path, exercised on the CPU (bf16 autocast, channels-last, torch.compile with the diagnostics on
the eager module), FLOPs counted from the model, and the throughput benchmark end to end on tiny inputs."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from torch import nn

from zfnet_exp.callbacks.top9 import Top9Deconv
from zfnet_exp.data import ShapesDataModule
from zfnet_exp.data.normalize import NormalizedView
from zfnet_exp.diagnostics.topk import mine_topk
from zfnet_exp.models import LitClassifier

LAYERS = ["conv1", "conv2"]
OPT = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1e-3}


def _dm(data_dir, channels_last=False):
    dm = ShapesDataModule(
        cache_dir=str(data_dir),
        image_size=64,
        train_per_class=2,
        val_per_class=1,
        batch_size=10,
        num_workers=0,
        channels_last=channels_last,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _trainer(tmp_path, callbacks, precision="32-true"):
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        default_root_dir=str(tmp_path),
    )


def test_compiled_training_keeps_diagnostics_on_the_eager_module(data_dir, tmp_path):
    """model.compile=true: the training step runs the torch.compile'd network (dynamo; the eager backend keeps
    the test fast, inductor takes minutes on a CPU), while the top-9 callback's hooks still see every
    validation activation: its result equals a direct mine_topk over the normalized validation set."""
    dm = _dm(data_dir)
    lit = LitClassifier(
        num_classes=10, input_size=64, optimizer=OPT, compile=True, compile_options={"backend": "eager"}
    )
    top9 = Top9Deconv(layers=LAYERS, maps=[])
    _trainer(tmp_path, [top9]).fit(lit, datamodule=dm)
    assert isinstance(lit.train_network, torch._dynamo.eval_frame.OptimizedModule)
    assert lit.train_network._orig_mod is lit.model  # one set of parameters
    assert "_compiled" not in dict(lit.named_children())  # not saved twice in checkpoints
    ref = mine_topk(lit.model.eval(), NormalizedView(dm.val_set, dm.normalizer), LAYERS, k=9)
    for layer in LAYERS:
        got = top9.last_result[layer]
        torch.testing.assert_close(got.values, ref[layer].values, rtol=1e-4, atol=1e-5)
        assert torch.equal(got.indices, ref[layer].indices)


def test_bf16_autocast_and_channels_last_on_cpu(data_dir, tmp_path):
    """trainer.precision=bf16-mixed with model.channels_last: the training forward runs in bfloat16 on NHWC
    inputs and weights (checked by hooks on the real modules), the loss stays finite, the diagnostics run."""
    dm = _dm(data_dir, channels_last=True)
    lit = LitClassifier(num_classes=10, input_size=64, optimizer=OPT, channels_last=True)
    seen = {}
    conv1 = next(m for m in lit.model.modules() if isinstance(m, nn.Conv2d))
    fc8 = [m for m in lit.model.modules() if isinstance(m, nn.Linear)][-1]

    def conv_input(m, args):
        seen.setdefault("nhwc", args[0].is_contiguous(memory_format=torch.channels_last))

    def head_output(m, args, out):
        seen.setdefault("dtype", out.dtype)

    conv1.register_forward_pre_hook(conv_input)
    fc8.register_forward_hook(head_output)
    top9 = Top9Deconv(layers=LAYERS, maps=[])
    trainer = _trainer(tmp_path, [top9], precision="bf16-mixed")
    trainer.fit(lit, datamodule=dm)
    assert seen == {"nhwc": True, "dtype": torch.bfloat16}
    assert conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])
    assert torch.isfinite(top9.last_result["conv2"].values).all()


def test_flops_per_image_counted_from_the_model():
    """FlopCounterMode's count against a hand count from the layer shapes (2 * MACs of every conv and linear
    layer; training = forward + weight gradients + input gradients of all but the first layer, whose input
    needs none). At 224 px this is the ~6.7 GFLOP of performance-anchors.md section 6."""
    from zfnet_exp.benchmarks.throughput import flops_per_image
    from zfnet_exp.models import create_model

    model = create_model("zfnet", num_classes=1000, input_size=224)
    fwd = []

    def hook(m, a, out):
        if isinstance(m, nn.Conv2d):
            fwd.append(2 * out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            fwd.append(2 * m.in_features * m.out_features)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    counted = flops_per_image(model, 224, torch.device("cpu"))
    forward = sum(fwd)  # per image: out[0] is one image's output
    assert counted == pytest.approx(3 * forward - fwd[0], rel=1e-9)
    assert counted == pytest.approx(6.67e9, rel=0.03)


def test_throughput_benchmark_tiny_run(tmp_path, data_dir):
    """The benchmark command end to end on tiny inputs: every figure is reported and lands in one CSV row;
    medians of windows follow a hand computation."""
    from zfnet_exp.benchmarks.throughput import _median_rate, main

    assert _median_rate([1.0, 1.0, 5.0, 5.0, 2.0, 2.0], images_per_step=10, steps=2) == pytest.approx(5.0)
    out = tmp_path / "bench.csv"
    args = [
        "--image-size",
        "64",
        "--batch",
        "10",
        "--steps",
        "2",
        "--windows",
        "2",
        "--warmup",
        "1",
        "--workers",
        "0",
        "--precision",
        "32-true",
        "--cache-dir",
        str(data_dir),
        "--device",
        "cpu",
        "--diag-images",
        "10",
        "--diag-callbacks",
        "filter_health",
        "--csv",
        str(out),
    ]
    assert main(args) == 0
    (row,) = list(csv.DictReader(out.open()))
    for key in ("synthetic_img_s", "loader_img_s", "lightning_img_s", "plain_img_s", "diagnostics_extra_s"):
        assert float(row[key]) == float(row[key])  # a number, not NaN
    assert float(row["lightning_overhead_pct"]) == pytest.approx(
        100 * (float(row["plain_img_s"]) / float(row["lightning_img_s"]) - 1)
    )
    assert float(row["train_flops_per_image"]) > 0 and row["device"] == "cpu"


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainer_configs_turn_the_fast_path_on(trainer, tmp_path, data_dir):
    """trainer=gpu|ddp compose bf16 autocast, a channels-last model and channels-last batches (the datamodule
    follows model.channels_last), without touching other groups' defaults."""
    from helpers import compose_train

    cfg = compose_train([f"trainer={trainer}"], tmp_path, data_dir)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    assert cfg.model.channels_last is True and cfg.data.channels_last is True and cfg.model.compile is False
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.trainer.max_epochs == 12  # recipe=fast sets it (conf/recipe/fast.yaml)
    if trainer == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == -1
