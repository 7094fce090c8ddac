"""The simulated online experiment end to end.

1. Pre-period (`pre_days` days before day 0): the legacy production ranker (popularity
   with random exploration) serves every existing consumer; the log is written as
   Parquet with a deepprl mapping.
2. Both arms are trained on that log with deepprl's own train_run (generic-log loader):
   control = MMoE with static weights tuned on validation, treatment = DeepPRL.
3. Experiment (`days` days): consumers are hashed into the arms; every session, the arm's
   model ranks the session's candidates, the top `slots` are shown and the consumer
   responds as the platform says. New consumers join during the experiment (cold start).

The output log has one row per shown video; its columns are LOG_COLUMNS (docs/abtest.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from deepprl.abtest.platform import DT_CAP_S, GENRES, Platform, PlatformConfig
from deepprl.abtest.serving import HistoryStore, ModelArm, assign_arms, clock_steps
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.policy.weights import FixedWeights
from deepprl.recommender import Recommender

START = 1_609_459_200  # 2021-01-01 00:00 UTC: day 0 (the paper's experiment ran in Jan 2021)
DAY = 86_400
# share of sessions per hour of day (a lunch and an evening peak)
_HOUR_WEIGHT = np.array([2, 1, 1, 1, 1, 1, 2, 4, 5, 4, 4, 5, 7, 6, 5, 5, 5, 6, 7, 9, 10, 10,
                         8, 5], dtype=np.float64)
OBJECTIVES = ("ctr", "vv", "dt")

# (user, arm, day, ts, session, position, objectives..., features...)
LOG_COLUMNS = ("user_id", "video_id", "arm", "period", "day", "ts", "hour", "session_id",
               "position", "ctr", "vv", "dt", "reward", "gender", "age", "province", "city",
               "os", "vip", "active_days", "new_consumer", "genre", "view_count",
               "comment_count", "release_days", "video_length", "premium", "new_video",
               "alpha_ctr", "alpha_vv", "alpha_dt")


@dataclass(frozen=True)
class ExperimentConfig:
    """The simulated A/B experiment: platform, periods, training sizes."""

    platform: PlatformConfig = dataclasses.field(default_factory=PlatformConfig)
    """The simulated platform."""
    days: int = 30
    """Experiment days (paper: the month of January 2021)."""
    pre_days: int = 5
    """Days of pre-period log the arms are trained on."""
    arms: tuple[tuple[str, float], ...] = (("control", 0.4), ("treatment", 0.4),
                                           ("deepprl-static", 0.2))
    """Arms and their shares of the hash buckets: control = MMoE with static weights,
    treatment = DeepPRL, deepprl-static (optional diagnostic arm) = DeepPRL's predictor
    with one static alpha tuned like MMoE's: where a difference comes from."""
    salt: str = "deepprl-ab-2021"
    """Salt of the assignment hash."""
    epochs: int = 2
    """Stage-1 epochs of both arms."""
    policy_steps: int = 400
    """Stage-2 actor-critic steps of DeepPRL."""
    static_trials: int = 20
    """Optuna trials for MMoE's static weights."""
    max_train_events: int = 20_000
    """Cap on stage-2 transitions and evaluation events of the training runs."""
    train_k: int = 3
    """Top-K of the offline training protocol (static-weight tuning, policy reward): a
    consumer's logged validation items are the candidates, so K must stay below their
    number."""


MODELS = {"control": "mmoe", "treatment": "deepprl"}
"""The model each main arm serves (zoo names)."""

Ranker = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(users [B], candidates [B, C] platform video indices, context [B, Fc]) ->
(order [B, C], alpha [B, K])."""


def schedule(platform: Platform, day: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Sessions of one day: (users [S], unix times [S]) sorted by (user, time)."""
    c = platform.consumers
    present = c.join_day <= day if day >= 0 else c.join_day < 0
    n = rng.poisson(platform.config.sessions_per_day * c.rate * present)
    users = np.repeat(np.arange(len(n)), n)
    hours = rng.choice(24, size=len(users), p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    times = START + day * DAY + hours * 3600 + rng.integers(0, 3600 - 60, len(users))
    order = np.lexsort((times, users))
    return users[order], times[order].astype(np.float64)


def rounds(users: np.ndarray) -> np.ndarray:
    """[S] index of each session among its user's sessions of the day (users sorted)."""
    first = np.r_[True, users[1:] != users[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(users)), 0))
    return np.arange(len(users)) - start


def legacy_ranker(platform: Platform, rng: np.random.Generator) -> Ranker:
    """The pre-period production ranker: log popularity plus Gumbel exploration noise."""
    log_views = np.log(platform.videos.view_count + 1.0)

    def rank(users: np.ndarray, cands: np.ndarray, context: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        keys = 0.5 * log_views[cands] + rng.gumbel(size=cands.shape)
        return np.argsort(-keys, axis=1), np.full((len(users), 3), np.nan)
    return rank


def simulate_days(platform: Platform, days: range, rankers: dict[str, Ranker],
                  arm_of: np.ndarray, store: HistoryStore | None, video_model: np.ndarray,
                  rng: np.random.Generator, *, period: str) -> pl.DataFrame:
    """Serve every session of `days`; rankers[arm_of[consumer]] ranks a consumer's sessions.
    store (model arms) is updated with every shown video; video_model [V] maps platform
    videos to model item indices (0: unknown to the models, never a candidate)."""
    parts: list[dict[str, np.ndarray]] = []
    session_base = 0
    slots = platform.config.slots
    for day in days:
        users_all, times_all = schedule(platform, day, rng)
        which = rounds(users_all)
        for k in range(int(which.max()) + 1 if len(which) else 0):
            pick = which == k
            users, times = users_all[pick], times_all[pick]
            step_times = times[:, None] + np.arange(slots)[None, :]  # one second apart
            prev = store.last_time[users] if store is not None else np.full(len(users), np.nan)
            context = clock_steps(step_times, prev)  # [B, R, Fc]
            cands = platform.candidates(users, day, rng, allowed=video_model > 0)
            shown = np.empty((len(users), slots), dtype=np.int64)
            alpha = np.full((len(users), 3), np.nan)
            for arm, ranker in rankers.items():
                rows = np.flatnonzero(arm_of[users] == arm)
                if len(rows):
                    order, alpha[rows] = ranker(users[rows], cands[rows], context[rows, 0])
                    shown[rows] = np.take_along_axis(cands[rows], order[:, :slots], axis=1)
            hours = ((times - START) % DAY) // 3600
            resp = platform.respond(users, shown, hours, rng)
            if store is not None:
                store.append(users, video_model[shown], step_times, context)
            parts.append({"user": np.repeat(users, slots), "video": shown.reshape(-1),
                          "day": np.full(shown.size, day), "ts": step_times.reshape(-1),
                          "session_id": np.repeat(session_base + np.arange(len(users)), slots),
                          "position": np.tile(np.arange(slots), len(users)),
                          **{name: resp[name].reshape(-1) for name in (*OBJECTIVES, "reward")},
                          **{f"alpha_{o}": np.repeat(alpha[:, i], slots)
                             for i, o in enumerate(OBJECTIVES)}})
            session_base += len(users)
    return _records(platform, parts, arm_of, period)


def _records(platform: Platform, parts: list[dict[str, np.ndarray]], arm_of: np.ndarray,
             period: str) -> pl.DataFrame:
    raw = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else {}
    if not raw:
        return pl.DataFrame(schema={c: pl.Float64 for c in LOG_COLUMNS})
    c, v = platform.consumers, platform.videos
    u, i, day = raw["user"], raw["video"], raw["day"]
    release_days = day - v.release_day[i]
    prefix = "pre-" if period == "pre" else ""
    frame = pl.DataFrame({
        "user_id": c.user_id[u], "video_id": v.video_id[i],
        "arm": arm_of[u].astype(str), "period": np.full(len(u), period),
        "day": day, "ts": raw["ts"].astype(np.int64), "hour": ((raw["ts"] - START) % DAY) // 3600,
        "session_id": np.char.add(prefix, raw["session_id"].astype(str)),
        "position": raw["position"], "ctr": raw["ctr"].astype(np.int64),
        "vv": raw["vv"].astype(np.int64), "dt": raw["dt"], "reward": raw["reward"],
        "gender": c.gender[u], "age": c.age[u], "province": c.province[u], "city": c.city[u],
        "os": c.os[u], "vip": c.vip[u], "active_days": c.active_days[u],
        "new_consumer": c.new[u].astype(np.int64), "genre": np.array(GENRES)[v.genre[i]],
        "view_count": v.view_count[i], "comment_count": v.comment_count[i],
        "release_days": release_days, "video_length": np.round(v.length_min[i] * 60.0),
        "premium": v.premium[i].astype(np.int64), "new_video": (release_days < 7).astype(np.int64),
        **{f"alpha_{o}": raw[f"alpha_{o}"] for o in OBJECTIVES}})
    return frame.select(LOG_COLUMNS)


def training_mapping() -> dict[str, Any]:
    """The deepprl mapping of the pre-period log (README 'Your own log')."""
    return {
        "columns": {"user": "user_id", "item": "video_id", "timestamp": "ts",
                    "reward": "reward",
                    "user_features": ["gender", "age", "province", "os", "vip", "active_days"],
                    "item_features": ["genre", "view_count", "comment_count", "video_length",
                                      "premium"]},
        "objectives": [{"name": "ctr", "column": "ctr", "normalise": "none"},
                       {"name": "vv", "column": "vv", "normalise": "none"},
                       {"name": "dt", "column": "dt", "normalise": "range", "min": 0.0,
                        "max": DT_CAP_S}],
    }


def arm_config(name: str, config: ExperimentConfig, log_path: Path) -> RunConfig:
    """The RunConfig of one arm, trained on the pre-period log."""
    from deepprl.zoo import configure

    base = RunConfig(
        dataset={"data": str(log_path.resolve()), "mapping": training_mapping()},
        train=TrainConfig(epochs=config.epochs, max_candidates=50, valid_fraction=0.2),
        # DDPG whatever the library's default learner: the arms serve a platform where
        # alpha changes what the user does next (a static arm's own learner replaces it).
        # The arm serves what DDPG learned (fallback "none"): the study tests the learned
        # policy; the held-out check on the pre-period log, which cannot see alpha's effect
        # on what users do next, is recorded and reported beside it
        policy=PolicyConfig(algorithm="ddpg", steps=config.policy_steps,
                            static_trials=config.static_trials,
                            max_events=config.max_train_events, fallback="none"),
        eval=EvalConfig(k=config.train_k, max_events=min(config.max_train_events, 2000)),
        seed=config.platform.seed)
    arm = configure(name, base)
    # CTR and VV are rare 0/1 outcomes: under the L1 loss their best constant is 0, so
    # both arms learn them with binary cross-entropy (DT in [0, 1] too)
    return dataclasses.replace(arm, model=dataclasses.replace(arm.model, loss="bce"))


def _static_alpha(recommender: Recommender, config: RunConfig) -> np.ndarray:
    """One alpha for DeepPRL's trained predictor, tuned on validation exactly as the
    static-weight baselines are (deepprl-static, without retraining the predictor)."""
    from deepprl.artifacts import run_split
    from deepprl.eval.static_weights import tune_static_weights

    data = recommender.data
    weights, _ = tune_static_weights(recommender, data, run_split(data, config),
                                     k=config.eval.k, trials=config.policy.static_trials,
                                     seed=config.seed)
    return weights.astype(np.float32)


def run_experiment(config: ExperimentConfig, workdir: Path, *,
                   log: Callable[[str], None] = print) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Simulate pre-period, train both arms, run the experiment. Returns (the log of both
    periods, facts: sizes, seconds, training metrics)."""
    from deepprl.artifacts import load_weighted_run
    from deepprl.train.run import train_run

    workdir.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {"config": dataclasses.asdict(config)}
    clock = time.perf_counter()
    platform = Platform.build(config.platform, days=config.days, pre_days=config.pre_days)
    rng = np.random.default_rng(config.platform.seed + 1)
    arm_of = assign_arms(platform.consumers.user_id, dict(config.arms), salt=config.salt)
    legacy = legacy_ranker(platform, rng)
    everything = np.ones(len(platform.videos.video_id), dtype=np.int64)
    pre = simulate_days(platform, range(-config.pre_days, 0),
                        {arm: legacy for arm, _ in config.arms}, arm_of, None, everything,
                        rng, period="pre")
    log_path = workdir / "pre_period.parquet"
    pre.write_parquet(log_path)
    facts["pre_records"] = pre.height
    facts["seconds_pre_period"] = time.perf_counter() - clock
    log(f"pre-period: {pre.height} records in {facts['seconds_pre_period']:.0f}s")

    arms: dict[str, ModelArm] = {}
    store: HistoryStore | None = None
    video_model = np.zeros(len(platform.videos.video_id), dtype=np.int64)
    for arm, name in MODELS.items():
        started = time.perf_counter()
        metrics = train_run(arm_config(name, config, log_path), workdir / name,
                            overwrite=True)  # the simulation's own scratch runs
        run_config, recommender = load_weighted_run(workdir / name)
        data = recommender.data
        model_user = np.array([data._user_index.get(u, 0) for u in platform.consumers.user_id])
        video_model = np.array([data._item_index.get(v, 0) for v in platform.videos.video_id])
        if store is None:
            store = HistoryStore.from_log(data, model_user, recommender.model.config.history_length)
        arms[arm] = ModelArm(recommender, model_user)
        fixed = getattr(recommender.policy, "weights", None)
        facts[f"train_{name}"] = {"seconds": time.perf_counter() - started,
                                  "test_mae": metrics.get("test_mae"),
                                  "static_weights": None if fixed is None
                                  else [float(w) for w in fixed],
                                  "policy_check": metrics.get("policy_check")}
        log(f"trained {name} in {facts[f'train_{name}']['seconds']:.0f}s")
        if arm == "treatment" and "deepprl-static" in dict(config.arms):
            weights = _static_alpha(recommender, run_config)
            facts["deepprl_static_weights"] = [float(w) for w in weights]
            static = Recommender(recommender.model, FixedWeights(torch.from_numpy(weights)),
                                 recommender.data)
            arms["deepprl-static"] = ModelArm(static, model_user)

    if store is None:
        raise RuntimeError("no arm was trained")
    history = store

    def ranker(arm: ModelArm) -> Ranker:
        def rank(users: np.ndarray, cands: np.ndarray, context: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
            return arm.rank(history, users, video_model[cands], context)
        return rank

    started = time.perf_counter()
    post = simulate_days(platform, range(config.days), {a: ranker(m) for a, m in arms.items()},
                         arm_of, store, video_model, rng, period="experiment")
    facts["seconds_experiment"] = time.perf_counter() - started
    facts["experiment_records"] = post.height
    facts["videos_unknown_to_models"] = int((video_model == 0).sum())
    log(f"experiment: {post.height} records in {facts['seconds_experiment']:.0f}s")
    (workdir / "facts.json").write_text(json.dumps(facts, indent=1, default=str) + "\n")
    both = pl.concat([pre, post])
    both.write_parquet(workdir / "ab_log.parquet")  # for `deepprl abtest analyse --log`
    return both, facts
