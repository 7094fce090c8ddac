"""deepprl diagnose: does per-user weighting pay on this log?

Every figure is measured on the run's own held-out stage-2 users (train.pessimism's
stage2_users: users whose events stage 2 never learned from), on their frozen states and
candidate predictions (check_environment), against the best static alpha of the learning
users (best_static). Sections, each a key of diagnose_run's result (docs/diagnose.md):

held_out        the learned policy vs the best static alpha, paired by user (policy_check),
                and what the run itself recorded and served (metrics.json "policy_check")
critic          DDPG runs only: the spread of dR/dalpha over held-out states, from a critic
                refitted the run's way (the run does not save its critic)
vertex_path     reward along alpha = (1 - t) e_k + t * equal, from each vertex inwards
ceiling         the per-event hindsight ceiling (optimistic: alpha picked after the outcome)
alpha_invariant the share of events whose top-K is the same under every grid alpha
predictions     prediction MAE per objective, stage 1's collapse flags, the MoH's attention
verdict         can per-user weights pay here, and how much
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprl.artifacts import load_run, read_json, run_split
from deepprl.config import RunConfig
from deepprl.eval.headroom import grid_rewards
from deepprl.eval.metrics import top_k_reward, top_k_reward_of
from deepprl.io import json_safe
from deepprl.policy.weights import Actor, simplex_grid
from deepprl.ranking.utility import top_k, utility
from deepprl.recommender import Recommender
from deepprl.rl.ddpg import DDPG, Critic, Transitions, explore
from deepprl.train.pessimism import best_static, check_environment, policy_check, stage2_users
from deepprl.train.stage1 import prediction_error
from deepprl.train.stage1_checks import mixture_attention, within_event_spread
from deepprl.train.stage2 import Trajectories, sample_batch, transitions

PATH_T = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0)
"""The steps t of vertex_path: alpha = (1 - t) e_k + t * equal."""
CRITIC_STEPS = 500
"""Default bound on the refitted critic's gradient steps."""
NOT_RECORDED = "not recorded"
LITTLE_HEADROOM = 0.005
"""A hindsight headroom below this (reward units) is "little for any weights to take"."""


def diagnose_run(run: str | Path, *, critic_steps: int = CRITIC_STEPS) -> dict[str, Any]:
    """The diagnosis of a trained weighted run (JSON-safe: NaN becomes null).

    ValueError (a RunError) for an item-level baseline run, a run that cannot be loaded, or
    a run without a held-out event that has more than k candidates."""
    if critic_steps < 1:
        raise ValueError(f"--critic-steps must be >= 1, got {critic_steps}")
    run = Path(run)
    config, ranker = load_run(run)
    if not isinstance(ranker, Recommender):
        raise ValueError(f"{run}: model {config.name!r} is an item-level baseline: it ranks "
                         f"items directly and has no objective weights to diagnose; "
                         f"diagnose needs a weighted model (deepprl or a variant)")
    metrics = _metrics(run)
    data = ranker.data
    split = run_split(data, config)
    learn, check = stage2_users(data, split, config)
    learn_env = check_environment(ranker, data, learn, config)
    held = check_environment(ranker, data, check, config)
    if len(held.sampled) == 0:
        raise ValueError(f"{run}: no held-out user's event has more than k={config.eval.k} "
                         f"candidates; nothing to diagnose (lower --k or use a longer log)")
    static = best_static(learn_env, config)
    names = list(data.objective_names)
    events = _event_rewards(ranker, held, static, config)
    result: dict[str, Any] = {
        "run": str(run), "model": config.name, "algorithm": config.policy.algorithm,
        "k": config.eval.k, "objectives": names,
        "held_out": _held_out(ranker, learn, check, config, learn_env, held, metrics),
        "critic": _critic(ranker, learn_env, held, config, critic_steps, names),
        "vertex_path": _vertex_path(held, config, names),
        "ceiling": _ceiling(events),
        "alpha_invariant": _alpha_invariant(held, config),
        "predictions": _predictions(ranker, split.test, held, metrics, names),
    }
    result["verdict"] = _verdict(result["held_out"], result["ceiling"],
                                 result["alpha_invariant"]["share"])
    out: dict[str, Any] = json_safe(result)
    return out


def _metrics(run: Path) -> dict[str, Any]:
    path = run / "metrics.json"
    loaded = read_json(path) if path.is_file() else {}
    return loaded if isinstance(loaded, dict) else {}


def _event_rewards(ranker: Recommender, held: Trajectories, static: torch.Tensor,
                   config: RunConfig) -> dict[str, torch.Tensor]:
    """Per held-out event [E]: learned, static, best grid point, rank by true reward."""
    k, rows = config.eval.k, held.sampled
    grid = simplex_grid(held.y_hat.shape[2], config.policy.grid_steps)
    with torch.no_grad():
        alpha = ranker.policy(held.state[rows], held.context[rows])  # [E, K]
        learned = top_k_reward(held.y_hat, held.reward, held.valid, alpha, k)
        fixed = top_k_reward(held.y_hat, held.reward, held.valid,
                             static.expand(len(rows), -1), k)
    best_grid = grid_rewards(held.y_hat, held.reward, held.valid, grid, k).max(1).values
    upper = top_k_reward_of(held.reward, held.reward, held.valid, k)
    return {"learned": learned, "static": fixed, "grid": best_grid, "upper": upper}


def _held_out(ranker: Recommender, learn: np.ndarray, check: np.ndarray, config: RunConfig,
              learn_env: Trajectories, held: Trajectories, metrics: dict[str, Any]
              ) -> dict[str, Any]:
    """Section 1: policy_check on the held-out users, and the run's own record."""
    learned = config.policy.algorithm != "static"
    result = policy_check(ranker, ranker.data, learn, check, config, learn_env=learn_env,
                          check_env=held)
    recorded = metrics.get("policy_check")
    out = {"learned_policy": learned, **result,
           "recorded": recorded if recorded is not None else NOT_RECORDED,
           "served": (recorded or {}).get("served", NOT_RECORDED)}
    if not learned:
        out["note"] = ("no learned policy: a static-alpha run, compared with the best "
                       "static grid alpha of the learning users")
    elif isinstance(recorded, dict) and recorded.get("folds"):
        out["note"] = (f"the run's check was cross-fitted over {recorded['folds']} folds "
                       "and its policy refitted on every stage-2 user, these included: the "
                       "gain here is optimistic; \"recorded\" holds the cross-fitted one")
    return out


def _critic(ranker: Recommender, learn_env: Trajectories, held: Trajectories,
            config: RunConfig, steps: int, names: list[str]) -> dict[str, Any]:
    """Section 2: sign spread of dR/dalpha over held-out states (DDPG runs)."""
    if config.policy.algorithm != "ddpg":
        return {"applies": False,
                "reason": f"policy.algorithm is {config.policy.algorithm!r}: no critic"}
    actor = ranker.policy
    if not isinstance(actor, Actor):  # DDPG's critic takes the Actor's gradient path
        return {"applies": False, "reason": f"the policy is a {type(actor).__name__}"}
    critic, fit = refit_critic(actor, learn_env, config, steps)
    rows = held.sampled
    s, c = held.state[rows], held.context[rows]
    with torch.no_grad():
        alpha = ranker.policy(s, c)  # [E, K]: the gradient where the policy acts
    alpha.requires_grad_(True)
    now, _ = critic.parts(s, c, alpha)
    (grad,) = torch.autograd.grad(now.sum(), alpha)  # [E, K]
    mean, std, differs = sign_spread(grad)
    return {"applies": True, "refitted": True, "steps": steps, **fit,
            "note": "a critic refitted the run's way (the decomposed critic's immediate part "
                    "R(s, C, alpha) on the rewards of exploration actions around the run's "
                    "actor, on the learning users): the run does not save its critic",
            "direction": "d R / d alpha along e_k - equal (the gradient minus its mean "
                         "over objectives); for K = 2 objective 1's is half of "
                         "dR/d(alpha_1 - alpha_2) and objective 2's its negative",
            "per_objective": {n: {"mean": float(mean[i]), "std": float(std[i]),
                                  "sign_differs_share": float(differs[i])}
                              for i, n in enumerate(names)},
            "states": len(rows)}


def sign_spread(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad [E, K] (dR/dalpha per state) -> per objective [K]: the mean and std over states
    of its component along e_k - equal (the gradient minus its mean over objectives: the
    simplex's direction towards vertex k), and the share of states whose sign of that
    component differs from the mean's."""
    tangent = grad - grad.mean(1, keepdim=True)  # [E, K]
    mean = tangent.mean(0)  # [K]
    differs = (torch.sign(tangent) != torch.sign(mean)).float().mean(0)  # [K]
    return mean, tangent.std(0), differs


def refit_critic(actor: Actor, env: Trajectories, config: RunConfig, steps: int
                 ) -> tuple[Critic, dict[str, float]]:
    """A DDPG critic fitted as the run's stage 2 fits it (decomposed: R on the reward of
    exploration actions around the fixed, trained actor), `steps` batches of
    policy.batch_size; returns it and R's squared error on a last fresh batch beside the
    variance of that batch's rewards."""
    p = config.policy
    torch.manual_seed(config.seed)
    critic = Critic(state_dim=env.state.shape[1], context_dim=env.context.shape[1],
                    n_objectives=env.y_hat.shape[2], hidden=p.hidden, layers=p.layers,
                    use_context=p.use_context)
    algo = DDPG(actor, critic, gamma=p.gamma, tau=p.tau, actor_lr=p.actor_lr,
                critic_lr=p.critic_lr, decomposed=True)
    gen = torch.Generator().manual_seed(config.seed)
    if len(env.sampled) == 0:
        raise ValueError("no learning event has more than k candidates: no critic to fit")
    for _ in range(steps):
        algo.critic_step(_exploration_batch(actor, env, config, gen))
        algo.update_targets()
    t = _exploration_batch(actor, env, config, gen)  # a batch it has not been fitted on
    with torch.no_grad():
        now, _ = critic.parts(t.state, t.context, t.action)
    return critic, {"fit_mse": float((now - t.reward).pow(2).mean()),
                    "reward_variance": float(t.reward.var())}


def _exploration_batch(actor: Actor, env: Trajectories, config: RunConfig,
                       gen: torch.Generator) -> Transitions:
    """policy.batch_size events, the actor's alpha with stage 2's exploration noise, and the
    reward of that alpha's top-K."""
    j = sample_batch(env, config.policy.batch_size, gen)
    row = env.sampled[j]
    with torch.no_grad():
        action = explore(actor(env.state[row], env.context[row]), config.policy.exploration,
                         gen, vertex_share=config.policy.vertex_exploration)
        r = top_k_reward(env.y_hat[j], env.reward[j], env.valid[j], action, config.eval.k)
    return transitions(env, j, action, r)


def _vertex_path(held: Trajectories, config: RunConfig, names: list[str]) -> dict[str, Any]:
    """Section 3: mean reward over held-out events from each vertex towards equal."""
    n = held.y_hat.shape[2]
    eye, equal = torch.eye(n), torch.full((n,), 1.0 / n)
    alphas = torch.stack([(1 - t) * eye[i] + t * equal for i in range(n) for t in PATH_T])
    rewards = grid_rewards(held.y_hat, held.reward, held.valid, alphas,
                           config.eval.k).mean(0).view(n, len(PATH_T))  # [K, T]
    return {"t": list(PATH_T), "events": len(held.sampled),
            "from_vertex": {name: {"reward": rewards[i].tolist(),
                                   "vertex_jump": float(rewards[i, 0] - rewards[i, 1])}
                            for i, name in enumerate(names)}}


def _ceiling(events: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Section 4: means over held-out events; the hindsight ceiling is optimistic."""
    hindsight = torch.stack([events["grid"], events["learned"], events["static"]]).max(0)
    static, hind = float(events["static"].mean()), float(hindsight.values.mean())
    return {"static": static, "learned": float(events["learned"].mean()),
            "hindsight": hind, "headroom": hind - static,
            "upper_bound": float(events["upper"].mean()),
            "events": len(events["static"]),
            "optimistic": True,
            "note": "hindsight: per event the best of the grid alphas, the learned and the "
                    "static alpha, picked after seeing the outcome (optimistic); "
                    "upper_bound: rank by the true reward"}


def _alpha_invariant(held: Trajectories, config: RunConfig) -> dict[str, Any]:
    """Section 5: share of held-out events whose top-K set no grid alpha changes."""
    k, n = config.eval.k, len(held.sampled)
    grid = simplex_grid(held.y_hat.shape[2], config.policy.grid_steps)
    same = torch.ones(n, dtype=torch.bool)
    first: torch.Tensor | None = None
    for alpha in grid:
        idx = top_k(utility(held.y_hat, alpha.expand(n, -1)), held.valid, k)
        chosen = idx.sort(1).values  # [E, k] as a set
        first = chosen if first is None else first
        same &= (chosen == first).all(1)
    return {"share": float(same.float().mean()), "events": n, "grid_points": len(grid)}


def _predictions(ranker: Recommender, test: np.ndarray, held: Trajectories,
                 metrics: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Section 6: MAE per objective, collapse flags, prediction spread over candidates, the
    MoH's mixture attention (which tower each objective reads)."""
    recorded = metrics.get("test_mae")
    mae = recorded if isinstance(recorded, dict) else prediction_error(
        ranker.model, ranker.data, np.flatnonzero(test))
    spread = within_event_spread(held.y_hat.numpy(), held.valid.numpy())  # [K]
    return {"test_mae": mae, "mae_source": "metrics.json" if recorded is not None
            else "recomputed on the test events",
            "collapse_flags": metrics.get("stage1_checks", NOT_RECORDED),
            "best_epoch": metrics.get("best_epoch", NOT_RECORDED),
            "spread_across_candidates": dict(zip(names, spread.tolist(), strict=True)),
            "mixture_attention": mixture_attention(ranker.model, ranker.data,
                                                   np.flatnonzero(test))}


def _number(value: Any) -> float:
    """A recorded figure as a float; NaN where it is missing or null."""
    return float(value) if isinstance(value, int | float) else float("nan")


def _verdict(held_out: dict[str, Any], ceiling: dict[str, Any], invariant: float
             ) -> dict[str, Any]:
    """Section 7: does the learned policy pay, and what share of the headroom it takes."""
    headroom = ceiling["headroom"]
    source, recorded = held_out, held_out.get("recorded")
    if isinstance(recorded, dict) and recorded.get("folds"):
        source = recorded  # cross-fitted: each user judged by a fold's policy that never saw it
    gain = _number(source.get("gain"))
    bound = _number(source.get("gain_lower_bound"))
    # both over events (the gain above is over users): the share of the headroom taken
    taken = ceiling["learned"] - ceiling["static"]
    captured = taken / headroom if headroom > 0 else float("nan")
    pays = bool(held_out["learned_policy"] and math.isfinite(bound) and bound > 0)
    room = (f"hindsight headroom over the best static alpha {headroom:+.4f} (optimistic); "
            f"{invariant:.0%} of events rank the same top-K under every grid alpha")
    if not held_out["learned_policy"]:
        text = f"no learned policy (a static-alpha run); {room}"
    elif pays:
        text = (f"yes: per-user weights pay here: +{gain:.4f} over the best static alpha "
                f"on held-out users (95% lower bound {bound:+.4f}), "
                f"taking {captured:.0%} of the {room}")
    else:
        why = ("little for any weights to take" if headroom < LITTLE_HEADROOM else
               "there is headroom the learner did not take")
        text = (f"not shown: the learned policy's gain on held-out users is {gain:+.4f} "
                f"(95% lower bound {bound:+.4f}: not above zero); {why}: {room}")
    return {"pays": pays, "gain": gain, "gain_lower_bound": bound, "headroom": headroom,
            "captured_share": captured, "text": text}
