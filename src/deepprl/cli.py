"""Command line: deepprl train | evaluate | recommend | demo | experiment | report | models |
datasets | serve | bench | abtest analyse."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # rich.progress is imported by the commands that train, not by recommend
    from rich.progress import TaskID

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Deep Pareto Reinforcement Learning for multi-objective recommendation.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON on stdout).")
app.add_typer(bench_app, name="bench")
abtest_app = typer.Typer(no_args_is_help=True, help="Online A/B experiments (paper §7).")
app.add_typer(abtest_app, name="abtest")
err = Console(stderr=True)

def _fail(message: str) -> None:
    """Print `message` literally (no Rich markup: paths and TOML like [columns] stay as they
    are) and exit with status 2."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
              soft_wrap=True)
    raise typer.Exit(code=2)


class _Bars:
    """Training progress on stderr: a rich bar per stage on a terminal; elsewhere (CI,
    nohup, a redirected log) train.log's progress lines, one per epoch, per few hundred
    policy steps and per phase, as they happen (deepprl.train.progress)."""

    def __init__(self, enabled: bool, terminal: bool | None = None) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        terminal = err.is_terminal if terminal is None else terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), console=err,
                                 disable=not (enabled and terminal))
        self.lines: logging.Handler | None = None
        if enabled and not terminal:
            self.lines = logging.StreamHandler(sys.stderr)  # flushed after every line
            self.lines.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.tasks: dict[str, TaskID] = {}

    # on the parent of "deepprl.train": a line reaches train.log (that logger's own file)
    # before it reaches stderr
    _LOGGER = "deepprl"

    def __enter__(self) -> _Bars:
        self.progress.start()
        if self.lines is not None:
            logging.getLogger(self._LOGGER).addHandler(self.lines)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.lines is not None:
            logging.getLogger(self._LOGGER).removeHandler(self.lines)

    def __call__(self, stage: str, done: int, total: int, info: dict[str, float]) -> None:
        label = f"{stage} epoch {int(info['epoch'])}" if "epoch" in info else stage
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[label], completed=done)


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values are parsed as JSON where they can be (numbers)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"options must look like KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _apply_settings(config: Any, settings: list[str]) -> Any:
    """--set SECTION.FIELD=VALUE overrides, e.g. policy.gamma=0.9 or model.hidden=32."""
    from deepprl.config import RunConfig

    raw = config.to_dict()
    for section_field, value in _parse_options(settings).items():
        section, _, name = section_field.partition(".")
        if section not in ("model", "train", "policy", "eval") or not name:
            raise ValueError(f"--set needs SECTION.FIELD=VALUE with SECTION one of model, "
                             f"train, policy, eval; got {section_field!r}")
        raw[section][name] = value
    return RunConfig.from_dict(raw)


def _run_config(dataset: str | None, data: Path | None, mapping: Path | None, seed: int,
                epochs: int | None, policy_steps: int | None, k: int | None,
                options: list[str] | None = None, settings: list[str] | None = None,
                model: str = "deepprl") -> Any:
    from deepprl.config import RunConfig
    from deepprl.data.registry import dataset_spec
    from deepprl.zoo import configure

    spec = dataset_spec(dataset, data=str(data) if data else None,
                        mapping=str(mapping) if mapping else None,
                        options=_parse_options(options or []))
    config = configure(model, RunConfig(dataset=spec, seed=seed))
    if epochs is not None:
        if epochs < 1:
            raise ValueError("--epochs must be >= 1")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       epochs=epochs))
    if policy_steps is not None:
        if policy_steps < 1:
            raise ValueError("--policy-steps must be >= 1")
        config = dataclasses.replace(config, policy=dataclasses.replace(config.policy,
                                                                        steps=policy_steps))
    if k is not None:
        if k < 1:
            raise ValueError("--k must be >= 1")
        config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, k=k))
    return _apply_settings(config, settings or [])


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    dataset: Annotated[str | None, typer.Option(
        help="Built-in dataset (deepprl datasets), e.g. movielens-100k.")] = None,
    data: Annotated[Path | None, typer.Option(help="Your own CSV/Parquet log.")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Mapping file for --data.")] = None,
    model: Annotated[str, typer.Option(help="Registered model (deepprl models).")] = "deepprl",
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Stage-1 epochs.")] = None,
    policy_steps: Annotated[int | None, typer.Option(help="Stage-2 actor-critic steps.")] = None,
    k: Annotated[int | None, typer.Option(help="Top-K for reward and evaluation.")] = None,
    dataset_option: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE passed to the dataset loader, e.g. seed=3 or n_users=500 for the "
             "simulator; repeatable.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override SECTION.FIELD=VALUE (sections model, train, policy, "
                      "eval; see deepprl/config.py), e.g. policy.gamma=0.9; repeatable.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the run already in OUT (it is emptied first).")] = False,
    resume: Annotated[bool, typer.Option(
        help="Continue the killed run in OUT from its last checkpoint (same options as "
             "it was started with).")] = False,
) -> None:
    """Train a model; OUT receives config, seed, weights, metrics and train.log, and
    COMPLETE.json last. An existing run in OUT is refused without --overwrite or --resume.

    Data-parallel on several processes: torchrun --nproc_per_node=N -m deepprl train ...
    (rank 0 writes OUT and prints; see docs/scaling.md)."""
    from deepprl.distributed import env_world
    from deepprl.train.preflight import check_out_dir
    from deepprl.train.run import train_run

    try:
        check_out_dir(out)
        main_rank = env_world().main
        config = _run_config(dataset, data, mapping, seed, epochs, policy_steps, k,
                             dataset_option, set_, model)
        with _Bars(enabled=not quiet and main_rank) as bars:
            metrics = train_run(config, out, progress=bars, overwrite=overwrite,
                                resume=resume)
    except ValueError as error:
        _fail(str(error))
    except OSError as error:  # e.g. OUT under a parent that refuses new directories
        _fail(f"{error.filename or out}: {error.strerror or error} (writing the run "
              f"directory {out})")
    if not main_rank:
        return
    _print_table(metrics, title=f"{metrics['model']} on {metrics['dataset']} (seed {seed}) "
                                f"-> {out}")


@app.command("fit-predictor")
def fit_predictor_cmd(
    data: Annotated[Path, typer.Option(help="Parquet log (file or directory), sorted by "
                                            "user, then time.")],
    mapping: Annotated[Path, typer.Option(help="Mapping file (README: 'Your own log').")],
    out: Annotated[Path, typer.Option(help="Directory for weights, config and metrics.")],
    batch_rows: Annotated[int, typer.Option(help="Rows per record batch read.")] = 65_536,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Stage-1 epochs.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override SECTION.FIELD=VALUE; repeatable.")] = None,
) -> None:
    """Stage 1 on a log larger than memory, streamed from Parquet in record batches."""
    from deepprl.config import RunConfig
    from deepprl.train.stream import fit_predictor_file

    try:
        from deepprl.data.schema import read_mapping

        spec = {"data": str(data.resolve()), "mapping": read_mapping(mapping).to_dict(),
                "stream": True}
        config = _apply_settings(RunConfig(dataset=spec, seed=seed), set_ or [])
        if epochs is not None:
            if epochs < 1:
                raise ValueError("--epochs must be >= 1")
            config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                           epochs=epochs))
        metrics = fit_predictor_file(config, data, mapping, out, batch_rows=batch_rows)
    except ValueError as error:
        _fail(str(error))
    sys.stdout.write(json.dumps({k: v for k, v in metrics.items() if k != "stage1"} |
                                {"last_epoch": metrics["stage1"][-1]}) + "\n")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    weights: Annotated[str, typer.Option(
        help="learned (the run's own ranking) | equal (its predictor, equal weights) | "
             "static (its predictor, best static weights on validation) | popularity | "
             "oracle (upper bound: rank by the true reward)")] = "learned",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Offline metrics of a run: mean true objectives and reward of the top-K."""
    from deepprl.eval.offline import evaluate_run

    try:
        result = evaluate_run(run, weights)
    except ValueError as error:
        _fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=Text(f"{run} ({result['weights']} weights, top-{result['k']})"))
    for name in result["objectives"]:
        table.add_column(Text(name), justify="right")
    table.add_column("reward", justify="right")
    table.add_row(*[f"{v:.4f}" for v in result["objectives"].values()],
                  f"{result['reward']:.4f}")
    Console().print(table)


@app.command()
def recommend(
    run: Annotated[Path, typer.Option(help="Run directory written by train.")],
    user: Annotated[str, typer.Option(help="User id, as in the log.")],
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    candidates: Annotated[str | None, typer.Option(help="Comma-separated item ids.")] = None,
    exclude_seen: Annotated[bool, typer.Option(help="Skip items the user has had.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Top-K for a user's next interaction, with the weights alpha and every y_hat (from the
    run directory alone: the training log is not read)."""
    import torch

    from deepprl.artifacts import load_serving_run

    # one user's forward pass is a few ms on one thread; a second one only waits on the
    # first (hundreds of ms on a busy machine), as in the service
    torch.set_num_threads(1)
    try:
        _, recommender = load_serving_run(run)
        items = [c.strip() for c in candidates.split(",")] if candidates is not None else None
        result = recommender.recommend(user, k=k, candidates=items, exclude_seen=exclude_seen)
    except ValueError as error:
        _fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    alpha: dict[str, float] = result["weights"] or {}  # type: ignore[assignment]
    weights = ", ".join(f"{n}={w:.3f}" for n, w in alpha.items()) or "none (item-level model)"
    Console().print(f"user {user}: weights {weights}", highlight=False, soft_wrap=True,
                    markup=False)
    table = Table()
    table.add_column("item")
    table.add_column("score", justify="right")
    names = list(alpha)
    for name in names:
        table.add_column(Text(f"ŷ {name}"), justify="right")
    for row in result["items"]:  # type: ignore[attr-defined]
        table.add_row(Text(row["item"]), f"{row['score']:.4f}",
                      *[f"{row['predicted'][n]:.4f}" for n in names])
    Console().print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the two runs go.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """The main job: DeepPRL on bundled MovieLens-100K and on the simulator, with tables of
    DeepPRL vs fixed equal weights vs popularity (and the oracle on the simulator)."""
    from deepprl.config import RunConfig
    from deepprl.train.run import train_run

    for name in ("movielens-100k", "simulator"):
        err.print(f"training DeepPRL on {name} ...")
        with _Bars(enabled=True) as bars:  # the demo's own directories: rerun, replaced
            metrics = train_run(RunConfig(dataset={"name": name}, seed=seed), out / name,
                                progress=bars, overwrite=True)
        _print_table(metrics, title=f"{name}: top-{metrics['protocol']['k']} of "
                                    f"{metrics['protocol']['evaluated_events']} test events "
                                    f"(run in {out / name})")


def _print_table(metrics: dict[str, Any], *, title: str) -> None:
    model = metrics.get("model", "deepprl")
    own = "DeepPRL (learned weights)" if model == "deepprl" else f"{model} (its own ranking)"
    labels = {"learned": own, "equal": "same predictor, fixed equal weights",
              "static": "same predictor, best static weights (validation)",
              "popularity": "popularity", "oracle": "upper bound: rank by true reward"}
    rows = [m for m in labels if m in metrics]
    names = list(metrics[rows[0]]["objectives"])
    table = Table(title=Text(title))
    table.add_column("method")
    for name in names:
        table.add_column(Text(name), justify="right")
    table.add_column("reward", justify="right")
    for method in rows:
        m = metrics[method]
        table.add_row(labels[method], *[f"{m['objectives'][n]:.4f}" for n in names],
                      f"{m['reward']:.4f}")
    Console().print(table)
    p = metrics["protocol"]
    excluded, total = p["excluded_events_with_at_most_k_candidates"], p["test_events"]
    line = (f"excluded {excluded} of {total} test events ({excluded / max(total, 1):.0%}) "
            f"with <= {p['k']} candidates (every ranking picks the same items there); "
            f"evaluated {p['evaluated_events']}, mean candidates {p['mean_candidates']:.1f}")
    if "test_mae" in metrics:
        mae = {n: round(v, 4) for n, v in metrics["test_mae"].items()}
        line += f"; prediction MAE on test events {json.dumps(mae)}"
    if "validation" in metrics:
        line += f"\n{metrics['validation']}"
    Console().print(line, highlight=False, markup=False)


@app.command()
def experiment(
    name: Annotated[str, typer.Argument(help="Experiment (deepprl experiment list).")],
    dataset: Annotated[str | None, typer.Option(
        help="Dataset; default: the experiment's first.")] = None,
    quick: Annotated[bool, typer.Option(help="Tiny sizes (what CI runs).")] = False,
    seeds: Annotated[int | None, typer.Option(
        help="Repetitions (seeds / initialisations); default per experiment.")] = None,
    folds: Annotated[int, typer.Option(
        help="0: temporal hold-out; F: every fold of a time-stratified F-fold split, "
             "each over the seeds (offline tables).")] = 0,
    out: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
    runs: Annotated[Path, typer.Option(help="Cache of trained runs, reused across "
                                            "experiments.")] = Path("runs/experiments"),
    executor: Annotated[str, typer.Option(help="sequential | ray")] = "sequential",
    address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
) -> None:
    """Run one of the paper's experiments; writes OUT/NAME/DATASET.md, .json and PNGs.
    `deepprl experiment list` lists them."""
    from deepprl.experiments import EXPERIMENTS, Context, run_experiment

    if name == "list":
        width = max(len(n) for n in EXPERIMENTS)
        for key, entry in EXPERIMENTS.items():
            typer.echo(f"{key:{width}s}  {entry.description} [{', '.join(entry.datasets)}]")
        return
    try:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; expected one of "
                             f"{sorted(EXPERIMENTS)} (deepprl experiment list)")
        chosen = dataset or EXPERIMENTS[name].datasets[0]
        command = " ".join(["deepprl", "experiment", name, "--dataset", chosen,
                            *(["--quick"] if quick else []),
                            *(["--seeds", str(seeds)] if seeds is not None else []),
                            *(["--folds", str(folds)] if folds else [])])
        ctx = Context(dataset=chosen, quick=quick, seeds=seeds, folds=folds, out=out, runs=runs,
                      executor=executor, address=address, command=command)
        path = run_experiment(name, ctx)
    except ValueError as error:
        _fail(str(error))
    typer.echo(str(path))


@app.command()
def report(
    reports: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
) -> None:
    """Gather every experiment's reports into REPORTS/README.md, figures inline."""
    from deepprl.experiments.collect import collect

    try:
        path = collect(reports)
    except ValueError as error:
        _fail(str(error))
    typer.echo(str(path))


@app.command()
def models() -> None:
    """List the registered models: DeepPRL, its variants and the baselines."""
    from deepprl.zoo import models as registry

    entries = registry()
    width = max(len(name) for name in entries)
    for name, entry in entries.items():
        typer.echo(f"{name:{width}s}  {entry.description}")


@app.command()
def datasets() -> None:
    """List the built-in datasets."""
    from deepprl.data.registry import DATASETS

    width = max(len(name) for name in DATASETS)
    for name, entry in DATASETS.items():
        typer.echo(f"{name:{width}s} {entry.description}")


@bench_app.command("train")
def bench_train_cmd(
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "movielens-100k",
    model: Annotated[str, typer.Option(
        help="predictor | deepprl | any weighted model (mmoe, ple, ...)")] = "deepprl",
    epochs: Annotated[int, typer.Option(help="Timed epochs after one warm-up.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Events per step.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Training throughput in records/s."""
    from deepprl.bench import bench_train

    try:
        result = bench_train(dataset, model, epochs=epochs, batch_size=batch_size, seed=seed)
    except ValueError as error:
        _fail(str(error))
    sys.stdout.write(json.dumps(result, indent=None if as_json else 2) + "\n")


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
) -> None:
    """HTTP service: POST /recommend, POST /feedback, GET /health, GET /metrics, /docs."""
    from deepprl.serve.server import serve as run_server
    from deepprl.serve.settings import ServeSettings

    if not 0 <= port <= 65535:
        _fail(f"--port must be in 0..65535, got {port}")
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        _fail(f"--log-level must be one of critical, error, warning, info, debug, trace; "
              f"got {log_level!r}")
    try:
        settings = ServeSettings(max_k=max_k, max_candidates=max_candidates,
                                 max_body_bytes=max_body_bytes, api_key=api_key or None,
                                 inference_threads=inference_threads,
                                 max_concurrent_requests=max_concurrent_requests,
                                 body_timeout_s=body_timeout, header_timeout_s=header_timeout,
                                 keep_alive_s=keep_alive,
                                 retention_max_events_per_user=retention_events,
                                 retention_max_age_s=retention_age)
        if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
            err.print(Text.assemble(("warning:", "yellow"), f" listening on {host} without an "
                                    f"API key; set DEEPPRL_API_KEY to require one"),
                      highlight=False)
        run_server(run, host=host, port=port, db=db, settings=settings, log_level=log_level)
    except ValueError as error:
        _fail(str(error))
    except OSError as error:  # e.g. the port is taken
        _fail(f"cannot listen on {host}:{port}: {error}")


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
        _fail(str(error))
    sys.stdout.write(json.dumps(result, indent=None if as_json else 2) + "\n")


@abtest_app.command("analyse")
def abtest_analyse(
    log: Annotated[Path, typer.Option(help="A/B log: Parquet or CSV, one row per shown "
                                           "item (docs/abtest.md).")],
    schema: Annotated[Path | None, typer.Option(help="JSON file renaming the columns "
                                                     "(LogSchema fields).")] = None,
    unit: Annotated[str, typer.Option(help="session | record")] = "session",
    cov: Annotated[str, typer.Option(help="cluster (by consumer) | HC1")] = "cluster",
    out: Annotated[Path, typer.Option(help="Root of the reports.")] = Path("reports"),
) -> None:
    """Tables 11-15 and Figures 12-14 of your own A/B log; writes OUT/abtest/<stem>.md."""
    from deepprl.abtest.analysis import LogSchema
    from deepprl.abtest.report import analyse_file

    try:
        chosen = LogSchema.from_file(schema) if schema is not None else None
        path = analyse_file(log, out=out, schema=chosen, unit=unit, cov=cov,
                            command=" ".join(["deepprl", "abtest", "analyse", "--log", str(log),
                                              *(["--schema", str(schema)] if schema else []),
                                              "--unit", unit, "--cov", cov]))
    except (ValueError, OSError) as error:
        _fail(str(error))
    typer.echo(str(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
