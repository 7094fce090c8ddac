"""An ONNX export's files and its manifest.json, without torch.

An export is a folder: MODEL_GRAPH (history + candidates -> user state, y_hat),
POLICY_GRAPH (state + context -> alpha), IDS_FILE (the user and item ids of the indices
the graphs take) and MANIFEST_FILE, which names every graph's inputs and outputs, the
objectives, the context columns and encoders, the history length, the opset, and which
run weights it was exported from (their SHA-256, and the service's model version).
A trained weighted run holds its own export under RUN/EXPORT_DIR, covered by the run's
completion marker; `deepprl export` writes one anywhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from deepprl import __version__
from deepprl.io import sha256_file
from deepprl.rundir import RunError
from deepprl.runfiles import ACTOR_FILE, MODEL_FILE, read_json

FORMAT = 1  # of the manifest; a loader refuses another
EXPORT_DIR = "onnx"
MODEL_GRAPH, POLICY_GRAPH = "model.onnx", "policy.onnx"
MANIFEST_FILE, IDS_FILE = "manifest.json", "ids.json"
OPSET = 17  # LayerNormalization (the DDPG actor) is one operator from opset 17
EXPORTER = "torch.onnx.export, TorchScript exporter (dynamo=False)"

MODEL_INPUTS = ("user", "hist_items", "hist_gaps", "hist_context", "hist_mask", "context",
                "items")
MODEL_OUTPUTS = ("state", "y_hat")
POLICY_INPUTS = ("state", "context")
POLICY_OUTPUTS = ("alpha",)
_KEYS = {"format", "deepprl_version", "model_version", "weights", "objectives",
         "history_length", "graphs"}


def model_version(run: Path) -> str:
    """deepprl version + the first 12 hex digits of the SHA-256 of the weight files: what
    the service reports (deepprl.serve.service.model_version calls this)."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, ACTOR_FILE):
        digest.update((run / name).read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def weight_digests(run: Path) -> dict[str, str]:
    """SHA-256 of the run's weight files: an export names the weights it came from."""
    return {name: sha256_file(run / name) for name in (MODEL_FILE, ACTOR_FILE)}


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an export folder, checked (format, keys, graph files present);
    RunError naming the folder otherwise."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise RunError(f"{folder}: no {MANIFEST_FILE}; is this a folder written by "
                       f"'deepprl export'?")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not set(manifest) >= _KEYS:
        raise RunError(f"{path}: incomplete manifest; expected the keys {sorted(_KEYS)}")
    if manifest["format"] != FORMAT:
        raise RunError(f"{path}: export format {manifest['format']!r}, this version reads "
                       f"format {FORMAT}; export the run again")
    for name in (MODEL_GRAPH, POLICY_GRAPH, IDS_FILE):
        if not (folder / name).is_file():
            raise RunError(f"{folder}: missing {name}; export the run again")
    return manifest


def check_matches(manifest: dict[str, Any], run: Path, folder: Path) -> None:
    """RunError unless the export was made from the weights the run holds now."""
    if manifest["weights"] != weight_digests(run):
        raise RunError(f"{folder}: exported from other weights than those of {run} (their "
                       f"SHA-256 differ); export it again with 'deepprl export --run {run} "
                       f"--out {folder}'")


def in_marker(marker: dict[str, Any]) -> bool:
    """A completion marker (deepprl.rundir) that vouches for the run's own export."""
    files = marker.get("files", {})
    return all(f"{EXPORT_DIR}/{name}" in files
               for name in (MODEL_GRAPH, POLICY_GRAPH, MANIFEST_FILE, IDS_FILE))
