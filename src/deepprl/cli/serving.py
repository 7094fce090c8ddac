"""deepprl serve | bench train | bench serve: the HTTP service and the benchmarks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from deepprl.cli.common import (
    app,
    bench_app,
    err,
    fail,
    parse_options,
)


@app.command()
def serve(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Annotated[Path | None, typer.Option(
        help="Feedback store (SQLite). Default: RUN/serve.sqlite3; give a path when the run "
             "directory is read-only.")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="DEEPPRL_API_KEY", show_envvar=True,
        help="Require this key in header X-API-Key (prefer the environment variable: a "
             "command-line value is visible to other local users).")] = None,
    max_k: Annotated[int, typer.Option(help="Largest k per request.")] = 1000,
    max_candidates: Annotated[int, typer.Option(help="Longest candidates list.")] = 10_000,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = 1 << 20,
    inference_threads: Annotated[int, typer.Option(
        help="Forward passes at once (about one per core); the rest queue in order.")] = 2,
    max_batch: Annotated[int, typer.Option(
        help="Most /recommend requests scored in one forward pass (those that arrive while "
             "the inference threads are busy); 1: each on its own.")] = 32,
    max_concurrent_requests: Annotated[int, typer.Option(
        help="Requests in progress at once; one more gets 503 with Retry-After.")] = 100,
    body_timeout: Annotated[float, typer.Option(
        help="Seconds a request's body may take to arrive (408 beyond).")] = 10.0,
    header_timeout: Annotated[float, typer.Option(
        help="Seconds a request's headers may take to arrive (408 beyond).")] = 10.0,
    keep_alive: Annotated[int, typer.Option(
        help="Seconds an idle keep-alive connection stays open.")] = 5,
    retention_events: Annotated[int | None, typer.Option(
        help="Keep at most this many feedback events per user (default: all).")] = None,
    retention_age: Annotated[float | None, typer.Option(
        help="Delete feedback received more than this many seconds ago (default: "
             "never).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    follow: Annotated[Path | None, typer.Option(
        help="Version pointer (JSON {\"run\": DIR}, written by 'deepprl update --promote'): "
             "serve the run it names (--run until it exists) and switch, without dropping "
             "requests, when it names another.")] = None,
    reload_interval: Annotated[float, typer.Option(
        help="Seconds between two checks of --follow.")] = 5.0,
    onnx: Annotated[bool, typer.Option(
        help="Score with the run's ONNX export (RUN/onnx, written by train) in onnxruntime "
             "instead of PyTorch.")] = False,
    onnx_dir: Annotated[Path | None, typer.Option(
        help="Score with this export (written by 'deepprl export' from the run's weights); "
             "implies --onnx.")] = None,
) -> None:
    """HTTP service: POST /recommend, POST /feedback, GET /health, GET /metrics, /docs."""
    from deepprl.serve.server import serve as run_server
    from deepprl.serve.settings import ServeSettings

    if not 0 <= port <= 65535:
        fail(f"--port must be in 0..65535, got {port}")
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        fail(f"--log-level must be one of critical, error, warning, info, debug, trace; "
              f"got {log_level!r}")
    try:
        settings = ServeSettings(max_k=max_k, max_candidates=max_candidates,
                                 max_body_bytes=max_body_bytes, api_key=api_key or None,
                                 inference_threads=inference_threads, max_batch=max_batch,
                                 max_concurrent_requests=max_concurrent_requests,
                                 body_timeout_s=body_timeout, header_timeout_s=header_timeout,
                                 keep_alive_s=keep_alive,
                                 retention_max_events_per_user=retention_events,
                                 retention_max_age_s=retention_age)
        if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
            err.print(Text.assemble(("warning:", "yellow"), f" listening on {host} without an "
                                    f"API key; set DEEPPRL_API_KEY to require one"),
                      highlight=False)
        if not reload_interval > 0:
            fail(f"--reload-interval must be > 0, got {reload_interval}")
        if follow is not None and onnx_dir is not None:
            fail("--onnx-dir names one run's export; with --follow use --onnx (each version "
                 "is scored by its own RUN/onnx)")
        run_server(run, host=host, port=port, db=db, settings=settings, log_level=log_level,
                   follow=follow, reload_interval=reload_interval, onnx=onnx,
                   onnx_dir=onnx_dir)
    except ValueError as error:
        fail(str(error))
    except OSError as error:  # e.g. the port is taken
        fail(f"cannot listen on {host}:{port}: {error}")


@bench_app.command("train")
def bench_train_cmd(
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "movielens-100k",
    model: Annotated[str, typer.Option(
        help="predictor | deepprl | any weighted model (mmoe, ple, ...)")] = "deepprl",
    epochs: Annotated[int | None, typer.Option(
        help="Timed epochs after one warm-up (default 3); for deepprl the stage-1 epochs of "
             "the timed run (default: the config's).")] = None,
    policy_steps: Annotated[int | None, typer.Option(
        help="deepprl: stage-2 steps of the timed run (default: the config's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Events per step.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    dataset_option: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to the dataset loader, e.g. n_users=50 for the simulator; "
             "repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Training throughput in records/s; for deepprl a whole default run, timed (run_seconds,
    stage1_seconds, stage2_seconds) beside its floor (floor_seconds: its stage-1 matrix
    products at this machine's best matmul rate, measured in the same process)."""
    from deepprl.bench import bench_train

    try:
        result = bench_train(dataset, model, epochs=epochs, batch_size=batch_size, seed=seed,
                             policy_steps=policy_steps,
                             options=parse_options(dataset_option or []))
    except ValueError as error:
        fail(str(error))
    sys.stdout.write(json.dumps(result, indent=None if as_json else 2) + "\n")


@bench_app.command("serve")
def bench_serve_cmd(
    run: Annotated[Path | None, typer.Option(
        help="Run directory to serve; default: train a small simulator run with 2,000 items "
             "in a temporary directory.")] = None,
    candidates: Annotated[int, typer.Option(help="Candidates per request.")] = 2000,
    k: Annotated[int, typer.Option(help="Top-k per request.")] = 10,
    requests_c1: Annotated[int, typer.Option(help="Timed requests at concurrency 1.")] = 500,
    requests_c50: Annotated[int, typer.Option(help="Timed requests at concurrency 50.")
                            ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the trained run.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Serving latency (p50/p99) and requests/s of POST /recommend at concurrency 1 and 50."""
    import tempfile

    from deepprl.serve.bench import bench_serve

    try:
        if run is not None:
            result = bench_serve(run, candidates=candidates, k=k, requests_c1=requests_c1,
                                 requests_c50=requests_c50)
        else:
            from deepprl.config import EvalConfig, PolicyConfig, RunConfig, TrainConfig
            from deepprl.train.run import train_run

            with tempfile.TemporaryDirectory(prefix="deepprl-bench-run-") as tmp:
                err.print(f"training a simulator run with {max(candidates, 2)} items ...")
                config = RunConfig(dataset={"name": "simulator", "n_users": 30,
                                            "n_items": max(candidates, 2),
                                            "events_per_user": 20, "seed": seed},
                                   train=TrainConfig(epochs=1), policy=PolicyConfig(steps=50),
                                   eval=EvalConfig(k=k, max_events=200), seed=seed)
                train_run(config, Path(tmp) / "run")
                result = bench_serve(Path(tmp) / "run", candidates=candidates, k=k,
                                     requests_c1=requests_c1, requests_c50=requests_c50)
    except ValueError as error:
        fail(str(error))
    sys.stdout.write(json.dumps(result, indent=None if as_json else 2) + "\n")

