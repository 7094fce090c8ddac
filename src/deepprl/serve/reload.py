"""Hot reload: the service switches to a new run version without dropping a request.

A version pointer is a small JSON file, {"run": "/path/to/run"}, written atomically
(`deepprl update --promote FILE` writes it once a new version is complete and accepted).
`deepprl serve --follow FILE` checks it every few seconds (Versions.watch); when it names
another run, that run is loaded beside the served one (the requests keep being answered)
and checked: complete, a weighted model, trained on the same log (the feedback store's
fingerprint) with the same history length. Then one assignment under a lock makes it the
served Service. A request reads the served Service once (a /recommend batch once per
forward pass), so it is answered wholly by one version, and names it; a request already in
flight on the old version finishes on it (both share the one feedback store, which stays
open). A pointer that names a broken run is logged and ignored: the old version stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from deepprl.artifacts import SCHEMA_FILE, load_weighted_run, read_json
from deepprl.io import write_json
from deepprl.rundir import RunError
from deepprl.serve.service import Service, model_version

log = logging.getLogger("deepprl.serve")


def write_pointer(path: Path, run: Path) -> None:
    """Atomically make the version pointer `path` name `run`."""
    write_json(path, {"run": str(run.resolve())})


def read_pointer(path: Path) -> Path | None:
    """The run a version pointer names; None when the file does not exist yet."""
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("run"), str):
        raise RunError(f"{path}: a version pointer holds {{\"run\": \"/path/to/run\"}}")
    return Path(record["run"])


class Versions:
    """The served Service, replaced whole (swap) under a lock; the app reads `current`."""

    def __init__(self, service: Service, *, run: Path | None = None) -> None:
        self._service, self._lock = service, threading.Lock()
        self.run = run.resolve() if run is not None else None
        self.reloads = 0
        self.listeners: list[Callable[[str], None]] = []  # called with each new version
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Service:
        with self._lock:
            return self._service

    def swap(self, service: Service, run: Path | None = None) -> Service:
        """Serve `service` from now on; returns the previous one (not closed: requests in
        flight may still be using it, and the store is shared)."""
        with self._lock:
            old, self._service = self._service, service
            self.run = run.resolve() if run is not None else self.run
            self.reloads += 1
        for listener in self.listeners:
            listener(service.version)
        log.info("now serving model version %s (was %s)", service.version, old.version)
        return old

    def load(self, run: Path) -> Service:
        """A Service for `run` sharing the served one's store and settings; RunError where
        the run cannot replace the served one."""
        old = self.current
        schema = read_json(run / SCHEMA_FILE) if (run / SCHEMA_FILE).is_file() else {}
        config, recommender = load_weighted_run(run, serving=True)
        if schema.get("data_fingerprint") != old.store.fingerprint:
            raise RunError(f"{run}: trained on another log than the served model (data "
                           f"fingerprint); serve it with its own feedback store instead")
        if config.model.history_length != old.length:
            raise RunError(f"{run}: reads {config.model.history_length} history steps, the "
                           f"served model {old.length}; restart the service to switch")
        scorer = None
        if old.scorer is not None:  # served from ONNX: the new version from its own export
            from deepprl.serve.onnx_scorer import OnnxScorer

            scorer = OnnxScorer.load(run)
        service = Service(config, recommender, store=old.store, settings=old.settings,
                          version=model_version(run), scorer=scorer)
        service.started = old.started  # /health's uptime is the process's
        return service

    def check(self, pointer: Path) -> bool:
        """Switch to the run `pointer` names if it is another one; True when switched.
        A broken pointer or run is logged and ignored (the old version keeps serving)."""
        try:
            run = read_pointer(pointer)
            if run is None or (self.run is not None and run.resolve() == self.run):
                return False
            service = self.load(run)
        except (RunError, OSError, ValueError) as err:
            log.warning("not switching to the version %s names: %s", pointer, err)
            return False
        self.swap(service, run)
        return True

    def watch(self, pointer: Path, interval: float) -> None:
        """Check `pointer` every `interval` seconds in a daemon thread (until close)."""
        def loop() -> None:
            while not self._stop.wait(interval):
                self.check(pointer)
        self._thread = threading.Thread(target=loop, name="deepprl-reload", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching and close the store (after the server has stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.current.close()
