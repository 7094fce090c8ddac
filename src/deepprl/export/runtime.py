"""The exported graphs in onnxruntime, and `deepprl recommend` from them: no torch.

ExportedGraphs runs an export folder (deepprl.export.manifest); ExportedRecommender answers
recommend() for a run from its own export and its stored tables (deepprl.inference_data),
with the inputs of deepprl.data.inputs: the same answers as deepprl.recommender.Recommender
(tests/test_onnx_export.py). Only numpy, safetensors and onnxruntime are imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepprl.data.inputs import StepArrays, candidate_list, next_event_arrays, top_k_order
from deepprl.export.manifest import (
    EXPORT_DIR,
    MODEL_GRAPH,
    MODEL_INPUTS,
    POLICY_GRAPH,
    in_marker,
    read_manifest,
)
from deepprl.inference_data import InferenceTables
from deepprl.rundir import read_marker
from deepprl.runfiles import read_meta, read_tables


@dataclass(frozen=True)
class GraphScores:
    """What the graphs make of B rows and their candidates (NumPy)."""

    state: np.ndarray  # [B, S]
    alpha: np.ndarray  # [B, K] on the simplex
    y_hat: np.ndarray  # [B, C, K]
    scores: np.ndarray  # [B, C] sum_k alpha_k y_hat_k


class ExportedGraphs:
    """An export folder's two graphs in onnxruntime sessions (`threads` intra-op threads
    each: one user's forward pass is a few ms on one thread). `optimize`: onnxruntime's
    basic graph optimisations (constant folding, redundant nodes; for a service), which
    take longer to build (0.2 s against 0.07 s for the model graph here) than one
    recommendation takes. Not its extended ones: those fusions broke the Transformer
    encoder's graph (onnxruntime 1.32: a broadcast error at run time)."""

    def __init__(self, folder: str | Path, *, threads: int = 1, optimize: bool = True
                 ) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3  # errors only
        levels = ort.GraphOptimizationLevel
        options.graph_optimization_level = levels.ORT_ENABLE_BASIC if optimize \
            else levels.ORT_DISABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.model = ort.InferenceSession(str(self.folder / MODEL_GRAPH), options,
                                          providers=providers)
        self.policy = ort.InferenceSession(str(self.folder / POLICY_GRAPH), options,
                                           providers=providers)

    def predict(self, steps: StepArrays, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(state [B, S], y_hat [B, C, K]) of inputs `steps` and candidates items [B, C]."""
        feeds = {name: np.ascontiguousarray(getattr(steps, name))
                 for name in MODEL_INPUTS[:-1]}
        feeds["items"] = np.ascontiguousarray(items, dtype=np.int64)
        state, y_hat = self.model.run(None, feeds)
        return state, y_hat

    def weights(self, state: np.ndarray, context: np.ndarray) -> np.ndarray:
        """alpha [B, K] of the exported policy at states [B, S] and contexts [B, Fc]."""
        (alpha,) = self.policy.run(None, {"state": state, "context": context})
        return np.asarray(alpha)

    def score(self, steps: StepArrays, items: np.ndarray, alpha: np.ndarray | None = None
              ) -> GraphScores:
        """State, weights, predictions and utility; alpha [B, K], when given, replaces the
        policy's (frozen weights)."""
        state, y_hat = self.predict(steps, items)
        if alpha is None:
            alpha = self.weights(state, np.ascontiguousarray(steps.context))
        return GraphScores(state=state, alpha=alpha, y_hat=y_hat,
                           scores=np.einsum("bck,bk->bc", y_hat, alpha))


class ExportedRecommender:
    """Recommender.recommend for a weighted run, from its export and stored tables."""

    def __init__(self, graphs: ExportedGraphs, tables: InferenceTables) -> None:
        self.graphs, self.tables, self.data = graphs, tables, tables.data
        if graphs.manifest["history_length"] != tables.history_length:
            raise ValueError(f"{graphs.folder}: the export reads "
                             f"{graphs.manifest['history_length']} steps, the run's tables "
                             f"keep {tables.history_length}")

    def recommend(self, user_id: object, *, k: int = 10,
                  candidates: Sequence[object] | None = None,
                  at_time: float | None = None, exclude_seen: bool = False) -> dict[str, Any]:
        """Top-k for a user's next interaction, with alpha and every y_hat (the response
        of deepprl.recommender.Recommender.recommend)."""
        data = self.data
        user, items = candidate_list(data, user_id, k, candidates, exclude_seen,
                                     self.tables.seen)
        steps = next_event_arrays(data, user, self.tables.history_length, at_time)
        frozen = self.tables.frozen_weights
        alpha = frozen[user][None].copy() if frozen is not None \
            and np.isfinite(frozen[user]).all() else None
        out = self.graphs.score(steps, items[None].astype(np.int64), alpha)
        names = data.objective_names
        scores, y_hat = out.scores[0], out.y_hat[0]
        return {
            "user": str(user_id),
            "weights": dict(zip(names, out.alpha[0].tolist(), strict=True)),
            "items": [
                {"item": data.item_ids[int(items[j]) - 1], "score": float(scores[j]),
                 "predicted": dict(zip(names, y_hat[j].tolist(), strict=True))}
                for j in top_k_order(scores, k)
            ],
        }


def load_exported(run: str | Path) -> ExportedRecommender | None:
    """The torch-free recommender of a complete run that holds its own export (vouched by
    its completion marker) when onnxruntime is installed; None otherwise (old runs, item
    -level models): the caller then loads the run with PyTorch. RunError for a run that
    is missing, incomplete or corrupt, as deepprl.artifacts says it."""
    run = Path(run)
    config, schema = read_meta(run)  # checks the completion marker and every digest
    if not in_marker(read_marker(run) or {}):
        return None
    # an export whose graphs differed from PyTorch at training (deepprl.export.graphs
    # .compare) is not used in its place
    if not read_manifest(run / EXPORT_DIR).get("check", {}).get("within_tolerance"):
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    tables = read_tables(run, config, schema)
    # one process, one recommendation: building optimised graphs would cost more than it saves
    return ExportedRecommender(ExportedGraphs(run / EXPORT_DIR, optimize=False), tables)
