"""Concurrent /recommend requests scored in one forward pass (deepprl.serve.batching) answer
what each request scored alone answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.serve import Service
from deepprl.serve.batching import RecommendBatcher, recommend_many
from deepprl.serve.schemas import RecommendRequest
from deepprl.serve.service import FieldError
from deepprl.train.run import train_run


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("batching")
    config = RunConfig(dataset={"name": "simulator", "n_users": 20, "n_items": 60,
                                "events_per_user": 15, "seed": 0},
                       train=TrainConfig(epochs=1), policy=PolicyConfig(steps=30),
                       eval=EvalConfig(k=5, max_events=100))
    train_run(config, root / "run")
    svc = Service.load(root / "run", db=root / "serve.sqlite3")
    yield svc
    svc.close()


def _requests(service: Service) -> list[RecommendRequest]:
    users, items = list(service.data.user_ids), list(service.data.item_ids)
    at = float(service.data.time.max()) + 3600.0  # after every logged event
    out = [RecommendRequest(user_id=u, k=3 + i % 4, candidates=items[i: i + 40],
                            timestamp=at) for i, u in enumerate(users[:6])]
    out.append(RecommendRequest(user_id="a-guest", k=5, candidates=items[:40],
                                timestamp=at))  # cold start, in the same batch
    out.append(RecommendRequest(user_id=users[0], k=4, timestamp=at))  # every item
    return out


def _same(batched: dict[str, Any], alone: dict[str, Any]) -> None:
    assert [i["item_id"] for i in batched["items"]] == [i["item_id"] for i in alone["items"]]
    assert [i["score"] for i in batched["items"]] == pytest.approx(
        [i["score"] for i in alone["items"]], rel=1e-5, abs=1e-6)
    assert batched["weights"] == pytest.approx(alone["weights"], rel=1e-5, abs=1e-6)
    assert {k: v for k, v in batched.items() if k not in ("items", "weights")} == \
        {k: v for k, v in alone.items() if k not in ("items", "weights")}


def test_a_batch_answers_what_each_request_alone_answers(service: Service) -> None:
    requests = _requests(service)
    bad = RecommendRequest(user_id="x", k=2, candidates=["no-such-item"])
    results = recommend_many(service, [*requests, bad])
    for req, result in zip(requests, results, strict=False):
        assert isinstance(result, dict), result
        _same(result, service.recommend(req))
    assert isinstance(results[-1], FieldError) and results[-1].field == "candidates[0]"


def test_the_batcher_scores_waiting_requests_together(service: Service) -> None:
    """With one pass at a time, requests queued behind the first are scored in one batch."""
    sizes: list[int] = []

    async def run(func: Callable[[], Any]) -> Any:
        await asyncio.sleep(0.01)  # the others queue meanwhile
        result = func()
        sizes.append(len(result))
        return result

    async def main() -> list[Any]:
        batcher = RecommendBatcher(service, run=run, passes=1, max_batch=4)
        return await asyncio.gather(*(batcher.recommend(r) for r in requests),
                                    return_exceptions=True)

    requests = _requests(service)
    results = asyncio.run(main())
    assert sizes == [4, 4]  # all eight queue before the first pass starts: max_batch each
    for req, result in zip(requests, results, strict=True):
        _same(result, service.recommend(req))


def test_a_lone_request_is_scored_on_the_event_loop(service: Service) -> None:
    """alone() true and nothing running or queued: no pass is handed to a worker; the
    answer is Service.recommend's, and a refused request raises its own FieldError."""
    calls: list[int] = []

    async def run(func: Callable[[], Any]) -> Any:
        calls.append(1)
        return func()

    async def main(alone: bool, req: RecommendRequest) -> Any:
        batcher = RecommendBatcher(service, run=run, passes=1, max_batch=4,
                                   alone=lambda: alone)
        return await batcher.recommend(req)

    req = _requests(service)[0]
    _same(asyncio.run(main(True, req)), service.recommend(req))
    assert calls == []
    _same(asyncio.run(main(False, req)), service.recommend(req))
    assert calls == [1]
    with pytest.raises(FieldError, match="candidates"):
        asyncio.run(main(True, RecommendRequest(user_id="x", k=2, candidates=["nope"])))
