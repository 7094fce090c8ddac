"""Run the app with uvicorn: in the foreground (deepprl serve) or in a thread (tests)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import torch
import uvicorn

from deepprl.serve.app import create_app
from deepprl.serve.service import Service
from deepprl.serve.settings import ServeSettings

LOOPBACK = "127.0.0.1"


def _config(service: Service, host: str, port: int, log_level: str) -> uvicorn.Config:
    # one intra-op thread: requests run side by side on the cores instead of fighting
    # over them (two threads per forward pass are much slower under concurrent load)
    torch.set_num_threads(1)
    return uvicorn.Config(create_app(service), host=host, port=port, log_level=log_level,
                          access_log=False, server_header=False, timeout_keep_alive=30,
                          lifespan="off")


def serve(run: str | Path, *, host: str = LOOPBACK, port: int = 8000,
          db: str | Path | None = None, settings: ServeSettings | None = None,
          log_level: str = "info") -> None:
    """Load the run (RunError/StoreError, both ValueError, before listening) and serve
    until interrupted."""
    service = Service.load(run, db=db, settings=settings)
    try:
        uvicorn.Server(_config(service, host, port, log_level)).run()
    finally:
        service.close()


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn in a daemon thread on a loopback port; `with BackgroundServer(svc) as s:`
    then s.url. Stopping closes the service's store."""

    def __init__(self, service: Service, *, host: str = LOOPBACK, port: int | None = None,
                 log_level: str = "warning") -> None:
        self.service = service
        self.host, self.port = host, port if port is not None else free_port(host)
        self.server = uvicorn.Server(_config(service, self.host, self.port, log_level))
        self.thread = threading.Thread(target=self.server.run, name="deepprl-serve",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.service.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
