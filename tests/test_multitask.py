"""Multi-task predictors (Shared-Bottom, MMoE, PLE, Cross-Stitch, MoSE) and the sequence
encoders (LSTM experts, causal Transformer): conformance over the registries, the gates,
hand references, causality and padding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from conftest import assert_gradients
from deepprl.artifacts import build_model
from deepprl.config import ModelConfig, RunConfig
from deepprl.data.sequences import history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.models.encoders import ENCODERS
from deepprl.models.multitask import (
    CrossStitch,
    MultiGateMixtureOfExperts,
    ProgressiveLayeredExtraction,
    cross_stitch_init,
)
from deepprl.models.predictors import PREDICTORS
from deepprl.models.sequential import (
    MOSE_EXPERTS,
    CausalTransformer,
    LSTMExperts,
    MixtureOfSequentialExperts,
)

NEW_PREDICTORS = ["shared-bottom", "mmoe", "ple", "cross-stitch", "mose"]
NEW_ENCODERS = ["transformer", "lstm-experts"]
DU, DI, K, HID, TOWER = 5, 4, 3, 6, 5
MOSE_USER = MOSE_EXPERTS * HID + DU  # expert states, then user embedding and context


def _predictor(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return PREDICTORS[name][0](
        user_dim=MOSE_USER if name == "mose" else DU, item_dim=DI, n_objectives=K,
        hidden=HID, tower_hidden=TOWER, objective_embedding_dim=4, similarity="dot")


def _inputs(name: str, B: int = 7, C: int = 9, seed: int = 1
            ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    user = torch.randn(B, MOSE_USER if name == "mose" else DU, generator=g)
    return user, torch.randn(B, C, DI, generator=g)


def _assert_all_grads(module: torch.nn.Module, zero: tuple[str, ...] = ()) -> None:
    assert_gradients([(n, p.grad) for n, p in module.named_parameters()], zero=zero)


# -- predictors: conformance over the registry ----------------------------------------------

@pytest.mark.parametrize("name", NEW_PREDICTORS)
def test_predictor_shapes_range_and_gradients(name: str) -> None:
    model = _predictor(name)
    user, items = _inputs(name)
    y_hat = model(user, items)
    assert y_hat.shape == (7, 9, K)
    assert ((y_hat > 0) & (y_hat < 1)).all()
    model.double()  # gradients in float64 (see assert_gradients)
    y_hat = model(user.double(), items.double())
    (y_hat - torch.rand_like(y_hat)).abs().sum().backward()
    _assert_all_grads(model)


@pytest.mark.parametrize("name", NEW_PREDICTORS)
def test_predictor_scores_candidates_independently(name: str) -> None:
    """The user part is computed once per event, yet each candidate's prediction is the one
    it gets alone: no mixing across candidates or events."""
    model = _predictor(name)
    user, items = _inputs(name, B=4, C=5)
    joint = model(user, items)
    for c in range(5):
        alone = model(user, items[:, c : c + 1])[:, 0]
        torch.testing.assert_close(joint[:, c], alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(user[2:3], items[2:3]), joint[2:3], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NEW_PREDICTORS)
def test_predictor_state_dict_round_trip(name: str) -> None:
    model, other = _predictor(name, seed=0), _predictor(name, seed=5)
    user, items = _inputs(name)
    assert (model(user, items) - other(user, items)).abs().max() > 1e-4
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    other.load_state_dict(load(io.BytesIO(blob).getvalue()))
    torch.testing.assert_close(other(user, items), model(user, items), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["mmoe", "mose"])
def test_gates_are_softmax_rows(name: str) -> None:
    model = _predictor(name)
    user, items = _inputs(name)
    model(user * 5, items * 5)
    gates = model.last_gates
    assert isinstance(gates, torch.Tensor)
    n_experts = 4 if name == "mmoe" else MOSE_EXPERTS
    assert gates.shape == (7, 9, K, n_experts)
    assert (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(7, 9, K), atol=1e-6, rtol=0)
    assert gates.std(dim=(0, 1)).max() > 1e-3  # gates depend on the input


def test_factories_reject_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_experts"):
        MultiGateMixtureOfExperts(user_dim=3, item_dim=2, n_objectives=2, n_experts=0)
    with pytest.raises(ValueError, match="expert_dims"):
        ProgressiveLayeredExtraction(user_dim=3, item_dim=2, n_objectives=2, expert_dims=[])
    with pytest.raises(ValueError, match="lstm-experts"):  # a state without expert states
        MixtureOfSequentialExperts(user_dim=10, item_dim=2, n_objectives=2, hidden=8)


# A linear layer's bias right before a BatchNorm (training mode: batch statistics) cancels in
# the normalisation's mean subtraction, so no loss can move it: its gradient is exactly zero.
BEFORE_BATCH_NORM: dict[str, tuple[str, ...]] = {
    "shared-bottom": ("first.bias", "towers.layers.0.bias"),
    "mmoe": ("first.bias", "towers.layers.0.bias"),
    "ple": ("levels.0.pair.bias", "levels.1.expert_in.bias", "levels.1.task_gate.bias",
            "towers.layers.0.bias"),
}


@pytest.mark.parametrize(("name", "normalised"), [
    ("shared-bottom", HID + K * TOWER),  # bottom, towers
    ("mmoe", 4 * HID + K * 4 + K * TOWER),  # experts, gates, towers
    ("ple", 2 * ((K + 2) * HID + K * 3) + (K + 2) + K * TOWER),  # 2 levels, 1 shared gate
])
def test_batch_norm_option(name: str, normalised: int) -> None:
    """batch_norm=True: a BatchNorm before every ReLU and gate softmax (torch-rechub's MLP
    block), trained on batch statistics, scoring candidates independently in eval mode."""
    torch.manual_seed(0)
    model = PREDICTORS[name][0](user_dim=DU, item_dim=DI, n_objectives=K, hidden=HID,
                                tower_hidden=TOWER, objective_embedding_dim=4,
                                similarity="dot", batch_norm=True).double()  # float64 grads
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert sum(m.num_features for m in norms) == normalised
    user, items = (x.double() for x in _inputs(name, B=6, C=4))
    y_hat = model(user, items)
    assert y_hat.shape == (6, 4, K) and ((y_hat > 0) & (y_hat < 1)).all()
    (y_hat - torch.rand_like(y_hat)).abs().sum().backward()
    _assert_all_grads(model, zero=BEFORE_BATCH_NORM[name])
    assert all(m.num_batches_tracked.item() == 1 for m in norms)
    model.eval()
    joint = model(user, items)
    torch.testing.assert_close(model(user, items[:, 1:2])[:, 0], joint[:, 1], atol=1e-6, rtol=0)


# -- MMoE and PLE against naive loops -----------------------------------------------------

def _concat(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return torch.cat([user[:, None].expand(-1, items.shape[1], -1), items], dim=-1)


def _tower(model_towers: torch.nn.Module, k: int, h: torch.Tensor) -> torch.Tensor:
    layers = list(model_towers.layers)  # type: ignore[attr-defined]
    for i, layer in enumerate(layers):
        h = h @ layer.weight[k] + layer.bias[k]
        if i < len(layers) - 1:
            h = torch.relu(h)
    return torch.sigmoid(h[..., 0])


def test_mmoe_matches_naive_loop() -> None:
    model = _predictor("mmoe")
    assert isinstance(model, MultiGateMixtureOfExperts)
    user, items = _inputs("mmoe")
    x = _concat(user, items)
    W, b, E, H = model.first.weight, model.first.bias, 4, HID
    experts = [torch.relu(x @ W[:, e * H : (e + 1) * H] + b[e * H : (e + 1) * H])
               for e in range(E)]
    ys = []
    for k in range(K):
        lo = E * H + k * E
        gate = torch.softmax(x @ W[:, lo : lo + E] + b[lo : lo + E], dim=-1)
        mixed = sum(gate[..., e : e + 1] * experts[e] for e in range(E))
        ys.append(_tower(model.towers, k, mixed))
    torch.testing.assert_close(model(user, items), torch.stack(ys, -1), atol=1e-6, rtol=0)


def _ple_reference(model: ProgressiveLayeredExtraction, user: torch.Tensor,
                   items: torch.Tensor) -> torch.Tensor:
    """PLE by its definition, one expert and one gate at a time."""
    x = _concat(user, items)
    inputs: list[torch.Tensor] = [x] * (K + 1)  # x_1 .. x_K, x_shared
    for level in model._levels():
        _, E, G, H1 = level.sizes
        m, s = level.n_specific, level.n_shared
        group = [e // m if e < K * m else K for e in range(E)]
        if level.pair is not None:
            W, b = level.pair.weight, level.pair.bias

            def block(lo: int, width: int, inp: torch.Tensor, W=W, b=b) -> torch.Tensor:
                return inp @ W[:, lo : lo + width] + b[lo : lo + width]
            pre = [block(e * H1, H1, x) for e in range(E)]
            task_logits = [block(E * H1 + k * G, G, x) for k in range(K)]
            shared_logits = block(E * H1 + K * G, E, x) if level.has_shared_gate else None
        else:
            assert level.expert_in is not None and level.task_gate is not None
            ei, tg = level.expert_in, level.task_gate
            assert ei.bias is not None and tg.bias is not None
            pre = [inputs[group[e]] @ ei.weight[e] + ei.bias[e] for e in range(E)]
            task_logits = [inputs[k] @ tg.weight[k] + tg.bias[k] for k in range(K)]
            shared_logits = level.shared_gate(inputs[K]) if level.shared_gate is not None \
                else None
        f = [torch.relu(p) for p in pre]
        outs = []
        for k in range(K):
            gate = torch.softmax(task_logits[k], dim=-1)
            own = [k * m + j for j in range(m)] + [K * m + j for j in range(s)]
            outs.append(sum(gate[..., i : i + 1] * f[e] for i, e in enumerate(own)))
        if shared_logits is not None:
            gate = torch.softmax(shared_logits, dim=-1)
            outs.append(sum(gate[..., e : e + 1] * f[e] for e in range(E)))
        inputs = outs  # type: ignore[assignment]
    return torch.stack([_tower(model.towers, k, inputs[k]) for k in range(K)], dim=-1)


@pytest.mark.parametrize(("levels", "specific", "shared"), [(1, 1, 2), (2, 1, 2), (3, 2, 1)])
def test_ple_matches_naive_loop(levels: int, specific: int, shared: int) -> None:
    torch.manual_seed(0)
    model = ProgressiveLayeredExtraction(user_dim=DU, item_dim=DI, n_objectives=K, hidden=HID,
                                         tower_hidden=TOWER, n_levels=levels,
                                         n_specific=specific, n_shared=shared)
    user, items = _inputs("ple")
    torch.testing.assert_close(model(user, items), _ple_reference(model, user, items),
                               atol=1e-6, rtol=0)


def test_ple_with_one_level_is_cgc() -> None:
    """One level: K m + s experts, one gate per objective over its own m and the s shared
    experts, and no shared gate (its output would go nowhere)."""
    torch.manual_seed(0)
    model = ProgressiveLayeredExtraction(user_dim=DU, item_dim=DI, n_objectives=K, hidden=HID,
                                         tower_hidden=TOWER, n_levels=1, n_specific=2,
                                         n_shared=1)
    (level,) = model._levels()
    assert level.shared_gate is None and not level.has_shared_gate
    assert level.pair is not None
    assert level.pair.weight.shape[1] == (K * 2 + 1) * HID + K * 3  # experts + task gates
    assert level.task_experts.tolist() == [[0, 1, 6], [2, 3, 6], [4, 5, 6]]
    model(*_inputs("ple"))
    assert model.last_shared_gates == []


def test_ple_gates_are_softmax_rows_at_every_level() -> None:
    model = _predictor("ple")
    assert isinstance(model, ProgressiveLayeredExtraction)
    model(*_inputs("ple"))
    gates, shared = model.last_gates, model.last_shared_gates
    assert len(gates) == 2 and len(shared) == 1
    for g, width in [(gates[0], 3), (gates[1], 3), (shared[0], K + 2)]:
        assert g is not None and g.shape[-1] == width
        assert (g >= 0).all()
        torch.testing.assert_close(g.sum(-1), torch.ones(g.shape[:-1]), atol=1e-6, rtol=0)


# -- Cross-Stitch ------------------------------------------------------------------------------

def test_cross_stitch_starts_near_identity() -> None:
    expected = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    torch.testing.assert_close(cross_stitch_init(3, 0.9), expected)
    torch.testing.assert_close(cross_stitch_init(2, 0.9), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    model = _predictor("cross-stitch")
    assert isinstance(model, CrossStitch)
    assert len(model.stitches) == 2  # after each of the two hidden layers
    for alpha in model.stitches:
        torch.testing.assert_close(alpha.detach(), expected)


@pytest.mark.parametrize("identity", [False, True])
def test_cross_stitch_units_mix_the_columns(identity: bool) -> None:
    """Perturbing column 0 moves objective 1 through the stitches, and only through them."""
    model = _predictor("cross-stitch")
    assert isinstance(model, CrossStitch)
    if identity:
        with torch.no_grad():
            for alpha in model.stitches:
                alpha.copy_(torch.eye(K))
    user, items = _inputs("cross-stitch")
    base = model(user, items).detach()
    with torch.no_grad():
        model.first.weight[:, :HID] += 0.5  # column 0's first layer
    moved = (model(user, items).detach() - base).abs()
    assert moved[..., 0].max() > 1e-4
    if identity:
        assert moved[..., 1:].max() == 0
    else:
        assert (moved[..., 1:].amax(dim=(0, 1)) > 1e-4).all()  # every other objective


# -- MoSE predictor --------------------------------------------------------------------------

def test_mose_mixes_expert_states() -> None:
    """With all expert states equal, the gates cannot matter; the prediction then moves with
    that common state, and with one expert's state when they differ."""
    model = _predictor("mose")
    user, items = _inputs("mose")
    same = user.clone()
    same[:, : MOSE_EXPERTS * HID] = user[:, :HID].repeat(1, MOSE_EXPERTS)
    y_same = model(same, items).detach()
    with torch.no_grad():
        model.gate.weight.normal_()  # other gates, same prediction
    torch.testing.assert_close(model(same, items), y_same, atol=1e-6, rtol=0)
    moved = user.clone()
    moved[:, 2 * HID : 3 * HID] += 1.0  # expert 2 only
    assert (model(moved, items) - model(user, items)).abs().max() > 1e-4


# -- encoders --------------------------------------------------------------------------------

def _history(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6, 4, generator=g)
    gaps = torch.rand(3, 6, generator=g)
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6, [False] * 6])
    return x, gaps, mask


@pytest.mark.parametrize("name", NEW_ENCODERS)
def test_encoder_shapes_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    enc = ENCODERS[name][0](input_dim=4, hidden=HID, use_attention=True, use_time_gate=True,
                            similarity="neg_sq_dist")
    x, gaps, mask = _history()
    h = enc(x, gaps, mask)
    width = MOSE_EXPERTS * HID if name == "lstm-experts" else HID
    assert enc.out_dim == width and h.shape == (3, width)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[2], torch.zeros(width), atol=0, rtol=0)  # empty history
    enc.double()  # gradients in float64 (see assert_gradients)
    (enc(x.double(), gaps.double(), mask) - 1).pow(2).sum().backward()
    named = [(n, p.grad) for n, p in enc.named_parameters() if n != "position.weight"]
    if name == "transformer":  # the 6 positions used get gradients, later ones none at all
        grad = enc.position.weight.grad
        assert grad is not None
        rows = [(f"position[{j}]", grad[j]) for j in range(len(grad))]
        assert_gradients([*named, *rows], zero=[n for n, _ in rows[6:]])
    else:
        assert_gradients(named)


def test_transformer_is_causal_and_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = CausalTransformer(4, HID, n_layers=2, n_heads=2)
    x, gaps, mask = _history()
    base = enc.states(x, gaps, mask)
    assert torch.isfinite(base).all()  # the all-padding row included
    j = 3
    later = x.clone()
    later[:, j] += 2.0
    after = enc.states(later, gaps, mask)
    torch.testing.assert_close(after[:, :j], base[:, :j], atol=0, rtol=0)
    assert ((after[:2, j:] - base[:2, j:]).abs().amax(-1) > 1e-5).all()
    # padded steps never reach an existing step, nor the state
    padded = x.clone()
    padded[~mask] = torch.randn(int((~mask).sum()), 4) * 10
    torch.testing.assert_close(enc.states(padded, gaps, mask)[mask], base[mask], atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(enc(padded, gaps, mask), enc(x, gaps, mask), atol=1e-5, rtol=0)
    # the state is the output at the last existing step, even after a trailing gap
    holes = torch.tensor([[True, True, True, True, False, False]] * 3)
    torch.testing.assert_close(enc(x, gaps, holes), enc.states(x, gaps, holes)[:, 3])


def test_transformer_state_gradients_are_finite_for_empty_histories() -> None:
    torch.manual_seed(0)
    enc = CausalTransformer(4, HID)
    x = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    enc(x, torch.zeros(2, 5), mask).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="max_length"):
        CausalTransformer(4, HID, max_length=4).states(x, torch.zeros(2, 5), mask)


def _expert_as_torch_lstm(enc: LSTMExperts, e: int) -> torch.nn.LSTM:
    """Expert e's weights in nn.LSTM's layout (gate order i, f, g, o; ours is i, f, o, g)."""
    H = enc.hidden
    lstm = torch.nn.LSTM(enc.x_gates.in_features, H, batch_first=True)
    order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                       torch.arange(2 * H, 3 * H)])
    rows = slice(e * 4 * H, (e + 1) * 4 * H)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(enc.x_gates.weight[rows][order])
        lstm.bias_ih_l0.copy_(enc.x_gates.bias[rows][order])
        lstm.weight_hh_l0.copy_(enc.h_gates[e].T[order])
        lstm.bias_hh_l0.zero_()
    return lstm


def test_lstm_experts_match_torch_lstms() -> None:
    torch.manual_seed(0)
    enc = LSTMExperts(4, HID, n_experts=3)
    x = torch.randn(2, 6, 4)
    states = enc.states(x, torch.zeros(2, 6), torch.ones(2, 6, dtype=torch.bool))  # [B,L,E,H]
    for e in range(3):
        ref, _ = _expert_as_torch_lstm(enc, e)(x)
        torch.testing.assert_close(states[:, :, e], ref, atol=1e-6, rtol=0)
    assert (states[:, -1, 0] - states[:, -1, 1]).abs().max() > 1e-4  # experts differ


def test_lstm_experts_ignore_masked_steps() -> None:
    torch.manual_seed(0)
    enc = LSTMExperts(4, HID)
    x, gaps, _ = _history()
    mask = torch.tensor([[False, False, True, True, False, True],
                         [True, False, True, True, True, False], [False] * 6])
    states = enc.states(x, gaps, mask)
    torch.testing.assert_close(states[0, :2], torch.zeros(2, MOSE_EXPERTS, HID), atol=0, rtol=0)
    for b in range(2):
        for k in range(1, 6):
            if not mask[b, k]:
                torch.testing.assert_close(states[b, k], states[b, k - 1], atol=0, rtol=0)
            else:
                assert (states[b, k] - states[b, k - 1]).abs().max() > 1e-6
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 4) * 10
    torch.testing.assert_close(enc.states(x2, gaps, mask), states, atol=0, rtol=0)
    # a history with its masked steps removed gives the same state
    torch.testing.assert_close(enc(x[1:2, [0, 2, 3, 4]], gaps[1:2, :4], mask[1:2, :4] | True),
                               enc(x[1:2], gaps[1:2], mask[1:2]), atol=1e-6, rtol=0)


# -- inside the stage-1 network ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_data():  # type: ignore[no-untyped-def]
    return load_simulator(SimulatorConfig(n_users=20, n_items=30, events_per_user=15))


def _config(encoder: str, predictor: str) -> RunConfig:
    return RunConfig(model=ModelConfig(encoder=encoder, predictor=predictor, item_dim=6,
                                       user_dim=4, context_dim=3, hidden=8, tower_hidden=5,
                                       history_length=5))


@pytest.mark.parametrize(("encoder", "predictor"),
                         [("sa-time-lstm", p) for p in NEW_PREDICTORS if p != "mose"]
                         + [("transformer", "mmoe"), ("lstm-experts", "mose")])
def test_network_with_new_components(sim_data, encoder: str, predictor: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(_config(encoder, predictor), sim_data)
    assert model.state_dim == model.encoder.out_dim + 4  # MoSE: 4 experts * hidden + user
    events = np.array([0, 1, 3, 16, 40, 299])  # first events (empty history) included
    batch = make_batch(sim_data, history_index(sim_data, 5)[events], events)
    items = torch.from_numpy(np.random.default_rng(0).integers(1, 31, size=(6, 7)))
    y_hat = model(batch, items)
    assert y_hat.shape == (6, 7, sim_data.n_objectives)
    assert ((y_hat > 0) & (y_hat < 1)).all()
    (y_hat - torch.rand_like(y_hat)).abs().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_mose_needs_the_expert_encoder(sim_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="lstm-experts"):
        build_model(_config("sa-time-lstm", "mose"), sim_data)
