"""The benchmark command lines as a user runs them (``python -m zfnet_exp.benchmarks.<name> ...``, real
subprocesses, tiny sizes): each exits 0 and prints the agreement with its reference that the README quotes
(Captum's per-unit deconvolution loop, Captum's ``Occlusion``, the model's own conv layers). Timings are printed,
never asserted. The loader and throughput benchmarks are run through their ``main(argv)`` in
tests/test_loader_benchmark.py and tests/test_throughput.py.

References: Captum (``NeuronDeconvolution``, ``Occlusion``), run by the benchmarks themselves; the layer names of
:func:`zfnet_exp.diagnostics.layers.conv_layer_names` on the model the test builds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import ROOT


def _bench(name: str, *args: object) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", f"zfnet_exp.benchmarks.{name}", *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, text[-3000:]
    return float(match.group(1))


def test_deconvnet_benchmark_matches_captum():
    """Our batched projections with Captum's semantics (``skip_norm=False``) equal Captum's per-unit loop to float32
    round-off; the ZF default (LRN skipped on the way down) differs from it, as the README says."""
    out = _bench("deconvnet", "--size", 64, "--maps", 1, "--k", 2, "--layers", "conv1,conv2", "--threads", 1)
    assert "2 layers x 1 maps x top-2 = 4 projections" in out
    assert _number(r"max relative difference vs Captum x activation: (\S+) ", out) < 1e-4
    assert _number(r"ZF default vs Captum: (\S+) ", out) > 1e-3


def test_occlusion_benchmark_matches_captum():
    """Incremental and full re-inference agree, and our per-pixel map equals Captum's ``Occlusion`` map (the
    window positions coincide when ``(size - patch) % stride == 0``)."""
    out = _bench(
        "occlusion",
        *("--size", 64, "--patch", 16, "--stride", 8, "--num-classes", 10),
        *("--batch-size", 16, "--ppe1-sample", 0, "--threads", 1),
    )
    assert _number(r"max \|prob incremental - prob full\| = (\S+) ", out) < 1e-5
    assert "top class identical: True" in out
    diff = _number(r"max \|per-pixel \(ours\) - Captum map\| = (\S+) ", out)
    scale = _number(r"Captum map max \|\.\| (\S+)\)", out)
    assert diff <= 1e-4 * max(scale, 1.0)


def test_topk_overhead_benchmark_mines_every_conv_layer():
    """The mining pass hooks every conv layer of the model (reference: ``conv_layer_names`` of the same model)
    and the printed overhead is the two printed pass times' relative difference."""
    from zfnet_exp.diagnostics.layers import conv_layer_names
    from zfnet_exp.models import create_model

    out = _bench("topk_overhead", "--size", 64, "--images", 16, "--batch", 8, "--repeats", 1, "--threads", 1)
    layers = conv_layer_names(create_model("zfnet", num_classes=1000, input_size=64))
    assert f"layers {', '.join(layers)}, k=9" in out and len(layers) == 5
    plain = _number(r"plain validation pass : +(\S+) s", out)
    mined = _number(r"with top-9 mining {2}: +(\S+) s", out)
    overhead = _number(r"overhead {14}: +(\S+) %", out)
    assert plain > 0 and mined > 0
    if plain >= 0.1:  # the printed times are rounded to 0.01 s
        assert abs(overhead - 100 * (mined - plain) / plain) <= 100 * 0.02 / plain
