"""Provenance for results files: the command, the machine, the code version and the time.

Every figure ecgbio writes to ``experiments/results`` or ``benchmarks/results`` carries this, so a
number can always be traced to the command and hardware that produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The real public records beside the project (see ../shared/data/README.md); absent on most machines.
SHARED_DATA = Path(os.environ.get("ECGBIO_SHARED_DATA", REPO.parent / "shared" / "data"))


def command_line() -> str:
    """How this script was run, as a command that works from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        module = ".".join(script.relative_to(REPO).with_suffix("").parts)
        head = ["python", "-m", module]
    except ValueError:
        head = ["python", sys.argv[0]]
    return " ".join(head + sys.argv[1:])


def provenance() -> dict[str, Any]:
    """Command, hardware, git commit and time, for results files."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("ecgbio", "torch", "numpy", "neurokit2", "wfdb", "pytorch-metric-learning"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "command": command_line(),
        "versions": versions,
        "hardware": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "git_commit": commit,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
