"""Stage 1: BCE targets, best-epoch selection on validation (and its checkpoint), and the
collapse / divergence flags of deepprl.train.stage1_checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from deepprl.artifacts import build_model
from deepprl.config import ModelConfig, RunConfig, TrainConfig
from deepprl.data.interactions import Interactions
from deepprl.data.sequences import history_index
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.data.splits import Split, temporal_holdout
from deepprl.models.network import PredictorModel
from deepprl.train.checkpoint import Checkpoints
from deepprl.train.stage1 import (
    best_epoch,
    check_targets,
    fit_predictor,
    loss_kinds,
    prediction_loss,
    validation_error,
)
from deepprl.train.stage1_checks import (
    candidate_spreads,
    loss_rise,
    mixture_attention,
    stage1_checks,
    warnings,
    within_event_spread,
)

# small and over-fitted on purpose (a large lr on few events): the validation loss is
# lowest before the end (epoch 6 of 8), so the best epoch is not the last one
MODEL = ModelConfig(item_dim=8, user_dim=4, context_dim=4, hidden=16, tower_hidden=8,
                    objective_embedding_dim=4, history_length=5)
TRAIN = TrainConfig(epochs=8, batch_size=32, lr=0.1)


@pytest.fixture(scope="module")
def sim() -> tuple[Interactions, Split]:
    data = load_simulator(SimulatorConfig(n_users=20, n_items=30, events_per_user=20, seed=1))
    return data, temporal_holdout(data, test_fraction=0.2, valid_fraction=0.2)


def _model(data: Interactions, seed: int = 0) -> PredictorModel:
    torch.manual_seed(seed)
    return build_model(RunConfig(model=MODEL), data)


def _fit(data: Interactions, split: Split, *, epochs: int = TRAIN.epochs,
         checkpoints: Checkpoints | None = None, validate: bool = True
         ) -> tuple[PredictorModel, list[dict[str, float]]]:
    model = _model(data)
    log = fit_predictor(model, data, np.flatnonzero(split.train),
                        dataclasses.replace(TRAIN, epochs=epochs), seed=5,
                        checkpoints=checkpoints,
                        valid_events=np.flatnonzero(split.valid) if validate else None)
    return model, log


def test_bce_refuses_objectives_outside_0_1(sim: tuple[Interactions, Split]) -> None:
    data, _ = sim
    assert ModelConfig().loss == "auto"
    check_targets(data, "bce")  # the simulator's objectives lie in [0, 1]
    scaled = dataclasses.replace(data, objectives=data.objectives * 3)
    with pytest.raises(ValueError, match=r"objective .* spans .*model.loss = 'l1'"):
        check_targets(scaled, "bce")
    check_targets(scaled, "l1")  # the paper's L1 takes any value


def test_auto_loss_is_bce_for_a_binary_objective_and_l1_for_a_continuous_one(
        sim: tuple[Interactions, Split]) -> None:
    """A toy target: column 0 binary, column 1 continuous, column 2 continuous but with
    60% of its values at 0 (its median sits at an end: bce)."""
    data, _ = sim
    rng = np.random.default_rng(0)
    n = len(data.objectives)
    toy = np.stack([(rng.random(n) < 0.3), rng.uniform(0.05, 0.95, n),
                    np.where(rng.random(n) < 0.6, 0.0, rng.random(n))], 1).astype(np.float32)
    toy_data = dataclasses.replace(data, objectives=toy, objective_names=("a", "b", "c"))
    events = np.arange(n)
    assert loss_kinds(toy_data, events, "auto") == ("bce", "l1", "bce")
    assert loss_kinds(toy_data, events, "l1") == ("l1",) * 3
    # the rule reads the given (training) events only: a's values there all continuous
    toy_data.objectives[: n // 2, 0] = 0.5
    assert loss_kinds(toy_data, events[: n // 2], "auto")[0] == "l1"
    # the simulator's objectives are continuous: auto trains both with l1
    assert loss_kinds(data, events, "auto") == ("l1", "l1")
    # an objective outside [0, 1] keeps l1 whatever its share of 0s (bce would refuse it)
    toy_data.objectives[:, 2] *= 3
    assert loss_kinds(toy_data, events, "auto")[2] == "l1"


def test_per_objective_loss_sums_each_objectives_own_loss() -> None:
    y_hat = torch.tensor([[0.2, 0.7], [0.9, 0.4]])
    y = torch.tensor([[0.0, 0.5], [1.0, 0.1]])
    bce = -(torch.log(torch.tensor([0.8, 0.9]))).mean()  # column 0: targets 0 and 1
    l1 = torch.tensor([0.2, 0.3]).mean()  # column 1
    torch.testing.assert_close(prediction_loss(y_hat, y, ("bce", "l1")), bce + l1)
    torch.testing.assert_close(prediction_loss(y_hat, y, "l1"), (y_hat - y).abs().sum(-1).mean())
    with pytest.raises(ValueError, match="unknown loss 'auto'"):
        prediction_loss(y_hat, y, "auto")
    with pytest.raises(ValueError, match="2 losses for 3 objectives"):
        prediction_loss(torch.rand(2, 3), torch.rand(2, 3), ("bce", "l1"))


def test_check_targets_refuses_only_bce_objectives_outside_0_1(
        sim: tuple[Interactions, Split]) -> None:
    data, _ = sim
    scaled = dataclasses.replace(data, objectives=data.objectives * np.array([1.0, 3.0],
                                                                             np.float32))
    check_targets(scaled, ("l1", "l1"))
    check_targets(scaled, ("bce", "l1"))  # o1 stays in [0, 1]
    with pytest.raises(ValueError, match=r"objective 'o2' spans"):
        check_targets(scaled, ("l1", "bce"))


def test_best_epoch_on_validation_is_restored(sim: tuple[Interactions, Split]) -> None:
    data, split = sim
    model, log = _fit(data, split)
    assert all({"valid_loss", "valid_mae"} <= set(r) for r in log)
    best = best_epoch(log)
    assert best < TRAIN.epochs, [r["valid_loss"] for r in log]  # the set-up over-fits
    history = history_index(data, MODEL.history_length)
    now = validation_error(model, data, history, np.flatnonzero(split.valid))
    assert now["valid_loss"] == log[best - 1]["valid_loss"]
    assert now["valid_loss"] < log[-1]["valid_loss"]


def test_without_validation_the_last_epoch_is_kept(sim: tuple[Interactions, Split]) -> None:
    data, split = sim
    model, log = _fit(data, split, validate=False)
    assert "valid_loss" not in log[-1]
    assert best_epoch(log) == TRAIN.epochs
    again, _ = _fit(data, split, validate=True)  # same training, best epoch restored
    differs = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     again.state_dict().values(), strict=True)]
    assert any(differs)


def test_resumed_stage1_keeps_the_same_best_epoch(sim: tuple[Interactions, Split],
                                                   tmp_path: Path) -> None:
    """Broken right after the best epoch and resumed to the end: the model and log of an
    uninterrupted run (the resumed epochs are worse, so the end state is the checkpointed
    best one, not the fresh copy a resumed process starts with)."""
    data, split = sim
    reference, log = _fit(data, split)
    stop = best_epoch(log)
    assert stop < TRAIN.epochs, [r["valid_loss"] for r in log]
    checkpoints = Checkpoints(folder=tmp_path)
    _fit(data, split, epochs=stop, checkpoints=checkpoints)
    resumed, resumed_log = _fit(data, split, checkpoints=checkpoints)
    keys = ("epoch", "loss", "valid_loss", "valid_mae")
    assert [{k: r[k] for k in keys} for r in resumed_log] == \
        [{k: r[k] for k in keys} for r in log]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


# -- collapse and divergence flags ------------------------------------------------------------

def test_within_event_spread_ignores_padding_and_single_candidates() -> None:
    values = np.array([[[0.0], [1.0], [9.0]], [[0.5], [7.0], [7.0]]])  # [E=2, C=3, K=1]
    valid = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_allclose(within_event_spread(values, valid), [0.5])  # event 1 alone
    assert np.isnan(within_event_spread(values, np.zeros((2, 3), dtype=bool))).all()


def test_loss_rise_against_the_best_earlier_epoch() -> None:
    assert loss_rise([0.35, 0.30, 0.60, 0.40]) == pytest.approx(2.0)
    assert loss_rise([1.0, 0.8, 0.7]) == 1.0
    assert loss_rise([0.5]) == 1.0


def test_checks_flag_a_constant_prediction_and_a_rising_loss() -> None:
    checks = stage1_checks(["a", "b", "c"], np.array([0.0, 0.2, 0.1]),
                           np.array([0.3, 0.3, 0.0]), [0.35, 0.6])
    assert checks["collapsed"] == ["a"]
    assert checks["prediction_spread"] == {"a": 0.0, "b": pytest.approx(2 / 3), "c": None}
    assert checks["loss_rose"] and checks["loss_rise"] == pytest.approx(0.6 / 0.35)
    lines = warnings(checks)
    assert len(lines) == 2 and "'a'" in lines[0] and "diverged" in lines[1]
    quiet = stage1_checks(["a"], np.array([0.2]), np.array([0.3]), [0.5, 0.4])
    assert quiet["collapsed"] == [] and not quiet["loss_rose"] and warnings(quiet) == []


def test_a_fitted_predictor_is_not_flagged_and_a_constant_one_is(
        sim: tuple[Interactions, Split]) -> None:
    data, split = sim
    model, log = _fit(data, split)
    test = np.flatnonzero(split.test)
    fitted = stage1_checks(data.objective_names, *candidate_spreads(
        model, data, test, split.test, max_candidates=100, seed=0), [r["loss"] for r in log])
    assert fitted["collapsed"] == [], fitted
    with torch.no_grad():  # every objective's output the same constant, whatever the input
        model.predictor.head.zero_()  # type: ignore[operator]
    constant = stage1_checks(data.objective_names, *candidate_spreads(
        model, data, test, split.test, max_candidates=100, seed=0), [r["loss"] for r in log])
    assert constant["collapsed"] == list(data.objective_names)


def test_mixture_attention_names_a_tower_every_objective_reads() -> None:
    """stage1_checks.mixture_attention: the mean attention [K][K] of an MoH, and the tower
    every objective reads with weight > 0.5 (forced here through the attention's prior)."""
    import math

    data = load_simulator(SimulatorConfig(n_users=10, n_items=12, events_per_user=8,
                                          n_objectives=3))
    events = np.arange(len(data.user))
    config = RunConfig(dataset={"name": "simulator"}, model=ModelConfig(mixture_self_weight=0.9))
    torch.manual_seed(0)
    model = build_model(config, data)
    result = mixture_attention(model, data, events, batch_size=16)  # several batches
    assert result is not None and result["shared_tower"] is None  # each reads its own
    assert all(row[m] > 0.8 for m, row in enumerate(result["mean"]))
    with torch.no_grad():  # every objective's prior on tower 2
        model.predictor.log_prior.copy_(torch.tensor([[-9.0, -9.0, 0.0]] * 3))
        model.predictor.query.weight.zero_()
        model.predictor.key.weight.zero_()
    routed = mixture_attention(model, data, events)
    assert routed is not None and routed["shared_tower"] == 2
    assert all(math.isclose(sum(row), 1, abs_tol=0.01) for row in routed["mean"])
    cross = build_model(RunConfig(dataset={"name": "simulator"},
                                  model=ModelConfig(predictor="cross-stitch")), data)
    assert mixture_attention(cross, data, events) is None
