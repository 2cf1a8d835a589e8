"""What produced a model: the code version and the library versions."""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from pathlib import Path

_LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "skops", "scipy", "Django")


@functools.cache
def code_version() -> str:
    """The git commit of the running code, or CASEBOOK_CODE_VERSION where there is no checkout
    (a container image sets it at build time)."""
    explicit = os.environ.get("CASEBOOK_CODE_VERSION")
    if explicit:
        return explicit
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
