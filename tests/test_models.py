"""Model building blocks: Time-LSTM cell, causal self-attention, MoH predictor, the full
stage-1 network and the weight policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import assert_gradients, double
from deepprl.artifacts import build_model, saved_run_config
from deepprl.config import ModelConfig, RunConfig
from deepprl.data.sequences import history_index, make_batch
from deepprl.data.simulator import SimulatorConfig, load_simulator
from deepprl.models.encoders import CausalSelfAttention, SelfAttentiveTimeLSTM, TimeLSTMCell
from deepprl.models.layers import similarity_scores
from deepprl.models.predictors import TOWER_GAIN, MixtureOfHyperNetwork
from deepprl.policy.weights import Actor, FixedWeights


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# -- TimeLSTMCell ------------------------------------------------------------------------

# Math convention of the docstring: row vectors, x W with W [in, out]. nn.Linear stores W^T.
WX = np.array([[0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8],
               [0.9, 0.15, -0.25, 0.35, 0.45, -0.55, 0.65, 0.05]])  # [D=2, 4H=8]
BX = np.array([0.01, -0.02, 0.03, -0.04, 0.05, -0.06, 0.07, -0.08])  # b_i, b_f, b_o, b_c
WH = np.array([[0.2, 0.1, -0.3, 0.5, -0.1, 0.25, -0.35, 0.45],
               [-0.4, 0.3, 0.2, -0.15, 0.6, -0.05, 0.1, 0.3]])  # [H=2, 4H=8]
WXT = np.array([[0.3, -0.6], [0.8, 0.2]])  # [D, H]
BT = np.array([-0.1, 0.2])  # [H]
WTT = np.array([[1.5, -0.7]])  # [1, H]

X = np.array([[0.5, -1.0], [1.2, 0.3]])  # [B=2, D]
DT = np.array([0.0, 2.5])  # [B]
H0 = np.array([[0.1, -0.2], [0.4, 0.3]])  # [B, H]
C0 = np.array([[-0.3, 0.5], [0.2, -0.6]])


def _set_cell_weights(cell: TimeLSTMCell) -> None:
    with torch.no_grad():
        cell.x_gates.weight.copy_(torch.tensor(WX.T))
        cell.x_gates.bias.copy_(torch.tensor(BX))
        cell.h_gates.weight.copy_(torch.tensor(WH.T))
        if cell.use_time_gate:
            cell.x_time.weight.copy_(torch.tensor(WXT.T))
            cell.x_time.bias.copy_(torch.tensor(BT))
            cell.dt_time.weight.copy_(torch.tensor(WTT.T))


def _cell_by_hand(use_time_gate: bool) -> tuple[np.ndarray, np.ndarray]:
    gates = X @ WX + BX + H0 @ WH
    i, f, o, g = np.split(gates, 4, axis=-1)
    if use_time_gate:
        t_gate = _sigmoid(X @ WXT + BT + _sigmoid(DT[:, None] @ WTT))
    else:
        t_gate = np.ones_like(i)
    c = _sigmoid(f) * C0 + _sigmoid(i) * t_gate * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    return h, c


@pytest.mark.parametrize("use_time_gate", [True, False])
def test_time_lstm_cell_matches_hand_computation(use_time_gate: bool) -> None:
    cell = TimeLSTMCell(2, 2, use_time_gate=use_time_gate)
    _set_cell_weights(cell)
    f32 = torch.float32
    h, c = cell(torch.tensor(X, dtype=f32), torch.tensor(DT, dtype=f32),
                torch.tensor(H0, dtype=f32), torch.tensor(C0, dtype=f32))
    h_ref, c_ref = _cell_by_hand(use_time_gate)
    np.testing.assert_allclose(c.detach().numpy(), c_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(h.detach().numpy(), h_ref, atol=1e-6, rtol=0)


def test_time_gate_changes_the_cell() -> None:
    """The hand values with and without the time gate differ, so each test above pins its
    own variant (and the gap dt matters with the gate)."""
    h_gate, _ = _cell_by_hand(True)
    h_plain, _ = _cell_by_hand(False)
    assert np.abs(h_gate - h_plain).max() > 1e-3
    cell = TimeLSTMCell(2, 2, use_time_gate=True)
    _set_cell_weights(cell)
    x, h0, c0 = (torch.tensor(a, dtype=torch.float32) for a in (X, H0, C0))
    h_a, _ = cell(x, torch.tensor([0.0, 0.0]), h0, c0)
    h_b, _ = cell(x, torch.tensor([3.0, 3.0]), h0, c0)
    assert (h_a - h_b).abs().max() > 1e-4


# -- causal self-attention and the encoder ---------------------------------------------------

def _attention_reference(x: np.ndarray, mask: np.ndarray, w_value: np.ndarray, kind: str
                         ) -> np.ndarray:
    """Naive loops: query q attends to keys k <= q that exist (and always to itself)."""
    B, L, D = x.shape
    out = np.zeros_like(x)
    for b in range(B):
        v = x[b] @ w_value.T
        for q in range(L):
            keys = [k for k in range(L) if (k <= q and mask[b, k]) or k == q]
            if kind == "dot":
                s = np.array([x[b, q] @ x[b, k] for k in keys]) / math.sqrt(D)
            else:
                s = np.array([-((x[b, q] - x[b, k]) ** 2).sum() for k in keys]) / math.sqrt(D)
            e = np.exp(s - s.max())
            e /= e.sum()
            out[b, q] = sum(w * v[k] for w, k in zip(e, keys, strict=True))
    return out


@pytest.mark.parametrize("kind", ["neg_sq_dist", "dot"])
def test_causal_attention_matches_naive_loop(kind: str) -> None:
    torch.manual_seed(0)
    att = CausalSelfAttention(3, similarity=kind)
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[False, False, True, True, True], [True, True, False, True, True]])
    out = att(x, mask).detach().numpy()
    ref = _attention_reference(x.numpy().astype(np.float64), mask.numpy(),
                               att.value.weight.detach().numpy().astype(np.float64), kind)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["neg_sq_dist", "dot"])
def test_attention_weights_sum_to_one(kind: str) -> None:
    """With a constant input coordinate passed through unchanged by W_att, that output
    coordinate is exactly the sum of the attention weights of its row."""
    torch.manual_seed(1)
    att = CausalSelfAttention(4, similarity=kind)
    with torch.no_grad():
        att.value.weight[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    x = torch.randn(3, 6, 4) * 3
    x[..., 0] = 1.0
    mask = torch.rand(3, 6) > 0.3
    out = att(x, mask)
    torch.testing.assert_close(out[..., 0], torch.ones(3, 6), atol=1e-5, rtol=0)


def _encoder_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 4, generator=g)
    gaps = torch.rand(2, 6, generator=g) * 3
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    return x, gaps, mask


@pytest.mark.parametrize("use_attention", [True, False])
@pytest.mark.parametrize("kind", ["neg_sq_dist", "dot"])
@pytest.mark.parametrize("changed", ["x", "gaps"])
def test_encoder_is_causal(use_attention: bool, kind: str, changed: str) -> None:
    torch.manual_seed(0)
    enc = SelfAttentiveTimeLSTM(4, 5, use_attention=use_attention, similarity=kind)
    x, gaps, mask = _encoder_inputs()
    base = enc.states(x, gaps, mask)
    assert base.shape == (2, 6, 5)
    j = 3
    x2, gaps2 = x.clone(), gaps.clone()
    if changed == "x":
        x2[:, j] += 2.0
    else:
        gaps2[:, j] += 2.0
    after = enc.states(x2, gaps2, mask)
    torch.testing.assert_close(after[:, :j], base[:, :j], atol=0, rtol=0)
    diff = (after[:, j:] - base[:, j:]).abs().amax(-1)  # [B, L - j]
    assert (diff > 1e-6).all(), diff
    torch.testing.assert_close(enc(x2, gaps2, mask), after[:, -1])


@pytest.mark.parametrize("use_attention", [True, False])
def test_masked_steps_leave_the_state_untouched(use_attention: bool) -> None:
    torch.manual_seed(0)
    enc = SelfAttentiveTimeLSTM(4, 5, use_attention=use_attention)
    x, gaps, _ = _encoder_inputs()
    mask = torch.tensor([[False, False, True, True, False, True],
                         [True, False, True, True, True, False]])
    states = enc.states(x, gaps, mask)
    # left padding: the initial (zero) state; a masked step copies the previous state
    torch.testing.assert_close(states[0, :2], torch.zeros(2, 5), atol=0, rtol=0)
    for b in range(2):
        for k in range(1, 6):
            if not mask[b, k]:
                torch.testing.assert_close(states[b, k], states[b, k - 1], atol=0, rtol=0)
            else:
                assert (states[b, k] - states[b, k - 1]).abs().max() > 1e-6
    # whatever a masked step holds, no state changes
    x2, gaps2 = x.clone(), gaps.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 4) * 10
    gaps2[~mask] = 7.0
    torch.testing.assert_close(enc.states(x2, gaps2, mask), states, atol=1e-6, rtol=0)


@pytest.mark.parametrize("use_time_gate", [True, False])
def test_left_padded_fast_path_equals_the_cell_step_by_step(use_time_gate: bool) -> None:
    """The encoder's loop for left-padded histories (padded steps through a zeroed gate,
    leading all-padded steps skipped) gives the states and gradients of the plain cell
    applied step by step, keeping the state at padded steps."""
    torch.manual_seed(0)
    enc = SelfAttentiveTimeLSTM(4, 5, use_time_gate=use_time_gate)
    x, gaps, _ = _encoder_inputs()
    mask = torch.tensor([[False, False, True, True, True, True],
                         [False, True, True, True, True, True]])
    x.requires_grad_(True)
    fast = enc.states(x, gaps, mask)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), [x])

    steps = enc.attention(x, mask)
    h = c = torch.zeros(2, 5)
    ref = []
    for k in range(6):
        h_new, c_new = enc.cell(steps[:, k], gaps[:, k], h, c)
        keep = mask[:, k, None]
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        ref.append(h)
    slow = torch.stack(ref, dim=1)
    (grad_slow,) = torch.autograd.grad(slow.square().sum(), [x])
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_fast, grad_slow, atol=1e-6, rtol=0)


# -- Mixture of HyperNetwork ---------------------------------------------------------------

def _moh(seed: int = 0) -> MixtureOfHyperNetwork:
    torch.manual_seed(seed)
    return MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=3, hidden=8,
                                 tower_hidden=6, objective_embedding_dim=4, tower_layers=1)


def test_moh_tower_parameters_per_objective() -> None:
    model = _moh()
    w_user, w_item, bias = model.tower_parameters()
    assert w_user.shape == (3, 5, 6)
    assert w_item.shape == (3, 4, 6)
    assert bias.shape == (3, 6)
    for w in (w_user, w_item, bias):
        for a in range(3):
            for b in range(a + 1, 3):
                assert (w[a] - w[b]).abs().max() > 1e-6
    # the split covers the hypernetwork's output exactly, in order
    flat = (model.scale * model.hypernetwork(model.objective_embedding)).view(3, 10, 6)
    torch.testing.assert_close(torch.cat([w_user, w_item, bias[:, None]], dim=1), flat)


def test_moh_outputs_attention_and_gradients() -> None:
    model = _moh()
    torch.manual_seed(1)
    user, items = torch.randn(7, 5), torch.randn(7, 9, 4)
    y_hat = model(user, items)
    assert y_hat.shape == (7, 9, 3)
    assert ((y_hat > 0) & (y_hat < 1)).all()
    att = model.last_attention
    assert att is not None and att.shape == (7, 9, 3, 3)
    assert (att >= 0).all()
    torch.testing.assert_close(att.sum(-1), torch.ones(7, 9, 3), atol=1e-6, rtol=0)

    model.double()  # gradients in float64 (see assert_gradients)
    y_hat = model(user.double(), items.double())
    target = torch.rand(7, 9, 3, dtype=torch.float64)
    (y_hat - target).abs().sum().backward()
    grads = {"objective_embedding": model.objective_embedding.grad}
    grads.update({f"hypernetwork.{n}": p.grad for n, p in model.hypernetwork.named_parameters()})
    grads.update({n: p.grad for n, p in model.named_parameters()})
    assert_gradients(grads.items())


@pytest.mark.parametrize("similarity", ["neg_sq_dist", "dot"])
def test_moh_forward_is_the_papers_formula(similarity: str) -> None:
    """The fused forward equals §4.2 written out term by term: z_k = relu([s_u; s_i] W_k +
    b_k), e_ml = softmax_l(sim(q(z_m), key(z_l)) + log p_ml), y_m = sigmoid(w_m . sum_l e_ml z_l
    + c_m), with the attention prior p of model.mixture_self_weight (log p = 0 without it)."""
    model = _moh()
    model.similarity = similarity
    torch.manual_seed(2)
    user, items = torch.randn(3, 5), torch.randn(3, 7, 4)
    w_user, w_item, bias = model.tower_parameters()
    x = torch.cat([user[:, None].expand(-1, 7, -1), items], dim=-1)  # [B, C, Du + Di]
    w = torch.cat([w_user, w_item], dim=1)  # [K, Du + Di, T]
    z = torch.stack([torch.relu(x @ w[k] + bias[k]) for k in range(3)], dim=2)  # [B, C, K, T]
    q, key = model.query(z), model.key(z)
    if similarity == "dot":
        scores = q @ key.transpose(-1, -2) / 6**0.5
    else:
        scores = -((q[..., :, None, :] - key[..., None, :, :]) ** 2).sum(-1) / 6**0.5
    e = torch.softmax(scores + model.log_prior, dim=-1)  # [B, C, m, l]
    mixed = e @ z  # [B, C, K, T]
    expected = torch.sigmoid((mixed * model.head).sum(-1) + model.head_bias)
    torch.testing.assert_close(model(user, items), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.last_attention, e, atol=1e-5, rtol=1e-5)


def test_moh_multi_layer_towers_are_the_written_out_mlp() -> None:
    """tower_layers = 2: z_k = relu(relu([s_u; s_i] W1_k + b1_k) W2_k + b2_k), widths
    (hidden, tower_hidden), then the same mixture attention and heads."""
    torch.manual_seed(0)
    model = MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=3, hidden=8,
                                  tower_hidden=6, objective_embedding_dim=4, tower_layers=2)
    user, items = torch.randn(3, 5), torch.randn(3, 7, 4)
    w_user, w_item, b1, w2, b2 = model.generated_layers()
    assert w_user.shape == (3, 5, 8) and w_item.shape == (3, 4, 8) and b1.shape == (3, 8)
    assert w2.shape == (3, 8, 6) and b2.shape == (3, 6)
    x = torch.cat([user[:, None].expand(-1, 7, -1), items], dim=-1)  # [B, C, Du + Di]
    w1 = torch.cat([w_user, w_item], dim=1)  # [K, Du + Di, H]
    z = torch.stack([torch.relu(torch.relu(x @ w1[k] + b1[k]) @ w2[k] + b2[k])
                     for k in range(3)], dim=2)  # [B, C, K, T]
    e = torch.softmax(similarity_scores(model.query(z), model.key(z), model.similarity)
                      + model.log_prior, -1)
    expected = torch.sigmoid(((e @ z) * model.head).sum(-1) + model.head_bias)
    torch.testing.assert_close(model(user, items), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tower_layers"):
        MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=3, tower_layers=0)


def test_moh_inference_reuses_generated_towers_until_a_parameter_changes() -> None:
    model = _moh()
    user, items = torch.randn(2, 5), torch.randn(2, 3, 4)
    with torch.no_grad():
        first = model.tower_parameters()
        assert model.tower_parameters()[0] is first[0]  # generated once
        before = model(user, items)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    model(user, items).sum().backward()
    optimiser.step()
    with torch.no_grad():
        after = model(user, items)
        assert model.tower_parameters()[0] is not first[0]
        torch.testing.assert_close(model.tower_parameters()[0], model._generate()[0])
    assert (after - before).abs().max() > 1e-6  # the step reached the inference path


def _generated(model: MixtureOfHyperNetwork) -> torch.Tensor:
    """[K, P]: each objective's generated tower (every layer's weights and bias) flattened."""
    return torch.cat([t.flatten(1) for t in model._generate()], dim=1)


# DeepPRL's sizes: user part = encoder state 64 + user 16 + context 16, items 32
MOH_SIZES = {"user_dim": 96, "item_dim": 32}


def _layer_weights(model: MixtureOfHyperNetwork) -> list[tuple[int, torch.Tensor]]:
    """(fan_in, [K, fan_in * width + width]) per generated layer: its weights and bias."""
    layers = model._generate()
    first = torch.cat([layers[0], layers[1], layers[2][:, None]], dim=1).flatten(1)
    out = [(model.layer_shapes[0][0], first)]
    for j, (w, b) in enumerate(zip(layers[3::2], layers[4::2], strict=True), start=1):
        out.append((model.layer_shapes[j][0], torch.cat([w.flatten(1), b], dim=1)))
    return out


@pytest.mark.parametrize(("n_objectives", "tower_layers"), [(2, 1), (3, 1), (5, 1), (2, 2),
                                                            (3, 3)])
def test_moh_init_generates_distinct_towers_at_a_standard_scale(n_objectives: int,
                                                                tower_layers: int) -> None:
    """(a) towers start distinct: every pairwise |cosine| < 0.6 on each of 10 seeds (the old
    all-positive sigmoid codes gave 0.9999); (b) every generated layer's std is within a
    factor 1.5 of TOWER_GAIN / sqrt(its fan_in), the class docstring's rule."""
    for seed in range(10):
        torch.manual_seed(seed)
        model = MixtureOfHyperNetwork(n_objectives=n_objectives, tower_layers=tower_layers,
                                      **MOH_SIZES)
        w = _generated(model).detach()
        cos = torch.nn.functional.cosine_similarity(w[:, None], w[None], dim=-1)
        off = ~torch.eye(n_objectives, dtype=torch.bool)
        assert cos[off].abs().max() < 0.6, (seed, cos)
        layers = _layer_weights(model)
        assert [fan_in for fan_in, _ in layers] == [96 + 32] + [64] * (tower_layers - 1)
        for fan_in, layer in layers:
            ratio = float(layer.detach().std()) * fan_in**0.5 / TOWER_GAIN
            assert 1 / 1.5 < ratio < 1.5, (seed, fan_in, ratio)


@pytest.mark.parametrize("tower_layers", [1, 2])
def test_moh_one_adam_step_moves_generated_weights_by_about_lr(tower_layers: int) -> None:
    """(c) after one Adam step of lr on a batch, the mean |change| of a generated weight is
    within a factor 2.5 of lr (old: ~33 lr, the sum of 32 positive codes plus the bias)."""
    lr = 1e-3
    for seed in range(5):
        torch.manual_seed(seed)
        model = MixtureOfHyperNetwork(n_objectives=2, tower_layers=tower_layers, **MOH_SIZES)
        before = _generated(model).detach()
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        user, items = torch.randn(256, 96), torch.randn(256, 1, 32)
        target = (torch.rand(256, 1, 2) < 0.5).float()
        torch.nn.functional.binary_cross_entropy(model(user, items), target).backward()
        optimiser.step()
        step = float((_generated(model).detach() - before).abs().mean()) / lr
        assert 1 / 2.5 < step < 2.5, (seed, step)


def test_moh_attention_mixes_objectives() -> None:
    """Objective m's prediction depends on the other towers through the mixture attention:
    perturbing only objective 0's generated tower moves objective 1's output."""
    model = _moh()
    user, items = torch.randn(4, 5), torch.randn(4, 3, 4)
    base = model(user, items).detach()
    with torch.no_grad():
        model.objective_embedding[0] += 1.0
    moved = model(user, items).detach()
    assert (moved[..., 1] - base[..., 1]).abs().max() > 1e-6


@pytest.mark.parametrize("n_objectives", [2, 3, 5])
def test_moh_self_prior_starts_each_objective_on_its_own_tower(n_objectives: int) -> None:
    """model.mixture_self_weight w: with the towers' similarity scores all equal (query and
    key at 0) the attention is exactly w on the diagonal and (1 - w) / (K - 1) off it; at a
    real initialisation it stays near that, where without the prior it is uniform."""
    def build(w: float) -> MixtureOfHyperNetwork:
        torch.manual_seed(0)
        return MixtureOfHyperNetwork(user_dim=5, item_dim=4, n_objectives=n_objectives,
                                     hidden=8, tower_hidden=6, objective_embedding_dim=4,
                                     self_weight=w)
    user, items = torch.randn(6, 5), torch.randn(6, 4, 4)
    off = (1 - 0.9) / (n_objectives - 1)
    expected = torch.full((n_objectives, n_objectives), off).fill_diagonal_(0.9)
    model = build(0.9)
    with torch.no_grad():
        model(user, items)
        assert model.last_attention is not None
        assert abs(float(model.last_attention.diagonal(dim1=-2, dim2=-1).mean()) - 0.9) < 0.05
        model.query.weight.zero_()
        model.key.weight.zero_()
        model(user, items)
    assert model.last_attention is not None
    torch.testing.assert_close(model.last_attention,
                               expected.expand_as(model.last_attention), atol=1e-6, rtol=0)
    plain = build(0.0)
    with torch.no_grad():
        plain(user, items)
    assert plain.last_attention is not None
    assert abs(float(plain.last_attention.diagonal(dim1=-2, dim2=-1).mean())
               - 1 / n_objectives) < 0.05
    assert "log_prior" not in model.state_dict()  # it follows from the config: old runs load


def test_moh_self_weight_is_checked() -> None:
    with pytest.raises(ValueError, match="mixture_self_weight"):
        ModelConfig(mixture_self_weight=1.0)
    assert ModelConfig(mixture_self_weight=0.9).mixture_self_weight == 0.9


# -- the stage-1 network ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_data():  # type: ignore[no-untyped-def]
    return load_simulator(SimulatorConfig(n_users=20, n_items=30, events_per_user=15))


def _small_config(**model: object) -> RunConfig:
    base = {"item_dim": 6, "user_dim": 4, "context_dim": 3, "hidden": 8, "tower_hidden": 5,
            "objective_embedding_dim": 4, "history_length": 5}
    base.update(model)
    return RunConfig(dataset={"name": "simulator", "n_users": 20, "n_items": 30,
                              "events_per_user": 15},
                     model=ModelConfig(**base))  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", [{}, {"use_attention": False, "use_time_gate": False,
                                          "use_user_id": False}, {"tower_layers": 2},
                                     {"predictor": "cross-stitch", "tower_layers": 2}])
def test_predictor_model_shapes_and_gradients(sim_data, variant: dict) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = _small_config(**variant)
    model = build_model(config, sim_data)
    history = history_index(sim_data, config.model.history_length)
    events = np.array([0, 1, 3, 16, 40, 299])  # first events (empty history) included
    batch = make_batch(sim_data, history[events], events)
    items = torch.from_numpy(np.random.default_rng(0).integers(1, 31, size=(6, 7)))
    y_hat = model(batch, items)
    assert y_hat.shape == (6, 7, sim_data.n_objectives)
    assert ((y_hat > 0) & (y_hat < 1)).all()
    state = model.state(batch)
    assert state.shape == (6, model.state_dim)
    assert model.state_dim == config.model.hidden + config.model.user_dim
    assert model.items(torch.zeros(2, 3, dtype=torch.long)).abs().sum() == 0  # padding

    model.double()  # gradients in float64 (see assert_gradients)
    y_hat = model(double(batch), items)
    target = torch.rand_like(y_hat)
    (y_hat - target).abs().sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 10
    assert_gradients([(n, p.grad) for n, p in trainable])


def test_inference_item_table_equals_training_embeddings(sim_data) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(_small_config(), sim_data)
    items = torch.tensor([[0, 3, 30], [7, 7, 1]])
    with torch.no_grad():
        cached = model.items(items)
        torch.testing.assert_close(cached, model.items(items))
    torch.testing.assert_close(cached, model.items(items).detach())  # the training path
    optimiser = torch.optim.SGD(model.parameters(), lr=1.0)
    model.items(items).sum().backward()
    optimiser.step()
    with torch.no_grad():  # the step invalidates the table
        torch.testing.assert_close(model.items(items), model._embed(items))
        assert (model.items(items) - cached).abs().max() > 1e-4


def test_a_run_saved_before_tower_layers_loads_with_one_layer_towers() -> None:
    saved = RunConfig().to_dict()
    assert saved_run_config(saved).model.tower_layers == ModelConfig().tower_layers == 2
    del saved["model"]["tower_layers"]
    assert saved_run_config(saved).model.tower_layers == 1


def test_a_run_saved_before_the_attention_prior_is_an_moh_without_it() -> None:
    """Only the MoH reads model.mixture_self_weight: an old MoH run loads (and is matched by
    an experiment's cache) without the prior; an old baseline run still equals a new config
    of the same baseline, whatever today's default."""
    moh = RunConfig(model=ModelConfig(mixture_self_weight=0.9)).to_dict()
    del moh["model"]["mixture_self_weight"]
    assert saved_run_config(moh).model.mixture_self_weight == 0.0
    wanted = RunConfig(model=ModelConfig(predictor="cross-stitch")).to_dict()
    old = {**wanted, "model": {k: v for k, v in wanted["model"].items()
                               if k not in ("mixture_self_weight", "tower_layers")}}
    assert saved_run_config(old).to_dict() == wanted


def test_predictor_model_rejects_unknown_components(sim_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="encoder"):
        build_model(_small_config(encoder="nope"), sim_data)
    with pytest.raises(ValueError, match="predictor"):
        build_model(_small_config(predictor="nope"), sim_data)


# -- weight policies ------------------------------------------------------------------------

def _assert_simplex(alpha: torch.Tensor, k: int) -> None:
    assert alpha.shape[-1] == k
    assert torch.isfinite(alpha).all()
    assert (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(alpha.shape[0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("use_context", [True, False])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_actor_outputs_on_simplex(use_context: bool, scale: float) -> None:
    torch.manual_seed(0)
    actor = Actor(state_dim=6, context_dim=3, n_objectives=4, hidden=8,
                  use_context=use_context)
    state = torch.randn(50, 6) * scale
    context = torch.randn(50, 3) * scale
    state[0], state[1] = 0.0, -scale
    alpha = actor(state, context)
    assert alpha.shape == (50, 4)
    _assert_simplex(alpha, 4)


def test_actor_context_matters_only_when_used() -> None:
    torch.manual_seed(0)
    state, c1, c2 = torch.randn(5, 6), torch.randn(5, 3), torch.randn(5, 3)
    with_ctx = Actor(state_dim=6, context_dim=3, n_objectives=3, use_context=True)
    assert (with_ctx(state, c1) - with_ctx(state, c2)).abs().max() > 1e-7
    without = Actor(state_dim=6, context_dim=3, n_objectives=3, use_context=False)
    torch.testing.assert_close(without(state, c1), without(state, c2), atol=0, rtol=0)


def test_fixed_weights_normalise_and_broadcast() -> None:
    policy = FixedWeights([1.0, 3.0, 0.0])
    alpha = policy(torch.zeros(4, 7), torch.zeros(4, 2))
    assert alpha.shape == (4, 3)
    torch.testing.assert_close(alpha, torch.tensor([[0.25, 0.75, 0.0]] * 4))
    torch.testing.assert_close(FixedWeights.equal(4)(torch.zeros(2, 1), torch.zeros(2, 1)),
                               torch.full((2, 4), 0.25))


@pytest.mark.parametrize("weights", [[-0.1, 1.1], [0.0, 0.0], [float("nan"), 1.0],
                                     [float("inf"), 1.0], [[0.5, 0.5]], []])
def test_fixed_weights_reject_invalid(weights: list) -> None:
    with pytest.raises(ValueError, match="fixed weights must be non-negative and not all zero"):
        FixedWeights(weights)
