"""Where a run happened: CPU, cores, memory, Python, OS, and the source revision."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                name = line.partition("=")[2].strip('"')
                return f"{name}, {platform.system()} {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _revision(repository: Path) -> str:
    """The git commit, marked "+ local changes" when the work tree differs (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} + local changes" if dirty else commit


def describe(repository: Path) -> dict[str, str]:
    """The machine and software of this run, for the report."""
    cpu = _cpuinfo()
    physical = cpu.get("cpu cores")
    logical = os.cpu_count() or 0
    cores = f"{logical} logical" + (f", {physical} physical per socket" if physical else "")
    return {
        "CPU": cpu.get("model name", platform.processor() or "unknown"),
        "cores": cores,
        "RAM": _memory(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": _os(),
        "revision": _revision(repository),
    }
