"""Results records: the raw output of a measurement, kept as small files a reader can open and a later run can be
compared with (as timm keeps ``results/*.csv``).

Why: the README's figures (accuracy, wall time, speed-ups, ...) came from one-off runs whose output was lost; a
figure without its raw output cannot be checked or compared. Every command that prints figures for the README
(the benchmarks, the experiment summaries, :mod:`zfnet_exp.experiments.record_run` for training and analysis run
folders) writes through :func:`write_record`, so every record has the same fields:

``<out>/<name>/<YYYY-MM-DD>_<machine tag>[_<n>].json``: the exact command (and ``sys.argv``), the date and time
(UTC), the machine (CPU model, cores, memory, GPUs, load average), the versions (Python, torch, torchvision,
lightning, ... and the project's git commit), an optional ``source`` (what was read, e.g. a run folder), and the
figures as rows ``{"name", "value", "unit"}``;
``<same stem>.txt``: the same header in words, then the text the command printed, verbatim.

A second record on the same day and machine gets ``_2``, ``_3`` ...: runs repeated for a range are all kept.
The machine tag is ``$ZFNET_RECORD_TAG`` when set, else the GPU's name when there is one, else the CPU model and
its core count (``intel-xeon-2c``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_DIR = "results"
# distributions whose versions every record states (those installed)
PACKAGES = ("torch", "torchvision", "lightning", "captum", "numpy", "pillow", "hydra-core", "timm", "litdata")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Figure:
    """One measured number: ``name`` (``total/speedup``, ``epoch_03/aliasing`` ...), its value and unit."""

    name: str
    value: float | int | str | bool | None
    unit: str = ""


def add_record_option(parser: argparse.ArgumentParser) -> None:
    """``--record [DIR]``: off by default; without DIR the record goes to ``./results``."""
    parser.add_argument(
        "--record",
        nargs="?",
        const=DEFAULT_DIR,
        default=None,
        metavar="DIR",
        help=f"also keep this run's figures as a results record in DIR/<name>/ (default DIR: {DEFAULT_DIR}): "
        "command, date, machine, versions, the figures and the printed text",
    )


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, logical cores (all and usable by this process), memory,
    GPUs, OS, and the 1-minute load average (other work on a shared machine shows here)."""
    cpu = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "os": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    return info


def versions() -> dict[str, Any]:
    """Python, the installed packages of :data:`PACKAGES`, CUDA when torch has it, and the project's git commit
    (``git_dirty``: tracked files differ from that commit)."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.version.cuda:
        out["torch_cuda"] = torch.version.cuda  # the CUDA torch was built with (a GPU, if any: machine.gpus)
    out.update(git_commit())
    return out


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` of the checkout the package runs from (empty outside a git checkout)."""
    if not (root / ".git").exists():  # an installed package: its folder's parents are no checkout of it
        return {}
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def machine_tag(info: dict[str, Any]) -> str:
    """Short name of the machine for the file name (the JSON holds the details)."""
    if os.environ.get("ZFNET_RECORD_TAG"):
        return _slug(os.environ["ZFNET_RECORD_TAG"])
    if info.get("gpus"):
        return _slug(info["gpus"][0]) + (f"-x{len(info['gpus'])}" if len(info["gpus"]) > 1 else "")
    cpu = re.sub(r"\((r|tm)\)|\b(cpu|processor|\d+-core)\b|@.*", " ", str(info.get("cpu", "cpu")), flags=re.I)
    return f"{_slug(cpu)}-{info.get('usable_cores')}c"


def write_record(
    name: str,
    figures: Iterable[Figure],
    printed: str,
    out: str | Path = DEFAULT_DIR,
    *,
    command: str | None = None,
    source: dict[str, Any] | None = None,
    when: datetime | None = None,
) -> Path:
    """Write the record ``<out>/<name>/<date>_<machine tag>[_n].json`` and its ``.txt``; return the JSON's path.
    ``command`` defaults to this process's command line; ``when`` (UTC) to now."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    info = machine()
    record = {
        "name": name,
        "command": command or shlex.join(["python", *sys.argv]),
        "argv": list(sys.argv),
        "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": info,
        "versions": versions(),
        "source": source or {},
        "figures": [_clean(asdict(f)) for f in figures],
    }
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{when:%Y-%m-%d}_{machine_tag(info)}"
    n = 1
    while (folder / f"{stem}{'' if n == 1 else f'_{n}'}.json").exists():
        n += 1
    path = folder / f"{stem}{'' if n == 1 else f'_{n}'}.json"
    record["printed_file"] = path.with_suffix(".txt").name
    path.write_text(_json(record))
    path.with_suffix(".txt").write_text(_header(record) + "\n" + printed)
    return path


def read_record(path: str | Path) -> dict[str, Any]:
    """A record's JSON, with ``figures`` also as ``values``: ``{name: value}``, and the printed text as ``printed``."""
    path = Path(path)
    record = json.loads(path.read_text())
    record["values"] = {f["name"]: f["value"] for f in record["figures"]}
    txt = path.with_suffix(".txt")
    if txt.is_file():
        record["printed"] = txt.read_text().split("\n\n", 1)[-1]
    return record


@dataclass
class Recording:
    """The figures a command adds inside :func:`recording`; written when the block ends without an error."""

    figures: list[Figure] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def add(self, name: str, value, unit: str = "") -> None:
        self.figures.append(Figure(name, value, unit))

    def extend(self, figures: Iterable[Figure]) -> None:
        self.figures.extend(figures)


@contextlib.contextmanager
def recording(
    name: str, out: str | Path | None, program: str, argv: Sequence[str] | None = None
) -> Iterator[Recording]:
    """Inside the block, stdout is also copied; at its end (no exception) the figures added to the yielded
    :class:`Recording` and the copied text become the record ``<out>/<name>/...`` (nothing when ``out`` is None).
    ``program`` is how the command is started (``python -m zfnet_exp.benchmarks.loader``), ``argv`` its
    arguments (default: ``sys.argv[1:]``); together they are the record's command."""
    rec = Recording()
    if out is None:
        yield rec
        return
    copy = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, copy)):
        yield rec
    args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([program, shlex.join(args)]).strip()
    rec.path = write_record(name, rec.figures, copy.getvalue(), out, command=command, source=rec.source)
    print(f"record: {rec.path} (printed text: {rec.path.with_suffix('.txt').name})", flush=True)


def numeric_figures(row: dict[str, Any], prefix: str = "", units: dict[str, str] | None = None) -> list[Figure]:
    """The numbers of a result row (a dict) as figures ``<prefix><key>``; units by key (suffix ``_s``: seconds)."""
    units = units or {}
    out = []
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        unit = units.get(key, "s" if key.endswith("_s") else "%" if key.endswith("_pct") else "")
        out.append(Figure(f"{prefix}{key}", value, unit))
    return out


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s: str) -> int:
        for stream in self.streams:
            stream.write(s)
        return len(s)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def _header(record: dict[str, Any]) -> str:
    m, v = record["machine"], record["versions"]
    gpus = ", ".join(m["gpus"]) or "none"
    lines = [
        f"# record: {record['name']}",
        f"# command: {record['command']}",
        f"# date: {record['date']}",
        f"# machine: {m['cpu']}, {m['usable_cores']} of {m['cores']} cores usable, {m['memory_gib']} GiB, "
        f"GPUs: {gpus}; {m['os']}; load average {m['load_avg_1m']}",
        "# versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]
    if record["source"]:
        lines.append("# source: " + json.dumps(record["source"]))
    return "\n".join(lines) + "\n"


def _json(record: dict[str, Any]) -> str:
    """One line per top-level key and one per figure: readable, and a later record diffs line by line."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in record.items() if k != "figures"]
    figures = ",\n".join(f"  {json.dumps(f, allow_nan=False)}" for f in record["figures"])
    lines.append(f' "figures": [\n{figures}\n ]')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _clean(figure: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such values are stored as null."""
    value = figure["value"]
    if isinstance(value, float) and not math.isfinite(value):
        figure["value"] = None
    return figure


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"


def _cpuinfo_field(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _gpus() -> list[str]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout.strip()
