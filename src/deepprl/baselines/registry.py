"""The explicit registry of item-level baselines: name -> ItemPolicyEntry."""

from __future__ import annotations

from deepprl.baselines import ItemPolicyEntry, drn, linucb, morl, reinforce_topk

ITEM_POLICIES: dict[str, ItemPolicyEntry] = {
    "mo-linucb": linucb.ENTRY,
    "morl": morl.ENTRY,
    "reinforce-topk": reinforce_topk.ENTRY,
    "drn": drn.ENTRY,
}
