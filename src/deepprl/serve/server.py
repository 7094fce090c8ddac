"""Run the app with uvicorn: in the foreground (deepprl serve) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import h11
import torch
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from deepprl.serve.app import create_app
from deepprl.serve.middleware import CLOSE, error_body
from deepprl.serve.reload import Versions, read_pointer
from deepprl.serve.service import Service
from deepprl.serve.settings import ServeSettings

LOOPBACK = "127.0.0.1"


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline on request headers, which uvicorn lacks: a
    connection that opens and sends nothing, or sends part of a request line and headers,
    is closed `header_timeout` seconds later (after a 408 when it had sent something).
    Bodies are bounded by the Guard middleware (body_timeout_s), idle keep-alive
    connections by uvicorn's timeout_keep_alive."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request is being handled: its headers are complete
        elif self._header_timer is None and not self.transport.is_closing():
            self._arm()  # bytes of a request whose headers have not all come

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()  # uvicorn's keep-alive timer now bounds the idle connection
        super().on_response_complete()

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        pending, _ = self.conn.trailing_data
        if pending and self.conn.their_state is h11.IDLE:
            # h11 holds part of a request: it has no Request to answer, so write it raw
            body = error_body([("headers", f"not received within {self.header_timeout:g} s")])
            head = [b"HTTP/1.1 408 Request Timeout", b"content-type: application/json",
                    b"content-length: " + str(len(body)).encode(),
                    b": ".join(CLOSE[0])]
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def _protocol(header_timeout: float) -> type[H11Protocol]:
    return type("HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,),
                {"header_timeout": header_timeout})


def _config(service: Service | Versions, host: str, port: int, log_level: str
            ) -> uvicorn.Config:
    # one intra-op thread: requests run side by side on the cores instead of fighting
    # over them (two threads per forward pass are much slower under concurrent load)
    torch.set_num_threads(1)
    s = (service.current if isinstance(service, Versions) else service).settings
    options: dict[str, Any] = {"timeout_keep_alive": s.keep_alive_s,
                               "http": _protocol(s.header_timeout_s)}
    return uvicorn.Config(create_app(service), host=host, port=port, log_level=log_level,
                          access_log=False, server_header=False, lifespan="off", **options)


def serve(run: str | Path, *, host: str = LOOPBACK, port: int = 8000,
          db: str | Path | None = None, settings: ServeSettings | None = None,
          log_level: str = "info", follow: Path | None = None,
          reload_interval: float = 5.0, onnx: bool = False,
          onnx_dir: str | Path | None = None) -> None:
    """Load the run (RunError/StoreError, both ValueError, before listening) and serve
    until interrupted; `onnx`, `onnx_dir`: score with an ONNX export (Service.load). With
    `follow`, a version pointer (deepprl.serve.reload): the run it names, where it exists,
    is served instead of `run`, and the service switches to the run it names next, checked
    every `reload_interval` seconds."""
    named = read_pointer(follow) if follow is not None else None
    run = named if named is not None else Path(run)
    versions = Versions(Service.load(run, db=db, settings=settings, onnx=onnx,
                                     onnx_dir=onnx_dir), run=run)
    if follow is not None:
        versions.watch(follow, reload_interval)
    try:
        uvicorn.Server(_config(versions, host, port, log_level)).run()
    finally:
        versions.close()


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn in a daemon thread on a loopback port; `with BackgroundServer(svc) as s:`
    then s.url. `svc`: a Service, or the Versions holding it (hot reload). Stopping
    closes the service's store."""

    def __init__(self, service: Service | Versions, *, host: str = LOOPBACK,
                 port: int | None = None, log_level: str = "warning") -> None:
        self.versions = service if isinstance(service, Versions) else Versions(service)
        self.host, self.port = host, port if port is not None else free_port(host)
        self.server = uvicorn.Server(_config(self.versions, self.host, self.port,
                                             log_level))
        self.thread = threading.Thread(target=self.server.run, name="deepprl-serve",
                                       daemon=True)

    @property
    def service(self) -> Service:
        """The served Service (the current version)."""
        return self.versions.current

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
        self.versions.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
