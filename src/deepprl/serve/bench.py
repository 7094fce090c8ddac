"""Serving benchmark: latency and throughput of POST /recommend over loopback HTTP.

The server runs in its own process (`python -m deepprl serve`), so client and server do not
share an interpreter lock; the client keeps its connections alive. Latency is measured by
the client, from sending the request to reading the whole response; the server's CPU time
per request (Linux) beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from deepprl.serve.server import LOOPBACK, free_port
from deepprl.serve.settings import API_KEY_ENV

# issue 17: p99 at concurrency 1 and throughput at concurrency 50, on 2 cores
TARGET_P99_MS_C1 = 3.0
TARGET_REQUESTS_PER_S_C50 = 700.0


def _summary(latencies: list[float], wall: float) -> dict[str, float]:
    ms = sorted(x * 1000.0 for x in latencies)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"requests": len(ms), "p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3),
            "mean_ms": round(statistics.fmean(ms), 3), "max_ms": round(ms[-1], 3),
            "requests_per_s": round(len(ms) / wall, 1)}


def _bodies(run: Path, candidates: int, k: int, n: int) -> list[bytes]:
    schema = json.loads((run / "schema.json").read_text(encoding="utf-8"))
    items, users = schema["item_ids"], schema["user_ids"]
    if len(items) < candidates:
        raise ValueError(f"{run}: {len(items)} items, fewer than the {candidates} candidates "
                         f"asked for")
    chosen = items[:candidates]
    return [json.dumps({"user_id": users[i % len(users)], "k": k,
                        "candidates": chosen}).encode() for i in range(n)]


def _request(path: str, body: bytes, port: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _status_and_length(status_line: bytes, headers: list[bytes]) -> tuple[int, int]:
    status, length = int(status_line.split()[1]), 0
    for line in headers:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, length


class _Client:
    """A minimal keep-alive HTTP/1.1 client (a benchmark client must cost little CPU:
    it shares the machine with the server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection((LOOPBACK, port), timeout=60.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def post(self, path: str, body: bytes) -> int:
        self.sock.sendall(_request(path, body, self.port))
        status_line = self.file.readline()
        headers = []
        while (line := self.file.readline()) not in (b"\r\n", b""):
            headers.append(line)
        status, length = _status_and_length(status_line, headers)
        self.file.read(length)
        return status

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _sequential(port: int, bodies: list[bytes]) -> dict[str, float]:
    client = _Client(port)
    latencies = []
    try:
        started = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            status = client.post("/recommend", body)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise ValueError(f"POST /recommend answered {status}")
        wall = time.perf_counter() - started
    finally:
        client.close()
    return _summary(latencies, wall)


async def _concurrent(port: int, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(reversed(bodies))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                writer.write(_request("/recommend", body, port))
                status_line = await reader.readline()
                headers = []
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    headers.append(line)
                status, length = _status_and_length(status_line, headers)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise ValueError(f"POST /recommend answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return _summary(latencies, wall)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) of a process so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(pid: int, measure: Any) -> dict[str, Any]:
    """measure() plus the server's CPU milliseconds per request it answered meanwhile:
    a figure that other jobs on a shared machine change less than latency."""
    before = _cpu_seconds(pid)
    result = dict(measure())
    after = _cpu_seconds(pid)
    result["server_cpu_ms_per_request"] = None if before is None or after is None else \
        round(1000.0 * (after - before) / result["requests"], 3)
    return result


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ValueError(f"the server exited with code {process.returncode} before it "
                             f"answered /health")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=1.0) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ValueError(f"the server did not answer /health within {timeout:.0f} s")


def bench_serve(run: str | Path, *, candidates: int = 2000, k: int = 10,
                requests_c1: int = 500, requests_c50: int = 2000, warmup: int = 50,
                max_batch: int | None = None) -> dict[str, Any]:
    """p50/p99 latency and requests/s of top-k among `candidates` items, at concurrency 1
    and 50, against `deepprl serve --run RUN` started on a loopback port (`max_batch`: its
    --max-batch, default the server's)."""
    run = Path(run)
    if min(candidates, k, requests_c1, requests_c50) < 1 or warmup < 0:
        raise ValueError("candidates, k and request counts must be >= 1")
    bodies = _bodies(run, candidates, k, max(requests_c1, requests_c50, warmup))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="deepprl-bench-serve-") as tmp:
        command = [sys.executable, "-m", "deepprl", "serve", "--run", str(run), "--host",
                   LOOPBACK, "--port", str(port), "--db", str(Path(tmp) / "bench.sqlite3"),
                   "--log-level", "warning",
                   *(["--max-batch", str(max_batch)] if max_batch is not None else [])]
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}  # an open server
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            _wait_healthy(port, process, timeout=120.0)
            if warmup:
                _sequential(port, bodies[:warmup])
            c1 = _with_cpu(process.pid, lambda: _sequential(port, bodies[:requests_c1]))
            c50 = _with_cpu(process.pid, lambda: asyncio.run(
                _concurrent(port, bodies[:requests_c50], 50)))
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {
        "endpoint": "POST /recommend", "candidates": candidates, "k": k,
        "concurrency_1": c1, "concurrency_50": c50,
        "max_batch": max_batch, "target_p99_ms_c1": TARGET_P99_MS_C1,
        "target_requests_per_s_c50": TARGET_REQUESTS_PER_S_C50,
        "met": c1["p99_ms"] <= TARGET_P99_MS_C1
        and c50["requests_per_s"] >= TARGET_REQUESTS_PER_S_C50,
        "met_each": {"c1_p99": c1["p99_ms"] <= TARGET_P99_MS_C1,
                     "c50_requests_per_s": c50["requests_per_s"] >= TARGET_REQUESTS_PER_S_C50},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
