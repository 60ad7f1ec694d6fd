"""What the offline tasks share: progress that stays readable in a log file (the tqdm bar of the plain loops and
the Lightning loops of eval and transfer), and the device option."""

from __future__ import annotations

import subprocess
import sys

import torch
from helpers import ROOT

from zfnet_exp.utils.devices import torch_device, trainer_device

LOOP = """
from zfnet_exp.utils.progress import progress_bar
for _ in progress_bar(range(3), desc="features layer 7", unit="batch"):
    pass
"""


def test_progress_bar_writes_whole_lines_into_a_log_file(tmp_path):
    """``python ... > log``: the bar is complete lines (no carriage-return redraws), a first and a last one with
    the count; reference: the log file's bytes."""
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        subprocess.run([sys.executable, "-c", LOOP], cwd=ROOT, stdout=out, stderr=subprocess.PIPE, check=True)
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert lines[0].startswith("features layer 7:   0%") and "0/3" in lines[0]
    assert lines[-1].startswith("features layer 7: 100%") and "3/3" in lines[-1]


def test_lightning_loops_print_plain_lines_where_stdout_is_not_a_terminal(tmp_path, capsys):
    """eval's test loop under pytest's captured (non-terminal) stdout: PlainProgress lines, a first with the number
    of batches and a last at the final batch (12 images in batches of 5 = 3 batches)."""
    from test_eval import STANDARD, _Linear

    from zfnet_exp.tasks.eval import Member, run_protocols

    images = torch.randint(0, 256, (12, 3, 10, 10), dtype=torch.uint8)
    members = [Member(None, "lin", {}, 7, 8, STANDARD, _Linear(0, 8, 7).eval())]
    dataset = list(zip(images, torch.randint(0, 7, (12,)), range(12)))
    run_protocols(members, dataset, 8, "cpu", batch_size=5, progress=True, out_dir=tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert "evaluating: 3 batches" in out
    assert any(line.startswith("evaluating: batch 3/3 |") for line in out), out


def test_device_option_spellings():
    """``auto`` is the GPU when one is visible, else the CPU, for torch and for Lightning alike."""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert torch_device("auto").type == expected
    assert trainer_device("auto")["accelerator"] == ("gpu" if expected == "cuda" else "cpu")
    assert trainer_device("cuda:1") == {"accelerator": "gpu", "devices": [1]}
    assert trainer_device("cpu") == {"accelerator": "cpu", "devices": 1}
