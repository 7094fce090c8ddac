"""Serving a model of a user's own log without timestamps and with a context column: the
event-counter clock and context values given by name."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
import torch

from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.serve import FieldError, Service
from deepprl.serve.schemas import FeedbackRequest, RecommendRequest
from deepprl.train.run import train_run


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("custom-log")
    rng = np.random.default_rng(0)
    n = 8 * 30
    frame = pl.DataFrame({
        "user": [f"u{i // 30}" for i in range(n)],
        "item": [f"i{j}" for j in rng.integers(0, 40, n)],
        "device": rng.choice(["mobile", "tv"], n).tolist(),
        "rel": rng.uniform(0, 1, n), "watch": rng.uniform(0, 100, n),
    })
    frame.write_csv(tmp / "log.csv")
    mapping = {"columns": {"user": "user", "item": "item", "context": ["device"],
                           "duplicates": "keep-last"},
               "objectives": [{"name": "rel", "column": "rel"},
                              {"name": "watch", "column": "watch", "normalise": "minmax"}]}
    train_run(RunConfig(dataset={"data": str(tmp / "log.csv"), "mapping": mapping},
                        train=TrainConfig(epochs=1), policy=PolicyConfig(steps=10),
                        eval=EvalConfig(k=1)), tmp / "run")
    svc = Service.load(tmp / "run", db=tmp / "feedback.sqlite3")
    yield svc
    svc.close()
    torch.set_num_threads(threads)


def test_event_counter_clock(service: Service) -> None:
    data = service.data
    assert service.n_clock == 1 and not service.has_clock
    assert data.context_names[0] == "log_gap_events"
    user = data.user_index("u2")
    last = float(data.time[data.user_events(user)[-1]])
    for item in ("i1", "i2"):
        service.feedback(FeedbackRequest(user_id="u2", item_id=item, timestamp=1.7e9))
    history = service.history("u2")
    assert history.sources[-2:] == ("feedback", "feedback")
    np.testing.assert_allclose(history.times[-2:], [last + 1, last + 2])
    np.testing.assert_allclose(history.contexts[-2:, 0], np.log1p(1.0), rtol=1e-6)
    # feedback steps carry the non-clock context of the user's last logged event
    np.testing.assert_array_equal(history.contexts[-1, 1:],
                                  data.context[data.user_events(user)[-1], 1:])
    assert service.request_time(history, 123.0) == last + 3  # one event after the latest


def test_known_user_matches_the_library(service: Service) -> None:
    data = service.data
    user = data.user_index("u5")
    last = float(data.time[data.user_events(user)[-1]])
    served = service.recommend(RecommendRequest(user_id="u5", k=4))
    expected = service.recommender.recommend("u5", k=4, at_time=last + 1)
    assert [i["item_id"] for i in served["items"]] == \
        [i["item"] for i in expected["items"]]


def test_context_by_name(service: Service) -> None:
    names = service.data.context_names
    assert set(service.context_columns) == {n for n in names if n.startswith("device=")}
    history = service.history("u3")
    at = service.request_time(history, None)
    base = service.request_context(history, at, None)
    tv = service.request_context(history, at, {"device=tv": 1.0, "device=mobile": 0.0})
    assert tv[names.index("device=tv")] == 1.0 and tv[names.index("device=mobile")] == 0.0
    np.testing.assert_array_equal(tv[:1], base[:1])  # the clock part is not overridden
    cold = service.request_context(service.history("nobody"), 0.0, None)
    assert (cold[1:] == 0).all()  # unknown user, no values given: zeros
    assert np.isfinite(service.request_context(history, 0.0, None)).all()  # gap clamped
    result = service.recommend(RecommendRequest(user_id="u3", k=3,
                                                context={"device=tv": 1.0}))
    assert len(result["items"]) == 3
    with pytest.raises(FieldError) as err:
        service.recommend(RecommendRequest(user_id="u3", k=3, context={"device": 1.0}))
    assert err.value.field == "context.device"
    with pytest.raises(FieldError) as err:
        service.recommend(RecommendRequest(user_id="u3", k=3,
                                           context={"log_gap_events": 1.0}))
    assert err.value.field == "context.log_gap_events"
