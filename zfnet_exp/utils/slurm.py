"""What a SLURM partition can run, asked of the cluster itself before a sweep is submitted, and what a submitted
sweep is waiting for while it waits.

* :func:`impossible_request`: the launcher's request (CPUs, memory and GPUs per node, nodes, time limit)
  against the partition (``sinfo`` for its nodes, ``scontrol show partition`` for its limits). A job that asks
  more than any node of the partition has, or more than the partition allows, is accepted by ``sbatch`` and then
  sits PENDING for ever (reason ``PartitionConfig``, ``Resources``, ``PartitionTimeLimit`` ...) while the
  sweep prints nothing; this refuses it first, naming the key to change.
* :class:`SweepStatus`: while a submitted sweep waits for its jobs, one line at a steady interval (pending with
  their reasons, running, done, failed), on stdout and appended to ``<sweep dir>/sweep_status.log``.

Both only read the cluster (``sinfo``, ``scontrol``, ``squeue``); without those commands they do nothing.
"""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def _run(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def _number(text: str) -> int | None:
    """``"2"``, ``"2+"`` (sinfo: at least) -> 2; anything else (``UNLIMITED``) -> None."""
    m = re.match(r"(\d+)", text.strip())
    return int(m.group(1)) if m else None


def minutes(limit: str) -> int | None:
    """A SLURM time limit (``infinite``, ``UNLIMITED``, ``30``, ``30:00``, ``1:00:00``, ``2-12:00:00``) in
    minutes; None for no limit."""
    limit = limit.strip()
    if not limit or limit.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, h, m, sec = 0, 0, 0, 0
    if "-" in limit:  # days-hours[:minutes[:seconds]]
        d, rest = limit.split("-", 1)
        days = int(d)
        h, m, sec = [int(x) for x in ([*rest.split(":"), "0", "0"])[:3]]
    else:  # minutes | minutes:seconds | hours:minutes:seconds
        parts = [int(x) for x in limit.split(":")]
        if len(parts) == 1:
            m = parts[0]
        elif len(parts) == 2:
            m, sec = parts
        else:
            h, m, sec = parts[:3]
    return days * 1440 + h * 60 + m + (1 if sec else 0)


def _gpus(gres: str) -> int:
    """GPUs per node in a ``sinfo %G`` field such as ``gpu:4``, ``gpu:a100:4(S:0-1)`` or ``(null)``."""
    total = 0
    for item in gres.split(","):
        if item.startswith("gpu"):
            m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item)
            total += int(m.group(1)) if m else 0
    return total


def partition_resources(partition: str | None) -> dict[str, Any] | None:
    """``{"name", "partitions", "cpus", "mem_mb", "gpus", "nodes", "max_nodes", "max_minutes"}`` of ``partition``
    (None: the cluster's default partition): the largest node's CPUs / memory / GPUs, the node count, and the
    partition's own limits. ``{"name": ..., "partitions": [...]}`` only, when no such partition exists; None
    when the cluster cannot be asked."""
    listing = _run("sinfo", "-h", "-o", "%P")
    if listing is None:
        return None
    names = list(dict.fromkeys(p.strip() for p in listing.split() if p.strip()))
    default = next((p[:-1] for p in names if p.endswith("*")), None)
    partitions = [p.rstrip("*") for p in names]
    name = partition or default
    if name is None or name not in partitions:
        return {"name": name, "partitions": partitions}
    rows = _run("sinfo", "-h", "-p", name, "-o", "%c|%m|%G|%D")
    if not rows:
        return None
    cpus = mem = gpus = nodes = 0
    for row in rows.splitlines():
        c, m, g, d = (row.split("|") + ["", "", "", ""])[:4]
        cpus, mem, gpus = max(cpus, _number(c) or 0), max(mem, _number(m) or 0), max(gpus, _gpus(g))
        nodes += _number(d) or 0
    info = {"name": name, "partitions": partitions, "cpus": cpus, "mem_mb": mem, "gpus": gpus, "nodes": nodes}
    shown = _run("scontrol", "show", "partition", name, "-o") or ""
    fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
    info["max_nodes"] = _number(fields.get("MaxNodes", ""))
    info["max_cpus_per_node"] = _number(fields.get("MaxCPUsPerNode", ""))
    info["max_minutes"] = minutes(fields.get("MaxTime", ""))
    return info


def impossible_request(launcher: Any) -> str | None:
    """One paragraph naming every part of the launcher's request that the partition can never run and the key
    to change, or None (also when the cluster cannot be asked)."""
    part = partition_resources(launcher.get("partition"))
    if part is None:
        return None
    if "cpus" not in part:
        which = f"hydra.launcher.partition={part['name']}" if launcher.get("partition") else "the default partition"
        return (
            f"The SLURM request can never run: {which} does not exist on this cluster (sinfo lists "
            f"{', '.join(part['partitions']) or 'no partitions'}). Set hydra.launcher.partition to one of them. "
            f"Nothing was submitted."
        )
    where = f"partition {part['name']}"
    problems = []
    tasks = int(launcher.get("tasks_per_node") or 1)
    cpus = int(launcher.get("cpus_per_task") or 1) * tasks
    node_cpus = min(c for c in (part["cpus"], part.get("max_cpus_per_node")) if c)
    if node_cpus and cpus > node_cpus:
        fit = max(1, node_cpus // tasks)
        problems.append(
            f"{cpus} CPUs per node (hydra.launcher.cpus_per_task={launcher.get('cpus_per_task')} x {tasks} task(s)) "
            f"but the nodes of {where} have at most {node_cpus}: set hydra.launcher.cpus_per_task={fit}"
        )
    mem_gb = launcher.get("mem_gb")
    if mem_gb and part["mem_mb"] and float(mem_gb) * 1024 > part["mem_mb"]:
        problems.append(
            f"{mem_gb} GB of memory per node (hydra.launcher.mem_gb) but the nodes of {where} have at most "
            f"{part['mem_mb'] / 1024:.1f} GB: set hydra.launcher.mem_gb={int(part['mem_mb'] // 1024) or 1} or less"
        )
    gpus = int(launcher.get("gpus_per_node") or 0)
    if gpus > part["gpus"]:
        problems.append(
            f"{gpus} GPU(s) per node (hydra.launcher.gpus_per_node, from trainer.devices) but the nodes of {where} "
            f"have {part['gpus'] or 'none'}: set trainer.devices={part['gpus']} (or trainer=cpu), or pick a GPU "
            f"partition (hydra.launcher.partition=...)"
        )
    nodes = int(launcher.get("nodes") or 1)
    node_limit = min(n for n in (part["nodes"], part.get("max_nodes")) if n) if part["nodes"] else None
    if node_limit and nodes > node_limit:
        problems.append(f"{nodes} nodes but {where} has {node_limit}: set trainer.num_nodes={node_limit}")
    timeout = launcher.get("timeout_min")
    if timeout and part.get("max_minutes") and int(timeout) > part["max_minutes"]:
        problems.append(
            f"a time limit of {timeout} minutes (hydra.launcher.timeout_min) but {where} allows "
            f"{part['max_minutes']}: set hydra.launcher.timeout_min={part['max_minutes']} (a longer training "
            f"continues after a requeue)"
        )
    if not problems:
        return None
    return (
        f"The SLURM request can never run on {where} (sinfo / scontrol show partition): {'; '.join(problems)}. "
        f"sbatch would accept it and the jobs would stay PENDING for ever; nothing was submitted."
    )


class SweepStatus:
    """Every ``every_s`` seconds, one line on the jobs submitit submitted into ``<sweep_dir>/.submitit``:
    ``<n> pending (<reason> ...), <n> running, <n> done, <n> failed`` (a job with a submitit result file counts
    by it, the others by ``squeue``). Printed and appended to ``<sweep_dir>/sweep_status.log``."""

    def __init__(self, sweep_dir: str | Path, every_s: float):
        self.sweep_dir, self.every_s = Path(sweep_dir), float(every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and write the final line."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=60)
            self.report()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.report()

    def job_ids(self) -> list[str]:
        folder = self.sweep_dir / ".submitit"
        if not folder.is_dir():
            return []
        jobs = [  # an array's own folder holds only its submission script; each job has <id>_submitted.pkl
            p.name
            for p in folder.iterdir()
            if re.fullmatch(r"\d+(_\d+)?", p.name) and (p / f"{p.name}_submitted.pkl").is_file()
        ]
        return sorted(jobs, key=lambda j: [int(x) for x in j.split("_")])

    def counts(self) -> tuple[int, Counter, Counter]:
        """(jobs, {state: n}, {pending reason: n})."""
        ids = self.job_ids()
        states: Counter = Counter()
        reasons: Counter = Counter()
        if not ids:
            return 0, states, reasons
        listed = _run("squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r") or ""
        seen = {}
        for line in listed.splitlines():
            job, state, reason = (line.split("|") + ["", ""])[:3]
            seen[job.strip()] = (state.strip(), reason.strip())
        for job in ids:
            finished = self._finished(job)  # the result file first: SLURM may still list it as running a moment
            state, reason = (finished, "") if finished != "unknown" else seen.get(job, ("unknown", ""))
            if state == "PENDING":
                states["pending"] += 1
                reasons[reason or "None"] += 1
            elif state in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED"):
                states["running"] += 1
            elif state == "COMPLETED":
                states["done"] += 1
            elif state in FAILED_STATES or state == "error":
                states["failed"] += 1
            else:
                states["unknown"] += 1
        return len(ids), states, reasons

    def _finished(self, job: str) -> str:
        """State of a job no longer in the queue, from submitit's result file: COMPLETED, error or unknown."""
        for f in (self.sweep_dir / ".submitit" / job).glob("*_result.pkl"):
            try:
                with open(f, "rb") as fh:
                    outcome = pickle.load(fh)[0]
            except Exception:  # noqa: BLE001 - a result being written, or unreadable: not known yet
                return "unknown"
            return "COMPLETED" if outcome == "success" else "error"
        return "unknown"

    def line(self) -> str:
        n, states, reasons = self.counts()
        if not n:
            return f"sweep {self.sweep_dir.name} at {time.strftime('%H:%M:%S')}: no job submitted yet"
        why = ", ".join(f"{r}: {k}" for r, k in sorted(reasons.items()))
        parts = [f"{states['pending']} pending" + (f" ({why})" if why else "")]
        parts += [f"{states[s]} {s}" for s in ("running", "done", "failed")]
        if states["unknown"]:
            parts.append(f"{states['unknown']} unknown")
        return f"sweep {self.sweep_dir.name} at {time.strftime('%H:%M:%S')}: {n} job(s): {', '.join(parts)}"

    def report(self) -> None:
        text = self.line()
        print(text, flush=True)
        try:
            with open(self.sweep_dir / "sweep_status.log", "a") as f:
                f.write(text + "\n")
        except OSError:
            pass
