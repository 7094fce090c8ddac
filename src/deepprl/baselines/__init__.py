"""Item-level baseline policies (paper §5.2): they score candidate items directly.

Each entry registers a frozen config dataclass, a builder, a learner and a description.
The built module maps (batch, items) -> scores: `module(batch, items)` with batch a
deepprl.data.sequences.Batch of B events and items [B, C] (0 = padding) -> scores [B, C]
(higher is better; padding may score anything, the evaluator masks it). Its learnable state
lives in parameters and buffers, so safetensors saves and loads it. Learners own their
optimizers (policies act, algorithms learn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from deepprl.data.interactions import Interactions
from deepprl.data.splits import Split

# build(config, data, history_length) -> module
Builder = Callable[[Any, Interactions, int], nn.Module]
# fit(module, data, split, config, k, seed) -> log records
Learner = Callable[[nn.Module, Interactions, Split, Any, int, int], list[dict[str, float]]]


@dataclass(frozen=True)
class ItemPolicyEntry:
    """A registered item-level baseline."""

    config: type
    build: Builder
    fit: Learner
    description: str


def training_events(split: Split) -> np.ndarray:
    """Event indices a baseline may learn from: the training period."""
    return np.flatnonzero(split.train)
