"""Where a printed number comes from: the repository's commit and the versions of the packages
that compute it.

The study (ablate.py), the benchmarks and the demo print this beside their numbers: image
decoding, resizing and augmentation change with pillow, numpy and scipy, so a number is only
reproducible with the versions it was made with (requirements.txt pins them).
"""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parent
PACKAGES = ("torch", "numpy", "pillow", "scipy")  # the packages whose versions move the numbers


def commit() -> str:
    """The repository's commit, and whether tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{sha}{' with uncommitted changes' if dirty else ''}"


def versions() -> str:
    """'torch 2.13.0+cpu, numpy 2.3.4, ...': the installed versions of PACKAGES."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def provenance() -> str:
    """One line for a header: 'commit abc1234; torch ..., numpy ..., pillow ..., scipy ...'."""
    return f"commit {commit()}; {versions()}"
