"""Export a weighted run to ONNX: the stage-1 model and the weight policy it serves.

Two graphs (names in deepprl.export.manifest), batch and candidate axes dynamic:
- model: user [B] int64, hist_items [B, L] int64, hist_gaps [B, L] float32,
  hist_context [B, L, Fc] float32, hist_mask [B, L] bool, context [B, Fc] float32,
  items [B, C] int64 -> state [B, S] float32, y_hat [B, C, K] float32. User index 0 (a
  user unknown to the log) gets the training users' mean embedding, as `deepprl serve`
  gives a cold-start user (deepprl.ranking.history.mean_user_embedding);
- policy: state [B, S], context [B, Fc] -> alpha [B, K]: the learned policy, or the static
  alpha of a run whose pessimism check fell back to it (served.json).

The TorchScript exporter (dynamo=False) traces one forward pass: it needs no onnxscript,
exports these small graphs in well under a second, and the Python loop over the L history
steps unrolls into the graph (L is fixed by the run). docs/serving.md says why not dynamo.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepprl import __version__
from deepprl.artifacts import RunError, load_weighted_run, served_record
from deepprl.config import RunConfig
from deepprl.data.inputs import StepArrays, clock_columns, next_event_arrays
from deepprl.data.sequences import Batch
from deepprl.export.manifest import (
    EXPORT_DIR,
    EXPORTER,
    FORMAT,
    IDS_FILE,
    MANIFEST_FILE,
    MODEL_GRAPH,
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    OPSET,
    POLICY_GRAPH,
    POLICY_INPUTS,
    POLICY_OUTPUTS,
    model_version,
    weight_digests,
)
from deepprl.inference_data import InferenceTables
from deepprl.io import write_json
from deepprl.models.network import PredictorModel
from deepprl.ranking.history import mean_user_embedding
from deepprl.recommender import Recommender
from deepprl.runfiles import SCHEMA_FILE, read_json, read_meta, read_tables

TOLERANCE = 1e-5
"""Largest |ONNX - PyTorch| of any output on the check's inputs for an export that
`deepprl recommend` uses in place of PyTorch (float32 rounding is ~1e-7 here)."""


class ExportedModel(nn.Module):
    """The stage-1 model as one traceable forward: the Batch fields and candidates as
    separate tensors -> (state [B, S], y_hat [B, C, K]); user 0 -> the mean embedding.
    Every input stays in the graph, read or not, so every export takes the same names."""

    def __init__(self, model: PredictorModel) -> None:
        super().__init__()
        self.model = model
        self.cold_user: torch.Tensor
        self.register_buffer("cold_user", mean_user_embedding(model))  # [Du]

    def forward(self, user: torch.Tensor, hist_items: torch.Tensor, hist_gaps: torch.Tensor,
                hist_context: torch.Tensor, hist_mask: torch.Tensor, context: torch.Tensor,
                items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(user=user, hist_items=hist_items, hist_gaps=hist_gaps,
                      hist_context=hist_context, hist_mask=hist_mask, context=context)
        state = self.model.state(batch)  # [B, S] = [h ; user embedding]
        du = self.cold_user.shape[0]
        h, known = state[:, : state.shape[1] - du], state[:, state.shape[1] - du :]
        state = torch.cat([h, torch.where((user == 0)[:, None], self.cold_user, known)], -1)
        # encoders that take the gaps from the context alone never read hist_gaps: an exact
        # zero of it keeps the input in the graph (the exporter drops unused inputs)
        state = state + hist_gaps[:, :1] * 0.0
        return state, self.model.predict(state, context, items)


class ExportedPolicy(nn.Module):
    """policy(state, context) -> alpha, reading both inputs even where the policy ignores
    one (static alpha, use_context off): every export takes the same named inputs."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, state: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        alpha: torch.Tensor = self.policy(state, context)
        # a zero that depends on both inputs keeps them in the graph (exact: alpha + 0)
        unused = (state[:, :1] * 0.0) + (context[:, :1] * 0.0)  # [B, 1]
        return alpha + unused


def sample_inputs(tables: InferenceTables, *, users: int = 64, candidates: int = 20,
                  seed: int = 0) -> tuple[StepArrays, np.ndarray]:
    """Real inputs from a run's stored tables: the next event of up to `users` users (and
    one unknown user, index 0, with an empty history) and `candidates` items each
    (seeded); for tracing and for comparing the graphs with PyTorch."""
    data, length = tables.data, tables.history_length
    rng = np.random.default_rng(seed)
    known = np.unique(data.user)
    chosen = np.sort(rng.choice(known, size=min(users, len(known)), replace=False))
    rows = [next_event_arrays(data, int(u), length) for u in chosen]
    cold = StepArrays(user=np.zeros(1, np.int64), hist_items=np.zeros((1, length), np.int64),
                      hist_gaps=np.zeros((1, length), np.float32),
                      hist_context=np.zeros((1, length, data.context.shape[1]), np.float32),
                      hist_mask=np.zeros((1, length), bool), context=rows[0].context)
    rows.append(cold)
    steps = StepArrays(**{name: np.concatenate([getattr(r, name) for r in rows])
                          for name in StepArrays.__dataclass_fields__})
    width = min(candidates, data.n_items)
    items = np.stack([np.sort(rng.choice(data.n_items, size=width, replace=False)) + 1
                      for _ in rows]).astype(np.int64)
    return steps, items


def _feeds(steps: StepArrays, items: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(getattr(steps, name)) for name in MODEL_INPUTS[:-1]} \
        | {"items": np.ascontiguousarray(items, dtype=np.int64)}


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            inputs: tuple[str, ...], outputs: tuple[str, ...],
            axes: dict[str, dict[int, str]]) -> None:
    """torch.onnx.export of one graph (TorchScript exporter), written atomically."""
    from deepprl.io import atomic_path

    module.eval()
    # nn.TransformerEncoderLayer's fused inference kernel has no ONNX form: trace the
    # layer's own operators (the same function)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with atomic_path(path) as temp, torch.no_grad(), warnings.catch_warnings():
            # the exporter's notices (legacy exporter, traced shapes) are not the user's
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(temp), input_names=list(inputs),
                              output_names=list(outputs), dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _io(names: tuple[str, ...], arrays: list[np.ndarray], axes: dict[str, dict[int, str]]
        ) -> dict[str, dict[str, Any]]:
    """The manifest's description of graph inputs or outputs: dtype and shape, named
    dimensions where dynamic."""
    return {name: {"dtype": str(a.dtype),
                   "shape": [axes.get(name, {}).get(i, int(n)) for i, n in enumerate(a.shape)]}
            for name, a in zip(names, arrays, strict=True)}


def export_graphs(out: Path, run: Path, config: RunConfig, recommender: Recommender,
                  tables: InferenceTables) -> dict[str, Any]:
    """Write both graphs, IDS_FILE and MANIFEST_FILE of a loaded weighted run into `out`
    (created); returns the manifest, with the graphs' largest difference from PyTorch on
    real inputs (sample_inputs) under "check"."""
    out.mkdir(parents=True, exist_ok=True)
    steps, items = sample_inputs(tables)
    model, policy = ExportedModel(recommender.model), ExportedPolicy(recommender.policy)
    model_axes = {name: {0: "batch"} for name in (*MODEL_INPUTS, *MODEL_OUTPUTS)}
    model_axes["items"] = model_axes["y_hat"] = {0: "batch", 1: "candidates"}
    args = tuple(torch.from_numpy(a) for a in _feeds(steps, items).values())
    _export(model, args, out / MODEL_GRAPH, MODEL_INPUTS, MODEL_OUTPUTS, model_axes)
    with torch.no_grad():
        state, y_hat = model(*args)
        alpha = policy(state, args[5])
    policy_axes = {name: {0: "batch"} for name in (*POLICY_INPUTS, *POLICY_OUTPUTS)}
    _export(policy, (state, args[5]), out / POLICY_GRAPH, POLICY_INPUTS, POLICY_OUTPUTS,
            policy_axes)
    data = tables.data
    write_json(out / IDS_FILE, {"user_ids": list(data.user_ids), "item_ids": list(data.item_ids)})
    feeds = _feeds(steps, items)
    manifest = {
        "format": FORMAT, "deepprl_version": __version__, "model_version": model_version(run),
        "weights": weight_digests(run), "exporter": EXPORTER, "opset": OPSET,
        "torch_version": torch.__version__, "model": config.name,
        "encoder": config.model.encoder, "predictor": config.model.predictor,
        "policy": config.policy.algorithm, "served": served_record(run)["served"],
        "objectives": list(data.objective_names), "history_length": tables.history_length,
        "state_dim": int(state.shape[1]), "users": data.n_users, "items": data.n_items,
        "context": list(data.context_names), "clock_columns": clock_columns(data),
        "feature_encoders": tables.encoding,
        "cold_user": "user index 0 (an id not in ids.json) gets the training users' mean "
                     "user embedding; its history may be empty (hist_mask all false)",
        "graphs": {
            "model": {"file": MODEL_GRAPH,
                      "inputs": _io(MODEL_INPUTS, list(feeds.values()), model_axes),
                      "outputs": _io(MODEL_OUTPUTS, [state.numpy(), y_hat.numpy()],
                                     model_axes)},
            "policy": {"file": POLICY_GRAPH,
                       "inputs": _io(POLICY_INPUTS, [state.numpy(), feeds["context"]],
                                     policy_axes),
                       "outputs": _io(POLICY_OUTPUTS, [alpha.numpy()], policy_axes)}},
        "ids": IDS_FILE,
    }
    write_json(out / MANIFEST_FILE, manifest)  # the graphs' description, read by compare
    # no wall clock in the manifest: a resumed run's files equal an uninterrupted run's
    manifest["check"] = compare(out, recommender, steps, items)
    write_json(out / MANIFEST_FILE, manifest)
    return manifest


def compare(folder: Path, recommender: Recommender, steps: StepArrays, items: np.ndarray
            ) -> dict[str, Any]:
    """Largest |ONNX - PyTorch| of state, y_hat and alpha on the inputs, the graphs run by
    onnxruntime (deepprl.export.runtime) and the run's modules by deepprl.ranking."""
    from deepprl.export.runtime import ExportedGraphs
    from deepprl.ranking.scoring import score_batch

    graphs = ExportedGraphs(folder)
    got = graphs.score(steps, items)
    cold = torch.from_numpy(steps.user == 0)
    want = score_batch(recommender.model, recommender.policy, Batch.of(steps),
                       torch.from_numpy(items), cold=cold,
                       user_embedding=mean_user_embedding(recommender.model))
    diffs = {f"max_abs_diff_{name}": float(np.abs(g - w.numpy()).max())
             for name, g, w in (("state", got.state, want.state),
                                ("y_hat", got.y_hat, want.y_hat),
                                ("alpha", got.alpha, want.alpha),
                                ("scores", got.scores, want.scores))}
    return {"rows": len(items), "candidates": int(items.shape[1]), **diffs,
            "tolerance": TOLERANCE,
            "within_tolerance": all(d <= TOLERANCE for d in diffs.values())}


def export_run(run: str | Path, out: str | Path) -> dict[str, Any]:
    """`deepprl export --format onnx`: the run's graphs and manifest into `out`."""
    run, out = Path(run), Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a directory")
    if run.resolve() in (out.resolve(), *out.resolve().parents):
        # the run's own export (RUN/onnx) is written by train and vouched by its marker
        raise RunError(f"--out {out}: inside the run directory {run}, whose files its "
                       f"completion marker vouches for; choose a folder outside it")
    config, recommender = load_weighted_run(run, serving=True)
    tables = read_tables(run, *read_meta(run))
    return export_graphs(out, run, config, recommender, tables)


def export_into_run(run: Path, config: RunConfig, recommender: Recommender
                    ) -> dict[str, Any]:
    """The run's own export, RUN/EXPORT_DIR, from the trained modules and the tables the
    run stores (written already); training calls it before the completion marker, which
    then vouches for it. Returns the manifest."""
    tables = read_tables(run, config, read_json(run / SCHEMA_FILE))
    return export_graphs(run / EXPORT_DIR, run, config, recommender, tables)


def describe(manifest: dict[str, Any]) -> str:
    """One paragraph for the command line."""
    check = manifest.get("check", {})
    return (f"model {manifest['model']} ({manifest['encoder']} + {manifest['predictor']}, "
            f"policy {manifest['policy']}, serves {manifest['served']}), opset "
            f"{manifest['opset']}, version {manifest['model_version']}; largest difference "
            f"from PyTorch on {check.get('rows')} real rows: "
            + json.dumps({k[13:]: v for k, v in check.items() if k.startswith("max_abs")}))
