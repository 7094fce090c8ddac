"""The service's forward pass from an ONNX export (`deepprl serve --onnx`).

OnnxScorer(batch, items) gives what deepprl.ranking.scoring.score_batch gives the service
(user state, alpha, y_hat, utility), from the export's graphs in onnxruntime
(deepprl.export.runtime) instead of the run's PyTorch modules; a user unknown to the log
(index 0) gets the training users' mean embedding inside the model graph, as the PyTorch
path swaps it in (deepprl.export.graphs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepprl.data.inputs import StepArrays
from deepprl.data.sequences import Batch
from deepprl.export.manifest import EXPORT_DIR, check_matches, read_manifest
from deepprl.export.runtime import ExportedGraphs
from deepprl.ranking.scoring import Scores
from deepprl.rundir import RunError


class OnnxScorer:
    """Scores batches with an export's graphs; thread-safe (onnxruntime sessions are)."""

    def __init__(self, graphs: ExportedGraphs) -> None:
        self.graphs = graphs
        self.history_length = int(graphs.manifest["history_length"])

    @classmethod
    def load(cls, run: Path, folder: Path | None = None) -> OnnxScorer:
        """The export in `folder` (default: the run's own, RUN/onnx), which must come from
        the run's weights; RunError saying how to make one otherwise."""
        folder = run / EXPORT_DIR if folder is None else folder
        if not folder.is_dir():
            raise RunError(f"{folder}: no ONNX export (runs trained before the export was "
                           f"added have none); write one with 'deepprl export --run {run} "
                           f"--out DIR' and serve it with --onnx-dir DIR")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise RunError("--onnx needs onnxruntime: pip install onnxruntime") from err
        check_matches(read_manifest(folder), run, folder)
        return cls(ExportedGraphs(folder))

    def __call__(self, batch: Batch, items: torch.Tensor) -> Scores:
        """State [B, S], alpha [B, K], y_hat [B, C, K] and scores [B, C] of a batch and its
        candidates items [B, C]."""
        steps = StepArrays(user=batch.user.numpy(), hist_items=batch.hist_items.numpy(),
                           hist_gaps=batch.hist_gaps.numpy(),
                           hist_context=batch.hist_context.numpy(),
                           hist_mask=batch.hist_mask.numpy(), context=batch.context.numpy())
        out = self.graphs.score(steps, np.asarray(items.numpy(), dtype=np.int64))
        return Scores(state=torch.from_numpy(out.state), alpha=torch.from_numpy(out.alpha),
                      y_hat=torch.from_numpy(out.y_hat), scores=torch.from_numpy(out.scores))
