"""Online policy updates (issue 18): serve a simulator run, feed back events from a world in
which one user segment's preference is flipped, update, and serve the new version.

The update must move those users' alpha toward their new preference and earn more reward
than the old policy on fresh requests it never learned from; it must refuse (exit 1, nothing
written, the pointer untouched) on feedback without signal or from the unchanged world; a
hot reload must answer every request in flight and name the new version afterwards.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from deepprl.cli import app as cli_app
from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
from deepprl.data.simulator import SimulatorConfig, SimulatorWorld, make_world
from deepprl.export.manifest import EXPORT_DIR, read_manifest, weight_digests
from deepprl.export.runtime import load_exported
from deepprl.rundir import MARKER, check_complete
from deepprl.serve import Service
from deepprl.serve.reload import Versions, read_pointer, write_pointer
from deepprl.serve.schemas import FeedbackRequest, RecommendRequest
from deepprl.serve.server import BackgroundServer
from deepprl.train.online_update import UPDATE_FILE
from deepprl.train.run import train_run

USERS, ITEMS, EVENTS, K = 60, 40, 20, 5
FED_BACK = 20  # items each user gives a reward for (> K: a decision point ranks them)
SIM = {"name": "simulator", "n_users": USERS, "n_items": ITEMS, "events_per_user": EVENTS}


@dataclass(frozen=True)
class Shifted:
    """The simulator's world with the preference of the users who favoured o2 (their mean
    weight of o2 over the hours of a day > 0.5) reversed at every hour (for K = 2:
    w -> (w2, w1)): they now favour o1."""

    world: SimulatorWorld
    flip: np.ndarray  # [U + 1] bool

    def preference(self, users: np.ndarray, times: np.ndarray, shifted: bool = True
                   ) -> np.ndarray:
        w = self.world.preference(users, (times / 3600.0) % 24.0)  # [E, K]
        return np.where(self.flip[users][:, None], w[:, ::-1], w) if shifted else w

    def reward(self, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               shifted: bool = True) -> np.ndarray:
        """users [E], items [E, C], times [E] -> true reward [E, C]."""
        o = self.world.objectives(users, items, (times / 3600.0) % 24.0)  # [E, C, K]
        return np.einsum("eck,ek->ec", o, self.preference(users, times, shifted))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("update") / "v0"
    train_run(RunConfig(dataset=SIM, train=TrainConfig(epochs=10),
                        policy=PolicyConfig(steps=300, check_folds=3), eval=EvalConfig(k=K)),
              out)
    return out


@pytest.fixture(scope="module")
def shifted() -> Shifted:
    world = make_world(SimulatorConfig(n_users=USERS, n_items=ITEMS, events_per_user=EVENTS))
    hours = np.arange(24.0)
    favour_o2 = [world.preference(np.full(24, u), hours)[:, 1].mean() > 0.5
                 for u in range(USERS + 1)]
    return Shifted(world=world, flip=np.array(favour_o2) & (np.arange(USERS + 1) > 0))


def _last_logged(service: Service, user: int) -> float:
    return float(service.data.time[service.data.user_events(user)[-1]])


def _feed_back(run: Path, db: Path, shifted: Shifted, how: str) -> None:
    """FED_BACK rewarded events per user through the service: from the shifted world
    ("shifted"), the unchanged one ("same"), or one constant reward ("constant")."""
    service = Service.load(run, db=db)
    rng = np.random.default_rng(7)
    try:
        for user in range(1, USERS + 1):
            items = rng.choice(np.arange(1, ITEMS + 1), size=FED_BACK, replace=False)
            times = _last_logged(service, user) + 3600.0 * np.arange(1, FED_BACK + 1)
            reward = np.full(FED_BACK, 0.5) if how == "constant" else shifted.reward(
                np.full(FED_BACK, user), items[:, None], times, how == "shifted")[:, 0]
            for item, t, r in zip(items, times, reward, strict=True):
                ack, _ = service.feedback(FeedbackRequest(
                    user_id=str(user), item_id=str(item), timestamp=float(t), reward=float(r)))
                assert ack["model_version"] == service.version
    finally:
        service.close()


class Http:
    """A keep-alive JSON client for one thread."""

    def __init__(self, server: BackgroundServer) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=30)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=payload,
                          headers={"Content-Type": "application/json"} if payload else {})
        response = self.conn.getresponse()
        text = response.read().decode()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, json.loads(text) if is_json else text

    def close(self) -> None:
        self.conn.close()


def _update(run: Path, db: Path, out: Path, pointer: Path) -> tuple[int, dict, str]:
    result = CliRunner().invoke(cli_app, ["update", "--run", str(run), "--db", str(db),
                                          "--out", str(out), "--promote", str(pointer),
                                          "--json"])
    record = json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else {}
    return result.exit_code, record, result.stderr


@pytest.fixture(scope="module")
def updated(run: Path, shifted: Shifted, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Path, dict]:
    """(new version, its feedback store, the update's record) after shifted feedback."""
    tmp = tmp_path_factory.mktemp("shifted")
    db, pointer = tmp / "feedback.sqlite3", tmp / "current.json"
    _feed_back(run, db, shifted, "shifted")
    code, record, stderr = _update(run, db, tmp / "v1", pointer)
    assert code == 0, stderr
    assert read_pointer(pointer) == (tmp / "v1").resolve()
    return tmp / "v1", db, record


def _fresh_requests(old: Service, new: Service, shifted: Shifted
                    ) -> dict[str, np.ndarray]:
    """Requests neither policy learned from (later times, new candidate draws): each
    version's alpha and the true (shifted) reward of its top-K, per request."""
    rng = np.random.default_rng(11)
    out: dict[str, list] = {"user": [], "time": [], "alpha_old": [], "alpha_new": [],
                            "reward_old": [], "reward_new": []}
    for user in range(1, USERS + 1):
        start = old.history(str(user)).last_time or 0.0
        for step in range(3):
            t = start + 86400.0 * (step + 1) + rng.uniform(0, 86400.0)
            candidates = rng.choice(np.arange(1, ITEMS + 1), size=FED_BACK, replace=False)
            req = RecommendRequest(user_id=str(user), k=K, timestamp=float(t),
                                   candidates=[str(i) for i in candidates])
            true = dict(zip(req.candidates or [], shifted.reward(
                np.array([user]), candidates[None], np.array([t]))[0], strict=True))
            for name, service in (("old", old), ("new", new)):
                answer = service.recommend(req)
                out[f"alpha_{name}"].append(list(answer["weights"].values()))
                out[f"reward_{name}"].append(np.mean([true[i["item_id"]]
                                                      for i in answer["items"]]))
            out["user"].append(user)
            out["time"].append(t)
    return {key: np.asarray(value) for key, value in out.items()}


def test_update_follows_the_shifted_preference(run: Path, shifted: Shifted,
                                               updated: tuple[Path, Path, dict]) -> None:
    new_run, db, record = updated
    check_complete(new_run)  # a complete run version, marker last
    saved = json.loads((new_run / UPDATE_FILE).read_text())
    assert saved["parent"]["run"] == str(run.resolve())
    assert saved["feedback"]["first_id"] == 1
    assert saved["feedback"]["last_id"] == saved["feedback"]["rewarded_events"] \
        == USERS * FED_BACK
    assert record["check"]["versus_current"]["gain_lower_bound"] > 0
    # the new version's own ONNX export: of its weights, not the parent's
    manifest = read_manifest(new_run / EXPORT_DIR)
    assert manifest["weights"] == weight_digests(new_run) != weight_digests(run)
    assert load_exported(new_run) is not None
    old, new = Service.load(run, db=db), Service.load(new_run, db=db)
    try:
        assert new.version != old.version
        fresh = _fresh_requests(old, new, shifted)
    finally:
        old.close()
        new.close()
    # held out: requests at times and with candidates no policy learned from
    gain = fresh["reward_new"] - fresh["reward_old"]
    assert gain.mean() > 0.01, (fresh["reward_new"].mean(), fresh["reward_old"].mean())
    # the flipped users' alpha moves the way their preference moved
    flipped = shifted.flip[fresh["user"]]
    moved = (shifted.preference(fresh["user"], fresh["time"])
             - shifted.preference(fresh["user"], fresh["time"], shifted=False))[flipped]
    step = (fresh["alpha_new"] - fresh["alpha_old"])[flipped]
    assert float((step * moved).sum(1).mean()) > 0.02
    target = shifted.preference(fresh["user"], fresh["time"])[flipped]
    assert np.abs(fresh["alpha_new"][flipped] - target).sum(1).mean() \
        < np.abs(fresh["alpha_old"][flipped] - target).sum(1).mean()


@pytest.mark.parametrize("how", ["constant", "same"])
def test_update_refuses_without_a_gain(run: Path, shifted: Shifted, tmp_path: Path,
                                       how: str) -> None:
    """No signal (one constant reward) or the unchanged world: exit 1, nothing that looks
    complete, the pointer still names the old version."""
    db, pointer, out = tmp_path / "feedback.sqlite3", tmp_path / "current.json", \
        tmp_path / "v1"
    write_pointer(pointer, run)
    _feed_back(run, db, shifted, how)
    code, record, stderr = _update(run, db, out, pointer)
    assert code == 1, stderr
    assert "does not beat the current one" in stderr
    assert not out.exists() or not (out / MARKER).exists()
    assert read_pointer(pointer) == run.resolve()
    if how == "constant":  # every alpha earns the same: no gain to bound
        assert record["check"]["versus_current"]["gain"] == 0.0


def test_hot_reload_answers_every_request_in_flight(run: Path,
                                                    updated: tuple[Path, Path, dict],
                                                    tmp_path: Path) -> None:
    """Four clients request without pause while the pointer moves to the new version:
    every request succeeds, and every one sent after the switch names the new version."""
    new_run, db, _ = updated
    pointer = tmp_path / "current.json"
    versions = Versions(Service.load(run, db=db), run=run)
    old_version = versions.current.version
    answers: list[tuple[float, int, str]] = []  # (sent at, status, model version)
    stop = threading.Event()

    def hammer(server: BackgroundServer) -> None:
        client = Http(server)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                status, body = client.request("POST", "/recommend", {"user_id": "3", "k": K})
                answers.append((sent, status, body.get("model_version", "")))
        finally:
            client.close()

    with BackgroundServer(versions) as server:
        threads = [threading.Thread(target=hammer, args=(server,)) for _ in range(4)]
        for t in threads:
            t.start()
        while len(answers) < 20:
            time.sleep(0.01)
        write_pointer(pointer, new_run)
        assert versions.check(pointer)  # what serve --follow's watcher does
        switched = time.monotonic()
        before = len(answers)
        while len(answers) < before + 20:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        client = Http(server)
        _, health = client.request("GET", "/health")
        ack = client.request("POST", "/feedback", {"user_id": "3", "item_id": "1"})
        rec = client.request("POST", "/recommend", {"user_id": "3", "k": K})
        _, metrics = client.request("GET", "/metrics")
        client.close()
    new_version = health["model_version"]
    assert new_version != old_version
    assert all(status == 200 for _, status, _ in answers), {s for _, s, _ in answers}
    assert {v for _, _, v in answers} == {old_version, new_version}
    assert {v for sent, _, v in answers if sent > switched} == {new_version}
    assert (ack[0], ack[1]["model_version"]) == (201, new_version)
    assert (rec[0], rec[1]["model_version"]) == (200, new_version)
    assert f'deepprl_model_info{{version="{new_version}"}} 1.0' in metrics
    assert f'deepprl_model_info{{version="{old_version}"}} 0.0' in metrics
    assert versions.check(pointer) is False  # the pointer names the served run already


def test_a_pointer_to_a_broken_run_keeps_the_old_version(run: Path, tmp_path: Path) -> None:
    versions = Versions(Service.load(run, db=tmp_path / "db.sqlite3"), run=run)
    try:
        before = versions.current.version
        pointer = tmp_path / "current.json"
        (tmp_path / "broken").mkdir()
        write_pointer(pointer, tmp_path / "broken")
        assert versions.check(pointer) is False
        pointer.write_text("not json")
        assert versions.check(pointer) is False
        assert versions.current.version == before
    finally:
        versions.close()


def test_update_cli_errors(run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["update", "--run", str(run), "--db",
                                          str(tmp_path / "none.sqlite3"), "--out",
                                          str(tmp_path / "v1")])
    assert result.exit_code == 2 and "no such feedback store" in result.stderr
    result = CliRunner().invoke(cli_app, ["update", "--run", str(tmp_path), "--db",
                                          str(tmp_path / "none.sqlite3"), "--out",
                                          str(tmp_path / "v1")])
    assert result.exit_code == 2 and "not a run directory" in result.stderr




def test_watch_switches_and_a_second_update_starts_after_the_first(
        updated: tuple[Path, Path, dict], tmp_path: Path) -> None:
    """serve --follow's watcher switches within a few intervals; an update of the new
    version learns only from feedback stored after the one its parent learned from (no
    reward here: refused, nothing written)."""
    new_run, db, record = updated
    parent = Path(record["parent"]["run"])
    pointer = tmp_path / "current.json"
    versions = Versions(Service.load(parent, db=db), run=parent)
    try:
        versions.watch(pointer, 0.05)
        write_pointer(pointer, new_run)
        deadline = time.monotonic() + 20
        while versions.reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert versions.run == new_run.resolve()
    finally:
        versions.close()
    code, second, stderr = _update(new_run, db, tmp_path / "v2", pointer)
    assert code == 1 and "nothing to learn from" in stderr, stderr
    # only rows after the parent's last_id (here at most the hot-reload test's one event
    # without a reward): nothing the first update learned from is learned again
    assert second["feedback"]["rewarded_events"] == 0
    assert not (tmp_path / "v2").exists()
    assert read_pointer(pointer) == new_run.resolve()
