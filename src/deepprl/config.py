"""Frozen configs, one per component; every field has a default and a one-line docstring.

Saved as JSON with every run (`to_dict`) and read back with `from_dict`, which rejects
unknown keys so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

VALIDATIONS = ("auto", "fraction", "test-window")
"""train.validation: how the temporal split's validation windows are chosen."""


def _require(where: str, ok: bool, rule: str, value: object) -> None:
    """ValueError naming the field and the rule when `ok` is false."""
    if not ok:
        raise ValueError(f"{where} must be {rule}, got {value!r}")


def _at_least(section: object, prefix: str, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(f"{prefix}.{name}", value >= minimum, f">= {minimum}", value)


def _positive(section: object, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(f"{prefix}.{name}", math.isfinite(value) and value > 0, "a positive number",
                 value)


def _share(section: object, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(f"{prefix}.{name}", 0 <= value <= 1, "in [0, 1]", value)


def _one_of(section: object, prefix: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(section, name)
    _require(f"{prefix}.{name}", value in choices, f"one of {list(choices)}", value)


@dataclass(frozen=True)
class ModelConfig:
    """Embedding layer, user-state encoder and objective predictor (paper §4.2-4.3)."""

    encoder: str = "sa-time-lstm"
    """Registered encoder name (see deepprl.models.encoders.ENCODERS)."""
    predictor: str = "moh"
    """Registered predictor name (see deepprl.models.predictors.PREDICTORS)."""
    history_length: int = 10
    """L: the user's last L events form the sequence (paper: last 10 products)."""
    item_dim: int = 32
    """Item embedding size (id embedding + projected item features)."""
    user_dim: int = 16
    """User embedding size (id embedding + projected user features)."""
    context_dim: int = 16
    """Size of the projected context vector."""
    hidden: int = 64
    """Hidden units of the Time-LSTM and of the hypernetwork (paper: 64)."""
    tower_hidden: int = 32
    """Width of each generated tower's hidden vector (the MoH's last tower layer; the
    baselines' towers)."""
    tower_layers: int = 2
    """ReLU layers of each MoH tower the hypernetwork generates: widths hidden, ...,
    tower_hidden (1: the paper's single layer; 2: hidden then tower_hidden, the depth of
    every baseline's path per objective, fits better: docs/model.md). Other predictors
    ignore it."""
    objective_embedding_dim: int = 16
    """Size of the learned objective embedding fed to the hypernetwork."""
    attention_similarity: str = "neg_sq_dist"
    """Self-attention score: neg_sq_dist (scaled negative squared distance) or dot."""
    mixture_self_weight: float = 0.0
    """The MoH's mixture attention: 0 is the paper's plain softmax of the tower
    similarities, which starts uniform; w in (0, 1) adds a constant log prior, so that
    where the towers are still alike (at initialisation) objective m attends w to its own
    tower and (1 - w) / (K - 1) to each other one, as a cross-stitch unit starts (0.9).
    With three objectives on MovieLens-100K the prior stopped the attention from routing
    every objective to one tower and lowered the MAE, but cost reward on every seed, so it
    is off by default (docs/model.md, "Stage 1"). Other predictors ignore it."""
    use_attention: bool = True
    """Self-attention over the history inputs (off: Time-LSTM, ablation variant 1)."""
    use_time_gate: bool = True
    """Time gate T_k in the LSTM cell (off: self-attentive LSTM, ablation variant 2)."""
    use_user_id: bool = True
    """Learn an id embedding per user besides the user-feature projection."""
    loss: str = "auto"
    """Prediction loss: auto (per objective: bce where it lies in [0, 1] and at least half of
    its training values lie within 0.01 of 0 or 1, else l1; stage1.loss_kinds), bce (binary
    cross-entropy, objectives in [0, 1]) or l1 (paper eq. 2, which saturates the sigmoid
    where targets are mostly 0 or 1). docs/model.md, "Stage 1"."""

    def __post_init__(self) -> None:
        _at_least(self, "model", 1, "history_length", "item_dim", "user_dim", "context_dim",
                  "hidden", "tower_hidden", "tower_layers", "objective_embedding_dim")
        _one_of(self, "model", "attention_similarity", ("neg_sq_dist", "dot"))
        _one_of(self, "model", "loss", ("l1", "bce", "auto"))
        _require("model.mixture_self_weight", 0.0 <= self.mixture_self_weight < 1.0,
                 "0 (off) or in (0, 1)", self.mixture_self_weight)


@dataclass(frozen=True)
class TrainConfig:
    """Stage 1: the predictor and encoder, trained on logged objectives."""

    epochs: int = 8
    """Passes over the training events."""
    batch_size: int = 256
    """Events per step (paper: 32 with SGD; 256 with Adam trains faster on CPU)."""
    lr: float = 2e-3
    """Learning rate."""
    optimizer: str = "adam"
    """adam or sgd (the paper's SGD with lr 0.01)."""
    weight_decay: float = 0.0
    """L2 penalty."""
    split: str = "temporal"
    """temporal (per-user hold-out of the latest events) or kfold (time-stratified)."""
    test_fraction: float = 0.2
    """Per-user share of the latest events held out for testing (split = temporal)."""
    valid_fraction: float = 0.1
    """Validation (static-weight tuning; the predictor never trains on it): with split =
    temporal, a share of each user's events (of all of them, like test_fraction), taken
    just before the test period; with split = kfold, any value > 0 validates on the next
    fold. 0: no validation."""
    validation: str = "auto"
    """Temporal validation windows: fraction (valid_fraction of each user's events),
    test-window (each at least as long as the user's test window) or auto (fraction,
    unless it leaves too few validation events with more than eval.k candidates; see
    deepprl.data.splits.choose_split). train.log says which was chosen."""
    folds: int = 5
    """Number of time-stratified folds (split = kfold; paper: 5)."""
    fold: int = 0
    """Which fold is the test set (split = kfold), 0 .. folds - 1."""
    max_candidates: int = 100
    """Cap on a user's candidate set during policy training (seeded subsample)."""

    def __post_init__(self) -> None:
        _at_least(self, "train", 1, "epochs", "batch_size", "max_candidates")
        _at_least(self, "train", 2, "folds")
        _positive(self, "train", "lr")
        _require("train.weight_decay", math.isfinite(self.weight_decay)
                 and self.weight_decay >= 0, ">= 0", self.weight_decay)
        _one_of(self, "train", "optimizer", ("adam", "sgd"))
        _one_of(self, "train", "split", ("temporal", "kfold"))
        _one_of(self, "train", "validation", VALIDATIONS)
        _require("train.test_fraction", 0 < self.test_fraction < 1, "in (0, 1)",
                 self.test_fraction)
        _require("train.valid_fraction", 0 <= self.valid_fraction < 1 - self.test_fraction,
                 f"in [0, 1 - train.test_fraction) = [0, {1 - self.test_fraction:g})",
                 self.valid_fraction)
        _require("train.fold", 0 <= self.fold < self.folds,
                 f"in [0, train.folds - 1] = [0, {self.folds - 1}]", self.fold)


@dataclass(frozen=True)
class PolicyConfig:
    """Stage 2: the contextual actor-critic that sets the objective weights (paper §4.3)."""

    algorithm: str = "bandit"
    """How the weights are learned: bandit (full-information contextual bandit over a grid
    on the simplex: the default on logged data, where alpha does not change the next
    state), ddpg (the paper's contextual policy gradient), dqn (grid over the simplex),
    reinforce (Dirichlet policy) or static (Optuna on validation)."""
    dynamic: bool = True
    """Recompute alpha at every event (off: each user keeps the alpha of their last event
    before the test period: the w/o-dynamic-updating variant)."""
    gamma: float = 0.99
    """Discount of future rewards (paper: 0.99)."""
    tau: float = 0.05
    """Soft-update rate of the target networks (paper §5.2: 0.05)."""
    hidden: int = 64
    """Hidden units of actor and critic (paper: 64)."""
    layers: int = 3
    """Hidden layers of actor and critic (paper: 3, sigmoid; the actor's are LayerNorm +
    ReLU here, see docs/model.md)."""
    steps: int = 3000
    """Gradient steps of the actor-critic."""
    batch_size: int = 256
    """Transitions per step."""
    actor_lr: float = 1e-3
    """Actor learning rate."""
    critic_lr: float = 2e-3
    """Critic learning rate."""
    exploration: float = 0.3
    """Share of Dirichlet(1) noise mixed into the action: keeps alpha on the simplex."""
    critic: str = "decomposed"
    """td (plain eq. 5) or decomposed (reward part + future part; logged trajectories)."""
    use_context: bool = True
    """Feed the context to actor and critic (off: the w/o-contextualisation variant)."""
    max_events: int = 30000
    """Cap on training transitions (seeded subsample of users' trajectories)."""
    grid_steps: int = 10
    """bandit, dqn and the pessimism check: the simplex grid has coordinates in
    {0, 1/steps, ..., 1} (vertices included)."""
    epsilon: float = 0.1
    """dqn: probability of a uniformly random grid point while learning."""
    concentration: float = 20.0
    """reinforce: Dirichlet concentration around the actor's mean."""
    samples: int = 4
    """reinforce: actions sampled per state (leave-one-out baseline)."""
    bandit_lr: float = 1e-3
    """bandit: AdamW learning rate of the grid-reward regression."""
    weight_decay: float = 1e-4
    """bandit: AdamW weight decay (against overfitting the learning users)."""
    stop_share: float = 0.15
    """bandit: where the split has no validation events (which otherwise choose the
    number of steps), the share of the learning users that does."""
    patience: int = 10
    """bandit: early-stopping checks (every 100 steps) without a better greedy reward on
    the stopping users before the search for the number of steps stops (the policy is then
    refitted on every learning user for the best number found)."""
    static_trials: int = 60
    """static: Optuna (TPE) trials over the simplex, scored on validation events."""
    holdout_share: float = 0.2
    """Share of the users kept out of stage 2 to check the learned policy against the best
    static alpha on users it never saw (see deepprl.train.pessimism); the bandit
    cross-fits instead (check_folds)."""
    check_folds: int = 5
    """bandit: the pessimism check is cross-fitted over this many folds of the stage-2
    users (fit on the others, check on one fold, every user checked once; one pooled
    paired test) and the policy served is refitted on every user: check_folds + 1 fits.
    1: a single held-out share (holdout_share), as ddpg, dqn, reinforce and torchrun do."""
    fallback: str = "static"
    """static: a run whose learned policy does not beat the best static alpha on the
    held-out users (one-sided 95% lower bound of the per-user gain <= 0) serves that static
    alpha instead; none: keep the learned policy (the check is still recorded)."""
    logit_penalty: float = 1e-3
    """ddpg: lambda of the actor's penalty lambda * mean((logit - mean logit)^2), which
    keeps a vertex of the simplex from absorbing the softmax actor (0: off)."""
    vertex_exploration: float = 0.1
    """ddpg: share of exploration actions that are an exact vertex of the simplex, drawn
    uniformly (the rest mix Dirichlet(1) noise into the actor's alpha)."""

    def __post_init__(self) -> None:
        _one_of(self, "policy", "algorithm", ("bandit", "ddpg", "dqn", "reinforce", "static"))
        _require("policy.stop_share", 0 < self.stop_share < 1, "in (0, 1)", self.stop_share)
        _one_of(self, "policy", "critic", ("td", "decomposed"))
        _one_of(self, "policy", "fallback", ("static", "none"))
        _require("policy.holdout_share", 0 < self.holdout_share < 1, "in (0, 1)",
                 self.holdout_share)
        _at_least(self, "policy", 1, "hidden", "layers", "steps", "batch_size", "grid_steps",
                  "static_trials")
        _at_least(self, "policy", 0, "max_events")
        _at_least(self, "policy", 2, "samples")
        _at_least(self, "policy", 1, "patience", "check_folds")
        _share(self, "policy", "gamma", "exploration", "epsilon", "vertex_exploration")
        _require("policy.logit_penalty", math.isfinite(self.logit_penalty)
                 and self.logit_penalty >= 0, "a number >= 0", self.logit_penalty)
        _require("policy.tau", 0 < self.tau <= 1, "in (0, 1]", self.tau)
        _positive(self, "policy", "actor_lr", "critic_lr", "concentration", "bandit_lr")
        _require("policy.weight_decay", math.isfinite(self.weight_decay)
                 and self.weight_decay >= 0, "a number >= 0", self.weight_decay)


@dataclass(frozen=True)
class EvalConfig:
    """Offline protocol (paper Table 4)."""

    k: int = 10
    """Top-K recommended per event."""
    max_events: int = 5000
    """Cap on evaluated test events (seeded subsample); 0 for all."""

    def __post_init__(self) -> None:
        _at_least(self, "eval", 1, "k")
        _at_least(self, "eval", 0, "max_events")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved as config.json in the run directory."""

    name: str = "deepprl"
    """Registered model (deepprl models); the sections below hold its settings."""
    dataset: dict[str, Any] = field(default_factory=lambda: {"name": "simulator"})
    """How to rebuild the data: {"name": ..., options} or {"data": path, "mapping": {...}}."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Predictor and encoder."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage 1."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Stage 2."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    baseline: dict[str, Any] = field(default_factory=dict)
    """Overrides of an item-level baseline's own config (deepprl.baselines)."""
    seed: int = 0
    """Seed of every random draw of the run."""

    def __post_init__(self) -> None:
        _require("seed", isinstance(self.seed, int) and 0 <= self.seed < 2**32,
                 "an integer in [0, 2**32)", self.seed)
        _require("dataset", isinstance(self.dataset, dict), "an object", self.dataset)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        _check_keys(cls, raw, "run config")
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            kind = _SECTIONS.get(key)
            kwargs[key] = build(kind, value, key) if kind is not None else value
        return cls(**kwargs)


_SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig,
                              "policy": PolicyConfig, "eval": EvalConfig}


def build(kind: type[T], raw: dict[str, Any], where: str) -> T:
    """Instantiate a config dataclass from a dict, rejecting unknown keys and wrong types."""
    _check_keys(kind, raw, where)
    defaults = kind()
    values = dict(raw)
    for name, value in raw.items():
        default = getattr(defaults, name)
        if isinstance(default, tuple) and isinstance(value, list | tuple):  # JSON has lists
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                raise ValueError(f"{where}.{name} must be a list of numbers, got {value!r}")
            values[name] = tuple(value)
            continue
        expected: tuple[type, ...] = (int, float) if type(default) is float else (type(default),)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise ValueError(f"{where}.{name} must be {type(default).__name__}, got {value!r}")
    return kind(**values)


def _check_keys(kind: type, raw: dict[str, Any], where: str) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(names)}")
