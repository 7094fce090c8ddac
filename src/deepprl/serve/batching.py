"""Concurrent /recommend requests scored in one forward pass.

Requests that arrive while forward passes run wait for the next pass, which scores all of
them (up to max_batch) at once: the user-state encoder's recurrent steps and every
operator's fixed cost are paid once per batch instead of once per request, and the
candidates' products become one larger matmul. A lone request (every request at
concurrency 1) is scored alone, by Service.recommend's own path: the same numbers as
before. In a batch, rows are grouped by candidate count, so no request scores another's
padding; a request refused (FieldError) or a group that fails answers on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import torch

from deepprl.data.sequences import Batch
from deepprl.ranking.history import HistoryScores, batch_from_history, row_scores
from deepprl.ranking.scoring import score_batch
from deepprl.serve.schemas import RecommendRequest
from deepprl.serve.service import Prepared, Service

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], Awaitable[T]]
"""Runs a blocking function off the event loop (the app's inference threads)."""


def recommend_many(service: Service, requests: list[RecommendRequest]
                   ) -> list[dict[str, object] | Exception]:
    """Service.recommend of each request, the ones with as many candidates scored together;
    each entry is the response or the exception that request raised."""
    out: list[dict[str, object] | Exception | None] = [None] * len(requests)
    groups: dict[int, list[tuple[int, Prepared]]] = {}
    for i, req in enumerate(requests):
        try:
            prepared = service.prepare(req)
        except Exception as err:  # FieldError -> 4xx; anything else -> 500, as before
            out[i] = err
            continue
        groups.setdefault(int(prepared.items.shape[1]), []).append((i, prepared))
    for rows in groups.values():
        try:
            scores = score_rows(service, [p for _, p in rows], [requests[i].k for i, _ in rows])
            for (i, prepared), scored in zip(rows, scores, strict=True):
                out[i] = service.answer(requests[i], prepared, scored)
        except Exception as err:
            for i, _ in rows:
                out[i] = err
    return [r if r is not None else RuntimeError("not scored") for r in out]


def score_rows(service: Service, prepared: list[Prepared], ks: list[int]
               ) -> list[HistoryScores]:
    """Scores of prepared requests with the same candidate count C, in one forward pass
    (one request: Service.score itself)."""
    if len(prepared) == 1:
        p = prepared[0]
        return [service.score(p.history, p.at_time, p.context, p.items, ks[0])]
    rows = [batch_from_history(user=p.history.user, items=p.history.items,
                               times=p.history.times, contexts=p.history.contexts,
                               context=p.context, length=service.length) for p in prepared]
    batch = Batch(**{f.name: torch.cat([getattr(r, f.name) for r in rows])
                     for f in dataclasses.fields(Batch)})
    items = torch.cat([p.items for p in prepared])  # [B, C]
    cold = torch.tensor([p.history.user == 0 for p in prepared])  # [B]
    recommender = service.recommender
    if service.scorer is not None:  # the ONNX graphs (serve --onnx): cold users in-graph
        out = service.scorer(batch, items)
    else:
        out = score_batch(recommender.model, recommender.policy, batch, items,
                          user_embedding=service.cold_user if bool(cold.any()) else None,
                          cold=cold, fast=True)
    return [row_scores(out, i, k) for i, k in enumerate(ks)]


class RecommendBatcher:
    """Queues /recommend requests on the event loop; at most `passes` forward passes run at
    once (through `run`), each taking every queued request, up to `max_batch`. `service`:
    the Service, or a function giving the one that scores a pass (hot reload).

    `alone()`, when true for a request that finds no pass running and nothing queued
    (the app: it is the only request in progress), also after the requests read in the
    same turn of the loop have started (under load they arrive in bursts, and the first of
    a burst must not take the loop), has the request scored at once on the event loop:
    nothing else is waiting for the loop, and handing the pass to a worker
    thread and back cost a lone request two thread wake-ups, each up to a scheduler
    time slice on a busy machine."""

    def __init__(self, service: Service | Callable[[], Service], *, run: Runner[Any],
                 passes: int, max_batch: int,
                 alone: Callable[[], bool] = lambda: False) -> None:
        self.service = service if not isinstance(service, Service) else lambda: service
        self.run, self.passes, self.max_batch = run, passes, max_batch
        self.alone = alone
        self.queue: list[tuple[RecommendRequest, asyncio.Future[dict[str, object]]]] = []
        self.active = 0  # passes draining the queue; one event loop, so no lock
        self.tasks: set[asyncio.Task[None]] = set()  # referenced until done

    async def recommend(self, req: RecommendRequest) -> dict[str, object]:
        if self._lone():
            await asyncio.sleep(0)  # requests read in the same loop turn start first
        if self._lone():
            result = recommend_many(self.service(), [req])[0]
            if isinstance(result, Exception):
                raise result
            return result
        future: asyncio.Future[dict[str, object]] = \
            asyncio.get_running_loop().create_future()
        self.queue.append((req, future))
        if self.active < self.passes:
            self.active += 1
            task = asyncio.ensure_future(self._drain())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    def _lone(self) -> bool:
        return not self.active and not self.queue and self.alone()

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch = self.queue[: self.max_batch]
                del self.queue[: self.max_batch]
                requests = [req for req, _ in batch]
                try:  # the served version, read once per pass (hot reload)
                    results = await self.run(functools.partial(recommend_many,
                                                               self.service(), requests))
                except Exception as err:
                    results = [err] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the request was cancelled (client gone)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.active -= 1
