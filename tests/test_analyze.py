"""The offline-analysis task: clear errors for a wrong checkpoint or analysis name (the analyses themselves
are tested beside their modules)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, "analyze.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_missing_checkpoint_is_one_clear_paragraph(tmp_path):
    r = _run("analysis=top9", f"ckpt={tmp_path}/nope.ckpt", f"paths.output_root={tmp_path}")
    assert r.returncode == 2, r.stderr
    assert "nope.ckpt does not exist" in r.stderr and "ckpt=<run folder>" in r.stderr
    assert "Traceback" not in r.stderr


def test_analysis_must_be_chosen(tmp_path):
    """No analysis chosen: a failure that names the missing key and lists every analysis config (reference:
    the files in conf/analysis), without a traceback, before anything is loaded."""
    r = _run(f"ckpt={tmp_path}/x.ckpt", f"paths.output_root={tmp_path}")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "analysis=" in r.stderr
    names = sorted(p.stem for p in (ROOT / "conf" / "analysis").glob("*.yaml"))
    assert names and all(n in r.stderr for n in names), (names, r.stderr)
    assert not list(tmp_path.rglob("*.json"))  # nothing ran
