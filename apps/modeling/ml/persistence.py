"""Model files in the skops format, loaded only when every type in them is on a known list.

Plain pickle would run any code a tampered file carries; skops refuses types it was not told
to trust.

skops reads a file's schema and numpy's array headers with the `ast` module, and CPython 3.11's
`ast` keeps one recursion counter for the whole interpreter: two loads in two threads at once
can fail with "SystemError: AST constructor recursion depth mismatch" (reproduced in
tests/test_model_serving.py). So every load in the process takes one lock; a second model
file waits for the first, which is a few tens of milliseconds once per version and process.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import skops.io as sio
from sklearn.pipeline import Pipeline

# Types our pipelines contain beyond what skops trusts by default.
TRUSTED_TYPES: list[str] = [
    "numpy.dtype",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "collections.OrderedDict",
    "builtins.slice",
    "sklearn.tree._tree.Tree",
]


# One for the process, not one per file: the race is in the interpreter, whatever the file.
_LOAD_LOCK = threading.Lock()


class UntrustedModelFile(Exception):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_save(pipeline: Pipeline, path: Path) -> str:
    """Write the model atomically (no half-written file under the final name); return sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    sio.dump(pipeline, partial)
    sha = file_sha256(partial)
    os.replace(partial, path)
    return sha


def model_load(path: Path, expected_sha256: str | None = None) -> Pipeline:
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise UntrustedModelFile(f"{path.name} does not match its recorded sha256")
    with _LOAD_LOCK:
        untrusted = sio.get_untrusted_types(file=path)
        unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
        if unknown:
            raise UntrustedModelFile(f"{path.name} holds types not on the trusted list: {unknown}")
        return sio.load(path, trusted=untrusted)
