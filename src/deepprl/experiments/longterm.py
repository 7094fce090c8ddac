"""Figure 11: long-term performance in an interactive world (paper §6).

Two worlds: the paper's simulator, and movielens-sim (MovieLens-100K made fully observed,
deepprl.envs.movielens_sim), the stand-in for a fully observed real log.

Protocol of one run (seeded; `runs` of them, in one world):
1. the offline log: the simulator's world with `events_per_user` logged items per user
   (80 of 100: the paper's 80 % of the objective matrices); every method is trained on it
   with its usual recipe (deepprl.train.run.train_run). movielens-sim: the whole log, and
   the experiments' cached runs (the ones Table 4 and Table 5 evaluate);
2. every user starts from `initial` interactions, the same for every method: random ones
   on the simulator; on movielens-sim a fixed seeded sample of `n_users` users starts from
   their last logged ratings, one hour after the last, and every movie they rated counts
   as consumed;
3. `horizon` iterations: each method scores the candidates of every user (every item; on
   movielens-sim `candidates` unconsumed items drawn at random per user and iteration,
   the same draw for every method and weight: a shared retrieval stage that keeps 1,682
   items x 11 weights x 50 iterations affordable), the top-10 are recommended, the user
   responds (deepprl.envs.core: a multinomial logit on the true utility, with an outside
   option; a chosen item joins the history), the clock moves on. Models are not refitted
   during the iterations: they adapt through their inputs (the updated history and the
   clock), and DeepPRL through alpha(s, C);
4. at the checkpoint iterations, each method's point is the mean true objective vector of
   its recommendations over users.
Frontiers: static-weight methods sweep alpha over {0, 0.1, ..., 1} (K = 2), each alpha a
separate closed loop, averaged over runs; methods without weights (DeepPRL, REINFORCE,
DRN) give one point per run, their frontier is over runs (the paper: over network
initialisations). Volume: the convex hull of the region a frontier dominates above a
reference point (the component-wise minimum of every point in the report).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepprl.artifacts import load_run
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.movielens import load_movielens_100k
from deepprl.data.registry import DATASETS
from deepprl.data.simulator import SimulatorConfig, make_world
from deepprl.envs.agents import lane_scores
from deepprl.envs.core import Population, ResponseConfig, Truth
from deepprl.envs.gym_env import HOUR, random_history
from deepprl.envs.movielens_sim import movielens_truth
from deepprl.envs.simulator_env import SimulatorTruth
from deepprl.eval.pareto import dominated_hull_volume
from deepprl.experiments.context import Context
from deepprl.experiments.longterm_report import build_report
from deepprl.experiments.runs import run_config, run_dir, train_all, train_or_reuse
from deepprl.parallel import map_tasks
from deepprl.ranking import Ranker
from deepprl.report import Report
from deepprl.zoo import configure

METHODS = ("deepprl", "shared-bottom", "mmoe", "ple", "mose", "mo-linucb", "morl",
           "reinforce-topk", "drn")
REFERENCES = ("deepprl-predictor-sweep", "oracle-sweep", "oracle-utility")
Scorer = Callable[[Population, np.ndarray], np.ndarray]
"""(lanes, candidates [N, C]) -> scores [N, C]."""


@dataclass(frozen=True)
class Protocol:
    """Sizes of the long-term study."""

    n_users: int = 100
    n_items: int = 100
    events_per_user: int = 80
    initial: int = 10
    horizon: int = 50
    checkpoints: tuple[int, ...] = (1, 10, 25, 50)
    runs: int = 10
    grid: int = 10
    """alpha_1 in {0, 1/grid, ..., 1}."""
    methods: tuple[str, ...] = METHODS
    epochs: int = 8
    policy_steps: int = 3000
    static_trials: int = 10
    """epochs, policy_steps, static_trials: the simulator's training recipe (movielens-sim
    trains as the offline experiments do)."""
    world_seed: int = 0
    dataset: str = "simulator"
    candidates: int = 0
    """Items scored per user and iteration (a seeded draw of unconsumed items shared by
    every method); 0 = every item."""


FULL = Protocol()
QUICK = Protocol(n_users=24, n_items=40, events_per_user=20, initial=5, horizon=5,
                 checkpoints=(1, 2, 3, 5), runs=2, grid=4,
                 methods=("deepprl", "mmoe", "mo-linucb", "drn"), epochs=2,
                 policy_steps=60, static_trials=2)
# movielens-sim: 200 of the 943 users (11 weights x 200 lanes x 100 candidates per
# iteration); n_items is the catalogue's, events_per_user 0 = the whole log.
FULL_MOVIELENS = Protocol(dataset="movielens-sim", n_users=200, n_items=1682,
                          events_per_user=0, candidates=100)
QUICK_MOVIELENS = dataclasses.replace(FULL_MOVIELENS, n_users=12, initial=5, horizon=5,
                                      checkpoints=(1, 2, 3, 5), runs=1, grid=4,
                                      candidates=40, methods=QUICK.methods)
PROTOCOLS = {"simulator": (FULL, QUICK), "movielens-sim": (FULL_MOVIELENS, QUICK_MOVIELENS)}


def longterm(ctx: Context) -> Report:
    """`deepprl experiment longterm --dataset simulator|movielens-sim [--quick]
    [--seeds N]`."""
    if ctx.dataset not in PROTOCOLS:
        raise ValueError(f"longterm runs on {sorted(PROTOCOLS)}, not {ctx.dataset!r}")
    full, quick = PROTOCOLS[ctx.dataset]
    protocol = quick if ctx.quick else full
    protocol = dataclasses.replace(protocol, runs=ctx.n_seeds(protocol.runs, protocol.runs))
    started = time.perf_counter()
    trained = ([None] * protocol.runs if _world_of(protocol).own_log
               else _offline_runs(ctx, protocol))
    tasks = [{"protocol": protocol, "seed": seed, "trained": trained[seed],
              "runs_dir": str(ctx.runs / "longterm" / ("quick" if ctx.quick else "full"))}
             for seed in range(protocol.runs)]
    results = map_tasks(one_run, tasks, executor=ctx.executor, address=ctx.address)
    summary = summarise(protocol, results)
    summary["seconds"] = time.perf_counter() - started
    return build_report(ctx, protocol, summary)


def _offline_runs(ctx: Context, protocol: Protocol) -> list[dict[str, str] | None]:
    """Train (or reuse) the experiments' runs of every method and seed on the context's
    executor; per seed, {method: run directory}."""
    jobs = {(name, seed): learned_by_ddpg(run_config(ctx, name, seed))
            for seed in range(protocol.runs) for name in protocol.methods}
    paths = {key: run_dir(ctx, config) for key, config in jobs.items()}
    train_all(ctx, [(config, paths[key]) for key, config in jobs.items()])
    return [{name: str(paths[name, seed]) for name in protocol.methods}
            for seed in range(protocol.runs)]


# -- one run ---------------------------------------------------------------------------------


def one_run(protocol: Protocol, seed: int, runs_dir: str,
            trained: dict[str, str] | None = None) -> dict[str, Any]:
    """Train every method on the world's log (training seed `seed`; `trained` gives the
    run directories when they were trained elsewhere), then simulate; returns per method:
    points [A, C, K] and utility [A, C] (lists)."""
    truth, start = _world(protocol, seed)
    alphas = np.linspace(0.0, 1.0, protocol.grid + 1)
    sweep = np.stack([alphas, 1.0 - alphas], axis=1)  # [A, 2]
    sim = _Simulation(truth, protocol, start, seed)
    out: dict[str, Any] = {}
    for name in protocol.methods:
        path = Path(trained[name]) if trained is not None else _trained(
            name, _simulator_spec(protocol), protocol, seed, Path(runs_dir) / f"{name}-s{seed}")
        ranker: Ranker = load_run(path)[1]
        swept = name != "deepprl" and ranker.sweepable  # one closed loop per alpha
        out[name] = sim.run(_scorer(ranker, sweep if swept else None),
                            n_groups=len(sweep) if swept else 1)
        if name == "deepprl" and ranker.sweepable:
            out["deepprl-predictor-sweep"] = sim.run(_scorer(ranker, sweep),
                                                     n_groups=len(sweep))
    out["oracle-sweep"] = sim.run(_oracle(sweep), n_groups=len(sweep))
    out["oracle-utility"] = sim.run(lambda pop, items: pop.true_values(items)[1], n_groups=1)
    return out


def _simulator_spec(protocol: Protocol) -> dict[str, Any]:
    return {"name": "simulator", "n_users": protocol.n_users, "n_items": protocol.n_items,
            "events_per_user": protocol.events_per_user, "seed": protocol.world_seed}


def _world(protocol: Protocol, seed: int) -> tuple[Truth, dict[str, np.ndarray]]:
    """The world's truth and the run's initial state (users, history, times, start[, seen])."""
    return _world_of(protocol).build(protocol, seed)


def _simulator_world(protocol: Protocol, seed: int) -> tuple[Truth, dict[str, np.ndarray]]:
    """The paper's simulator at the protocol's size; random initial histories."""
    world = make_world(SimulatorConfig(n_users=protocol.n_users, n_items=protocol.n_items,
                                       events_per_user=protocol.events_per_user,
                                       seed=protocol.world_seed))
    return SimulatorTruth(world), _random_start(protocol, seed)


def _random_start(protocol: Protocol, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 11])
    draw = random_history(protocol.n_items, protocol.initial, 60.0)
    users = np.arange(1, protocol.n_users + 1)
    parts = [draw(rng, int(u)) for u in users]
    return {"users": users, "history": np.stack([p[0] for p in parts]),
            "times": np.stack([p[1] for p in parts]), "start": np.array([p[2] for p in parts])}


def _movielens_world(protocol: Protocol, seed: int) -> tuple[Truth, dict[str, np.ndarray]]:
    """The calibrated MovieLens world; a fixed sample of users (world_seed) starts from
    their last `initial` logged ratings, with everything they rated consumed."""
    data = load_movielens_100k()
    truth = movielens_truth(data)
    if truth.n_items != protocol.n_items:
        raise ValueError(f"movielens-sim has {truth.n_items} items, the protocol says "
                         f"{protocol.n_items}")
    rng = np.random.default_rng([protocol.world_seed, 31])
    users = np.sort(rng.choice(np.arange(1, data.n_users + 1), protocol.n_users,
                               replace=False))
    history = np.zeros((len(users), protocol.initial), dtype=np.int64)
    times = np.zeros((len(users), protocol.initial))
    seen = np.zeros((len(users), truth.n_items + 1), dtype=bool)
    for row, user in enumerate(users):
        span = data.user_events(int(user))
        last = span[-protocol.initial:]
        history[row, -len(last):], times[row, -len(last):] = data.item[last], data.time[last]
        seen[row, data.item[span]] = True
    return truth, {"users": users, "history": history, "times": times,
                   "start": times[:, -1] + HOUR, "seen": seen}


@dataclass(frozen=True)
class World:
    """How the long-term study builds an interactive world (by its id in deepprl.envs)."""

    build: Callable[[Protocol, int], tuple[Truth, dict[str, np.ndarray]]]
    """(protocol, run seed) -> the world's truth and the run's initial state."""
    own_log: bool
    """Every method trains on a log drawn from the world at the protocol's size (the
    simulator); False: the experiments' cached runs on the dataset are reused."""


WORLDS: dict[str, World] = {
    "deepprl/Simulator-v0": World(_simulator_world, own_log=True),
    "deepprl/MovieLensSim-v0": World(_movielens_world, own_log=False),
}


def _world_of(protocol: Protocol) -> World:
    """The world of the protocol's dataset, as the data registry names it."""
    entry = DATASETS.get(protocol.dataset)
    if entry is None or entry.world not in WORLDS:
        raise ValueError(f"no long-term world for dataset {protocol.dataset!r}")
    return WORLDS[entry.world]


class _Simulation:
    """Closed loops from one initial state: n_groups copies of every user (one per alpha)."""

    def __init__(self, truth: Truth, protocol: Protocol,
                 start: dict[str, np.ndarray], seed: int) -> None:
        self.truth, self.protocol, self.start, self.seed = truth, protocol, start, seed

    def run(self, scorer: Scorer, *, n_groups: int) -> dict[str, list[Any]]:
        s, p = self.start, self.protocol
        seen = s.get("seen")
        pop = Population(self.truth, ResponseConfig(), users=np.tile(s["users"], n_groups),
                         history=np.tile(s["history"], (n_groups, 1)),
                         hist_times=np.tile(s["times"], (n_groups, 1)),
                         start=np.tile(s["start"], n_groups), capacity=p.horizon,
                         seed=np.random.SeedSequence([self.seed, 23]),
                         seen=None if seen is None else np.tile(seen, (n_groups, 1)))
        points, utility = [], []
        for t in range(1, p.horizon + 1):
            items = self.candidates(pop, t)  # [N, C]
            scores = np.full((pop.n_lanes, self.truth.n_items), -np.inf)
            np.put_along_axis(scores, items - 1, scorer(pop, items), axis=1)
            result = pop.step(scores)
            if t in p.checkpoints:
                points.append(result.reward.reshape(n_groups, -1, result.reward.shape[1])
                              .mean(1))  # [A, K]
                utility.append(result.utility.reshape(n_groups, -1).mean(1))  # [A]
        return {"points": np.stack(points, axis=1).tolist(),  # [A, C, K]
                "utility": np.stack(utility, axis=1).tolist()}  # [A, C]

    def candidates(self, pop: Population, t: int) -> np.ndarray:
        """[N, C] items each lane scores at iteration t: every item, or the first
        `candidates` unconsumed items in a random order drawn per (run, iteration, user),
        so every method and weight of a user sees the same draw while their consumed sets
        agree."""
        n_items, size = self.truth.n_items, self.protocol.candidates
        if size <= 0 or size >= n_items:
            return np.broadcast_to(np.arange(1, n_items + 1), (pop.n_lanes, n_items))
        rng = np.random.default_rng([self.seed, 29, t])
        order = rng.random((self.truth.n_users + 1, n_items + 1))[pop.users]  # [N, I + 1]
        order[pop.consumed] = np.inf  # column 0 (padding) is always consumed
        picked = np.argpartition(order, size - 1, axis=1)[:, :size]
        if np.isinf(np.take_along_axis(order, picked, axis=1)).any():
            raise ValueError(f"a user has fewer than {size} unconsumed items")
        return np.sort(picked, axis=1)


def _lane_alpha(pop: Population, sweep: np.ndarray) -> np.ndarray:
    """[N, K]: lanes are len(sweep) blocks of users, block a uses sweep[a]."""
    return np.repeat(sweep, pop.n_lanes // len(sweep), axis=0)


def _oracle(sweep: np.ndarray) -> Scorer:
    def score(pop: Population, items: np.ndarray) -> np.ndarray:
        objectives, _ = pop.true_values(items)  # [N, C, K]
        return np.einsum("nik,nk->ni", objectives, _lane_alpha(pop, sweep))
    return score


def _scorer(ranker: Ranker, sweep: np.ndarray | None) -> Scorer:
    """The model's own ranking, or with static weights: lane block a uses sweep[a]."""
    def score(pop: Population, items: np.ndarray) -> np.ndarray:
        alpha = None if sweep is None else _lane_alpha(pop, sweep)
        return lane_scores(ranker, pop, alpha, items=items)
    return score


def _trained(name: str, spec: dict[str, Any], protocol: Protocol, seed: int, out: Path
             ) -> Path:
    """Train (or reuse, when the saved config matches) model `name` on the log; its run."""
    train_or_reuse(arm_config(name, spec, protocol, seed).to_dict(), str(out))
    return out


def arm_config(name: str, spec: dict[str, Any], protocol: Protocol, seed: int) -> RunConfig:
    """Model `name`'s training config in this study. DeepPRL's weights are learned by DDPG
    whatever the library's default learner: here alpha changes what the user does next,
    which a learner of logged rewards cannot see."""
    base = RunConfig(dataset=spec, seed=seed,
                     train=TrainConfig(epochs=protocol.epochs),
                     policy=PolicyConfig(steps=protocol.policy_steps,
                                         static_trials=protocol.static_trials),
                     eval=EvalConfig(max_events=1000))
    return learned_by_ddpg(configure(name, base))  # a model's own learner (static, dqn) stays


def learned_by_ddpg(config: RunConfig) -> RunConfig:
    """`config` with DDPG as its weight learner where its recipe left the library's
    default learner (DeepPRL's); a recipe's own learner stays. Both paths of the study
    (arm_config and the experiments' runs) pin DDPG through it, serving what DDPG learned
    (fallback "none"): the study measures the learned policy in a world where alpha changes
    what the user does next, which the held-out check on logged rewards cannot see (its
    verdict stays in each run's metrics.json)."""
    if config.policy.algorithm != PolicyConfig().algorithm:
        return config
    return dataclasses.replace(config, policy=dataclasses.replace(
        config.policy, algorithm="ddpg", fallback="none"))


# -- summary ---------------------------------------------------------------------------------


def summarise(protocol: Protocol, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Frontier points per method and checkpoint, volumes, improvement of DeepPRL."""
    names = [*protocol.methods, *[r for r in REFERENCES if r in results[0]]]
    frontiers: dict[str, list[np.ndarray]] = {}
    utility: dict[str, list[float]] = {}
    for name in names:
        points = np.array([r[name]["points"] for r in results])  # [R, A, C, K]
        util = np.array([r[name]["utility"] for r in results])  # [R, A, C]
        if points.shape[1] > 1:  # an alpha sweep: average over runs
            frontiers[name] = [points[:, :, c].mean(0) for c in range(points.shape[2])]
            utility[name] = util.mean(0).max(0).tolist()  # best alpha in hindsight
        else:  # one point per run: the frontier is over runs
            frontiers[name] = [points[:, 0, c] for c in range(points.shape[2])]
            utility[name] = util[:, 0].mean(0).tolist()
    every = np.concatenate([p for fs in frontiers.values() for p in fs])
    ref = every.min(0)
    volume = {name: [dominated_hull_volume(p, ref) for p in fs]
              for name, fs in frontiers.items()}
    baselines = [m for m in protocol.methods if m != "deepprl"]
    improvement, second = [], []
    for c in range(len(protocol.checkpoints)):
        best = max(baselines, key=lambda m: volume[m][c]) if baselines else None
        second.append(best)
        mine = volume["deepprl"][c] if "deepprl" in volume else float("nan")
        other = volume[best][c] if best is not None else float("nan")
        improvement.append(100.0 * (mine / other - 1.0) if other > 0 else float("nan"))
    return {"protocol": dataclasses.asdict(protocol), "reference_point": ref.tolist(),
            "frontiers": {n: [p.tolist() for p in fs] for n, fs in frontiers.items()},
            "volume": volume, "utility": utility, "second_best": second,
            "improvement_pct": improvement, "methods": list(protocol.methods),
            "references": [r for r in REFERENCES if r in names]}
