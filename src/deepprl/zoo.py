"""Every trainable model by name: DeepPRL, its ablation variants and the paper's baselines.

A model is either a *weighted* recipe (a predictor ranked by sum_k alpha_k y_hat_k with
weights from a policy: a configuration of the same components, never a copy), or an
*item-level* baseline policy registered in deepprl.baselines.registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from deepprl.baselines.registry import ITEM_POLICIES
from deepprl.config import RunConfig


@dataclass(frozen=True)
class ModelEntry:
    """A registered model."""

    description: str
    configure: Callable[[RunConfig], RunConfig] | None = None
    """Weighted models: sets the model/policy fields of a run's config."""
    item_policy: str | None = None
    """Item-level baselines: the deepprl.baselines.registry name."""


def _set(model: dict[str, object] | None = None, policy: dict[str, object] | None = None
         ) -> Callable[[RunConfig], RunConfig]:
    def configure(config: RunConfig) -> RunConfig:
        return dataclasses.replace(
            config, model=dataclasses.replace(config.model, **(model or {})),  # type: ignore[arg-type]
            policy=dataclasses.replace(config.policy, **(policy or {})))  # type: ignore[arg-type]
    return configure


_STATIC: dict[str, object] = {"algorithm": "static"}

WEIGHTED: dict[str, ModelEntry] = {
    "deepprl": ModelEntry("DeepPRL: SA-Time-LSTM + Mixture of HyperNetwork + per-event "
                          "weights from the default learner (full-information contextual "
                          "bandit on logs), checked against static alpha on held-out users",
                          _set()),
    "deepprl-no-dynamic": ModelEntry("Table 6: per-user weights from the default learner, "
                                     "frozen before the test period",
                                     _set(policy={"dynamic": False})),
    "deepprl-no-context": ModelEntry("Table 6: the default learner without context input",
                                     _set(policy={"use_context": False})),
    "deepprl-no-dynamic-no-context": ModelEntry(
        "Table 6: frozen per-user weights, no context", _set(policy={"dynamic": False,
                                                                     "use_context": False})),
    "variant1-time-lstm": ModelEntry("Table 7 variant 1: Time-LSTM without self-attention",
                                     _set(model={"use_attention": False})),
    "variant2-sa-lstm": ModelEntry("Table 7 variant 2: self-attentive LSTM without time gate",
                                   _set(model={"use_time_gate": False})),
    "variant6-dqn": ModelEntry("Table 7 variant 6: DQN over a grid on the weight simplex",
                               _set(policy={"algorithm": "dqn"})),
    "variant7-reinforce": ModelEntry("Table 7 variant 7: REINFORCE, Dirichlet policy on the "
                                     "simplex", _set(policy={"algorithm": "reinforce"})),
    "variant3-transformer": ModelEntry("Table 7 variant 3: causal Transformer replaces the "
                                       "SA-Time-LSTM", _set(model={"encoder": "transformer"})),
    "variant4-shared-bottom": ModelEntry("Table 7 variant 4: Shared-Bottom replaces the "
                                         "Mixture of HyperNetwork",
                                         _set(model={"predictor": "shared-bottom"})),
    "variant5-cross-stitch": ModelEntry("Table 7 variant 5: Cross-Stitch replaces the "
                                        "Mixture of HyperNetwork",
                                        _set(model={"predictor": "cross-stitch"})),
    "shared-bottom": ModelEntry("Shared-Bottom (Ruder 2017), static weights tuned on validation",
                                _set(model={"encoder": "mean-pool", "predictor": "shared-bottom"},
                                     policy=_STATIC)),
    "mmoe": ModelEntry("MMOE (Ma et al. 2018), static weights tuned on validation",
                       _set(model={"encoder": "mean-pool", "predictor": "mmoe"},
                            policy=_STATIC)),
    "ple": ModelEntry("PLE (Tang et al. 2020), static weights tuned on validation",
                      _set(model={"encoder": "mean-pool", "predictor": "ple"}, policy=_STATIC)),
    "mose": ModelEntry("MoSE (Qin et al. 2020): sequential LSTM experts, static weights tuned "
                       "on validation",
                       _set(model={"encoder": "lstm-experts", "predictor": "mose"},
                            policy=_STATIC)),
    "deepprl-static": ModelEntry("DeepPRL's own predictor with one static alpha tuned on "
                                 "validation (Optuna): where the policy's gain comes from",
                                 _set(policy=_STATIC)),
}


def models() -> dict[str, ModelEntry]:
    """Weighted recipes plus every registered item-level baseline."""
    out = dict(WEIGHTED)
    for name, entry in ITEM_POLICIES.items():
        out[name] = ModelEntry(entry.description, item_policy=name)
    return out


def configure(name: str, config: RunConfig) -> RunConfig:
    """The run config of model `name` (its fields set, `config.name` recorded)."""
    entries = models()
    if name not in entries:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(entries)} "
                         f"(deepprl models lists them)")
    entry = entries[name]
    config = dataclasses.replace(config, name=name)
    return entry.configure(config) if entry.configure is not None else config
