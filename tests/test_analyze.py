"""The offline-analysis task: clear errors for a wrong checkpoint or analysis name (the analyses themselves
are tested beside their modules)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, run_entry_task


def _run(*args):
    return subprocess.run([sys.executable, "analyze.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_missing_checkpoint_is_one_clear_paragraph(tmp_path):
    """In process (``run_entry_task``: what ``python analyze.py`` runs once Hydra has composed its command line;
    tests/test_checkpoint_safety.py refuses a file through the real script)."""
    code, err = run_entry_task("analyze", ["analysis=top9", f"ckpt={tmp_path}/nope.ckpt"], tmp_path / "out")
    assert code == 2, err
    assert "nope.ckpt does not exist" in err and "ckpt=<run folder>" in err
    assert "Traceback" not in err


def test_analysis_must_be_chosen(tmp_path):
    """Without analysis=<name>, Hydra stops at composition and lists the choices (reference: conf/analysis/)."""
    r = _run(f"ckpt={tmp_path}/x.ckpt", f"paths.output_root={tmp_path}")
    assert r.returncode == 2 and "You must specify 'analysis'" in r.stderr, r.stderr
    assert r.stderr.strip().startswith("error: ") and r.stderr.strip().count("\n") == 0  # one paragraph
    choices = sorted(p.stem for p in (ROOT / "conf" / "analysis").glob("*.yaml"))
    listed = r.stderr.split("The options are: ")[1].split(". ")[0].split(", ")
    assert listed == choices
    assert not list(tmp_path.rglob("*.png"))  # nothing ran
