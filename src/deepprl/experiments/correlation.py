"""Table 13's offline rows: how the objectives relate before and after DeepPRL ranks.

Paper §7.3: "the same analysis [on] all four offline datasets": the Pearson correlation of
each pair of objectives among the logged records (before) and among what the model
recommends (after). Ours, on each offline dataset: before = the logged test events of the
evaluation set (the items the users actually chose); after = every (test event, top-K item)
of DeepPRL as its run serves it. The same "after" of the run's own predictor under equal
weights and of popularity sits beside it, so a shift that any ranking of these candidates
would show is not credited to DeepPRL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import load_run, read_json, run_split
from deepprl.eval.evaluator import EvalSet, popularity_scores
from deepprl.eval.metrics import pair_correlations
from deepprl.experiments.context import Context
from deepprl.experiments.frontier import eval_set_of
from deepprl.experiments.runs import run_config, run_dir, train_all
from deepprl.experiments.stats import mean_std
from deepprl.ranking import top_k
from deepprl.report import Report, md_table

# Paper Table 13's offline rows (pre -> post), and our dataset that stands in for each
PAPER_ROWS = {"Alibaba-Youku: Video View – Dwell Time": (-0.238, 0.003),
              "Yelp: Relevance – Novelty": (-0.596, -0.207),
              "Spotify: Listening% – Saved": (0.369, 0.468),
              "Kuaishou: Consistency – Recency": (-0.024, 0.203)}
STANDS_IN = {"movielens-100k": "Kuaishou: Consistency – Recency",
             "movielens-latest-small": "Kuaishou: Consistency – Recency",
             "movielens-sim": "Kuaishou: Consistency – Recency",
             "yelp-hin": "Yelp: Relevance – Novelty"}


def top_k_items(eval_set: EvalSet, scores: np.ndarray, k: int) -> np.ndarray:
    """The true objectives of every valid (event, top-k item) of ranking by scores
    [E, C] -> [M, K]."""
    idx = top_k(torch.from_numpy(scores.astype(np.float32)),
                torch.from_numpy(eval_set.valid), k).numpy()  # [E, k]
    rows = np.arange(len(idx))[:, None]
    chosen = eval_set.objectives[rows, idx]  # [E, k, K]
    keep = eval_set.valid[rows, idx]
    return chosen[keep]


def run_correlations(path: Path) -> dict[str, Any]:
    """Before/after correlations of one DeepPRL run (see the module docstring)."""
    config, ranker = load_run(path)
    data, k = ranker.data, config.eval.k
    eval_set = eval_set_of(config, ranker)
    names = data.objective_names
    equal = np.full(data.n_objectives, 1.0 / data.n_objectives)
    train = run_split(data, config).train
    equal_scores = ranker.static_scores(eval_set.events, eval_set.items, equal)
    if equal_scores is None:
        raise ValueError(f"{path}: not a weighted model's run (no objective predictions)")
    rankings = {"deepprl": ranker.scores(eval_set.events, eval_set.items),
                "equal": equal_scores, "popularity": popularity_scores(data, train, eval_set)}
    out: dict[str, Any] = {"before": pair_correlations(data.objectives[eval_set.events], names)}
    for method, scores in rankings.items():
        out[method] = pair_correlations(top_k_items(eval_set, scores, k), names)
    out["served"] = read_json(path / "metrics.json").get("served", "learned")
    return out


def table13(ctx: Context) -> Report:
    seeds = ctx.n_seeds(3)
    jobs = [(config, run_dir(ctx, config)) for config in
            (run_config(ctx, "deepprl", seed) for seed in range(seeds))]
    train_all(ctx, jobs)
    per_run = [run_correlations(path) for _, path in jobs]
    pairs = list(per_run[0]["before"])
    report = Report("table13", ctx.label, f"Table 13 (offline rows) on {ctx.label}: "
                    "correlation between objectives before and after DeepPRL", ctx.command)
    columns = ["before: logged test events", "after: DeepPRL top-K",
               "after: same predictor, equal α", "after: popularity top-K"]
    rows = []
    for pair in pairs:
        cells = []
        for key in ("before", "deepprl", "equal", "popularity"):
            m, s = mean_std([r[key][pair] for r in per_run])
            cells.append(f"{m:.3f} ± {s:.3f}")
        rows.append([pair, *cells])
    served = [r["served"] for r in per_run]
    report.add(f"{seeds} DeepPRL run(s) (seeds 0–{seeds - 1}, the Table 4 runs: same cache), "
               f"each as served ({', '.join(served)}). Pearson correlation over the "
               "evaluation set's logged test events (before) and over every (test event, "
               "top-K item) of each ranking (after); mean ± std over the runs. Method: "
               "`deepprl.experiments.correlation`.", md_table(["objective pair", *columns], rows))
    paper = STANDS_IN.get(ctx.dataset)
    if paper is None:
        report.add("The paper has no row for this dataset.")
    else:
        before, after = PAPER_ROWS[paper]
        m_before, _ = mean_std([r["before"][pairs[0]] for r in per_run])
        m_after, _ = mean_std([r["deepprl"][pairs[0]] for r in per_run])
        report.add(f"Paper ({paper}, the log this dataset stands in for): {before:+.3f} → "
                   f"{after:+.3f} (shift {after - before:+.3f}). Ours ({pairs[0]}): "
                   f"{m_before:+.3f} → {m_after:+.3f} (shift {m_after - m_before:+.3f}).")
    report.data = {"runs": per_run, "paper": PAPER_ROWS.get(paper or "")}
    return report
