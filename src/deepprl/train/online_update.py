"""Online policy updates: the weight policy trained further on the feedback a service stored.

The served run's stored log tail (deepprl.inference_data) and the feedback events since the
run, each user's after their logged steps, make one log (feedback_log): the states the
service computed when it answered are the states here. Every feedback event with a reward
is a decision point whose candidates are the items its user fed back a reward for (their
values known: the full-information setting of the learner on logs). The run's learner
(the grid bandit, deepprl.rl.bandit) is trained further from the served policy's weights
(update_policy) and checked, cross-fitted over folds of the feedback users
(deepprl.train.pessimism.cross_fitted_check), against the CURRENT policy on users each fold
never saw, and against the best static alpha: as in training, the new version serves that
static alpha where the learned policy shows no gain over it. A new run version is written
(write_version: atomic files, completion marker last; it records its parent and the
feedback it used) only where the lower confidence bound of the gain over the current policy
is above zero; otherwise UpdateRefusedError, and nothing is written.
"""

from __future__ import annotations

import copy
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepprl.artifacts import (
    ACTOR_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    SERVED_FILE,
    TABLES_FILE,
    TABLES_META_FILE,
    build_policy,
    load_weighted_run,
    read_json,
)
from deepprl.config import RunConfig
from deepprl.data.interactions import Interactions
from deepprl.data.splits import Split
from deepprl.distributed import SINGLE
from deepprl.eval.metrics import top_k_reward
from deepprl.io import atomic_path, json_safe, save_safetensors, write_json
from deepprl.policy.weights import FixedWeights, GridBandit
from deepprl.ranking.history import clock_columns, clock_context
from deepprl.recommender import Recommender
from deepprl.rl.bandit import BanditData
from deepprl.rundir import RunError, write_marker
from deepprl.train.pessimism import FoldsFit, cross_fitted_check, serves
from deepprl.train.run import export_onnx
from deepprl.train.stage2 import Trajectories, build_trajectories
from deepprl.train.weights import _bandit_data, _learn_bandit, _learn_bandits, fold_jobs, fold_picks

UPDATE_FILE = "update.json"
"""In a run written by an update: its parent, the feedback it learned from, the check."""
_COPIED = (MODEL_FILE, CONFIG_FILE, SCHEMA_FILE, TABLES_FILE, TABLES_META_FILE)
"""The parent's files a new version keeps as they are (the stage-1 model and the tables)."""


@dataclass(frozen=True)
class Feedback:
    """One stored feedback event (deepprl.serve.store.StoredEvent, as the CLI passes it)."""

    id: int
    """Row id in the feedback store (arrival order)."""
    user_id: str
    item_id: str
    timestamp: float
    reward: float | None
    """None: the event has no reward (it extends the user's history, teaches nothing)."""


class UpdateRefusedError(ValueError):
    """The update found no evidence that the new policy beats the served one."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class FeedbackLog:
    """The run's log tail with the feedback steps after each user's logged ones."""

    data: Interactions  # sorted by (user, time); feedback steps last within a user
    decisions: np.ndarray  # [N] bool: feedback steps with a reward (the decision points)
    figures: dict[str, int]  # what was used and what was left out


def feedback_watermark(run: Path) -> int:
    """The last feedback row id the run learned from: 0 for a trained run."""
    path = run / UPDATE_FILE
    if not path.is_file():
        return 0
    record = read_json(path)
    try:
        return int(record["feedback"]["last_id"])
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{path}: no feedback.last_id ({err})") from err


def feedback_log(data: Interactions, feedback: Sequence[Feedback]) -> FeedbackLog:
    """The log tail `data` (a run's stored tables) with `feedback` appended, each user's
    steps ordered and given times and context as deepprl.serve.service.Service.history
    does: by (timestamp, arrival); on a log without a clock one event apart after the last
    logged step. Events of users or items the log does not know are left out (counted)."""
    users: dict[int, list[Feedback]] = {}
    unknown = 0
    for event in feedback:
        try:
            user = data.user_index(event.user_id)
            data.item_index(event.item_id)
        except ValueError:
            unknown += 1
            continue
        users.setdefault(user, []).append(event)
    parts = [_user_steps(data, user, sorted(events, key=lambda e: (e.timestamp, e.id)))
             for user, events in sorted(users.items())]
    joined = {name: np.concatenate([p[name] for p in parts]) if parts else
              np.zeros((0, *getattr(data, name).shape[1:]), getattr(data, name).dtype)
              for name in ("user", "item", "time", "objectives", "reward", "context")}
    decisions = np.concatenate([p["decision"] for p in parts]) if parts \
        else np.zeros(0, dtype=bool)
    log = Interactions(
        name=data.name, objective_names=data.objective_names, user=joined["user"],
        item=joined["item"], time=joined["time"], objectives=joined["objectives"],
        reward=joined["reward"], context=joined["context"],
        user_features=data.user_features, item_features=data.item_features,
        user_ids=data.user_ids, item_ids=data.item_ids, context_names=data.context_names,
        user_feature_names=data.user_feature_names,
        item_feature_names=data.item_feature_names, encoding=data.encoding)
    used = sum(len(v) for v in users.values())
    return FeedbackLog(data=log, decisions=decisions, figures={
        "events": len(feedback), "used_events": used, "unknown_id_events": unknown,
        "rewarded_events": int(decisions.sum()), "users": len(users)})


def _user_steps(data: Interactions, user: int, events: list[Feedback]
                ) -> dict[str, np.ndarray]:
    """One user's logged steps followed by their feedback steps (arrays of the log)."""
    logged = data.user_events(user)
    n_clock, n = clock_columns(data), len(events)
    last = float(data.time[logged[-1]]) if len(logged) else None
    if n_clock > 1:
        times = np.array([e.timestamp for e in events], dtype=np.float64)
    else:  # the log's time is an event counter
        times = (last if last is not None else -1.0) + np.arange(1, n + 1, dtype=np.float64)
    context = np.empty((n, data.context.shape[1]), dtype=np.float32)
    context[:, :n_clock] = clock_context(data, times, last)
    context[:, n_clock:] = data.context[logged[-1], n_clock:] if len(logged) else 0.0
    reward = np.array([np.nan if e.reward is None else e.reward for e in events],
                      dtype=np.float32)
    objectives = np.full((n, data.n_objectives), np.nan, dtype=np.float32)  # not learnt from
    return {
        "user": np.full(len(logged) + n, user, dtype=np.int64),
        "item": np.r_[data.item[logged], data.item_indices([e.item_id for e in events])],
        "time": np.r_[data.time[logged], times],
        "objectives": np.concatenate([data.objectives[logged], objectives]),
        "reward": np.r_[data.reward[logged], reward].astype(np.float32),
        "context": np.concatenate([data.context[logged], context]),
        "decision": np.r_[np.zeros(len(logged), dtype=bool), np.isfinite(reward)],
    }


def _environment(config: RunConfig, recommender: Recommender, log: FeedbackLog
                 ) -> Trajectories:
    """The decision points: frozen states and candidate predictions (as stage 2's)."""
    if not log.decisions.any():
        raise UpdateRefusedError(
            f"no feedback event with a reward since the run: nothing to learn from "
            f"({log.figures['events']} events stored since)", {"feedback": log.figures})
    scorer = Recommender(recommender.model, recommender.policy, log.data)
    env = build_trajectories(scorer, log.data, log.decisions, config.policy,
                             k=config.eval.k, max_candidates=config.train.max_candidates,
                             seed=config.seed)
    if len(env.sampled) == 0:
        raise UpdateRefusedError(
            f"no feedback user has more than k={config.eval.k} items with a reward: nothing "
            f"to learn from ({log.figures['rewarded_events']} rewarded events of "
            f"{log.figures['users']} users)", {"feedback": log.figures})
    return env


def update_policy(config: RunConfig, recommender: Recommender, log: FeedbackLog
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """(new policy, check): the run's grid bandit trained further on the decision points of
    `log`, from the served policy's weights (a fresh, seeded one where the run serves a
    static alpha), refitted on every feedback user for the served policy; the check
    cross-fits it over max(policy.check_folds, 2) folds of the feedback users: the top
    level compares it with the best static alpha, which the new version serves instead
    where it shows no gain (policy.fallback "static", as training decides: "served");
    "versus_current" compares what the new version serves with the current policy."""
    if config.policy.algorithm != "bandit":
        raise ValueError(f"deepprl update trains the grid bandit (policy.algorithm "
                         f"'bandit', the default on logs); this run's learner is "
                         f"{config.policy.algorithm!r}: retrain it on the longer log")
    if not config.policy.dynamic:
        raise ValueError("this run keeps each user's alpha frozen (policy.dynamic false): "
                         "there is no dynamic policy to update")
    env = _environment(config, recommender, log)
    rows = env.sampled
    current = recommender.policy
    with torch.no_grad():
        alpha = current(env.state[rows], env.context[rows])  # [E, K]
        reference = top_k_reward(env.y_hat, env.reward, env.valid, alpha,
                                 config.eval.k)  # [E]
    start, warm = _start(config, recommender)
    none = np.zeros(log.data.n_events, dtype=bool)
    split = Split(train=log.decisions, test=none, valid=none)
    bandit = _bandit_data(start, log.data, split, log.decisions, env, config)
    users = log.data.user[np.flatnonzero(log.decisions)[rows.numpy()]]
    check = cross_fitted_check(bandit.rewards, start.grid, users,
                               max(config.policy.check_folds, 2), config.seed,
                               _fold_fit(start, bandit, config, warm), reference=reference)
    check["served"] = serves(check, config.policy.fallback)
    new: nn.Module = FixedWeights(torch.tensor(check["static_weights"]))
    if check["served"] == "learned":
        new = copy.deepcopy(start)
        _learn_bandit(new, bandit, config, SINGLE, None, reset=not warm)
    # the gate compares what the new version would serve with the current policy
    check["versus_current"] = check.get("reference" if check["served"] == "learned"
                                        else "static_reference", {})
    with torch.no_grad():
        check["current_mean_weights"] = alpha.mean(0).tolist()
        check["new_mean_weights"] = new(env.state[rows], env.context[rows]).mean(0).tolist()
    check["warm_start"] = warm
    return new, check


def _start(config: RunConfig, recommender: Recommender) -> tuple[GridBandit, bool]:
    """(the policy the update trains further, whether it is the served one): a copy of
    the served bandit, or a fresh one where the run serves a static alpha."""
    current = recommender.policy
    warm = isinstance(current, GridBandit)
    start = copy.deepcopy(current) if warm else \
        build_policy(config, recommender.model, recommender.data)
    if not isinstance(start, GridBandit):
        raise ValueError(f"a bandit run serves a {type(start).__name__}")
    return start, warm


def _fold_fit(start: GridBandit, bandit: BanditData, config: RunConfig, warm: bool
              ) -> FoldsFit:
    """The folds of the check: copies of `start` trained together, each on its fold's
    learning rows (keeping its best state of the search for the number of steps, as
    training's folds do)."""

    def fit_folds(folds: list[tuple[torch.Tensor, torch.Tensor]]
                  ) -> list[tuple[torch.Tensor, dict[str, float]]]:
        jobs = fold_jobs(start, folds)
        return fold_picks(jobs, _learn_bandits(bandit, jobs, config, SINGLE, reset=not warm),
                          bandit, folds)
    return fit_folds


def beats_current(check: dict[str, Any]) -> bool:
    """The update's gate: the one-sided lower bound of the new policy's gain over the
    current one on held-out feedback users is above zero (pessimism.serves' rule)."""
    return serves({"checked": check.get("checked"), **check.get("versus_current", {})},
                  "static") == "learned"


def refusal(check: dict[str, Any]) -> str:
    """Why an update was refused, with the figures."""
    if not check.get("checked"):
        return f"no check was possible ({check.get('reason')}): keeping the current policy"
    ref = check["versus_current"]
    bound = ref["gain_lower_bound"]
    return (f"the new policy does not beat the current one on {int(ref['users'])} held-out "
            f"feedback users ({check['served']} weights): reward {ref['learned']:.4f} vs "
            f"{ref['static']:.4f}, gain {ref['gain']:+.4f}, lower bound "
            f"{'undefined' if not math.isfinite(bound) else f'{bound:+.4f}'}; the current "
            f"version stays served and no new version was written")


def write_version(parent: Path, out: Path, policy: nn.Module, record: dict[str, Any],
                  config: RunConfig, recommender: Recommender) -> None:
    """A complete run at `out` (new or empty): the parent's model and tables, the new
    policy, SERVED_FILE, UPDATE_FILE (`record`), its ONNX export, then the completion
    marker."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {out}: exists and is not an empty directory; choose a new "
                       f"directory for the new version (nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        with atomic_path(out / name) as temp:
            shutil.copyfile(parent / name, temp)
    save_safetensors(out / ACTOR_FILE, policy.state_dict())
    write_json(out / SERVED_FILE, {"served": record["check"]["served"],
                                   "policy_check": record["check"]})
    write_json(out / UPDATE_FILE, record)
    # the parent's export holds the parent's policy: the new version gets its own, of the
    # policy as loading it will build it
    served = build_policy(config, recommender.model, recommender.data,
                          served=record["check"]["served"])
    served.load_state_dict(policy.state_dict())
    export_onnx(out, config, Recommender(recommender.model, served, recommender.data,
                                         seen=recommender.seen,
                                         frozen_weights=recommender.frozen_weights))
    write_marker(out, config.to_dict())


def update_record(parent: Path, parent_version: str, db: str, feedback: Sequence[Feedback],
                  log: FeedbackLog, check: dict[str, Any]) -> dict[str, Any]:
    """What a new version records: its parent, the feedback it used and the check."""
    ids = [e.id for e in feedback]
    return json_safe({
        "parent": {"run": str(parent.resolve()), "model_version": parent_version},
        "feedback": {"db": db, "first_id": min(ids, default=0),
                     "last_id": max(ids, default=feedback_watermark(parent)), **log.figures},
        "check": check, "accepted": beats_current(check)})


def update_run(run: Path, feedback: Sequence[Feedback], out: Path, *, db: str,
               parent_version: str) -> dict[str, Any]:
    """Train the served run's policy further on `feedback` (the events since its
    watermark) and write the new version to `out`: its record (UPDATE_FILE). UpdateRefusedError
    (nothing written) where the new policy does not beat the current one."""
    config, recommender = load_weighted_run(run, serving=True)
    log = feedback_log(recommender.data, feedback)
    policy, check = update_policy(config, recommender, log)
    record = update_record(run, parent_version, db, feedback, log, check)
    if not record["accepted"]:
        raise UpdateRefusedError(refusal(check), record)
    write_version(run, out, policy, record, config, recommender)
    return record
