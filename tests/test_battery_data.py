"""A battery of malformed inputs through the real CLI: data files, mapping files, CLI options
and run-directory paths. Each must exit non-zero with a message that names the file, column,
row or field, print no traceback, and leave nothing that looks like a finished run."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from deepprl.cli import app
from deepprl.data.generic import load_log
from deepprl.data.interactions import Interactions
from deepprl.rundir import write_marker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MAPPING = """\
[columns]
user = "user"
item = "item"
timestamp = "ts"
reward = "rating"
user_features = ["age"]
context = ["device"]

[reward_scale]
min = 1
max = 5

[[objectives]]
name = "rel"
column = "rel"
normalise = "none"

[[objectives]]
name = "watch"
column = "watch"
normalise = "minmax"
"""
HEADER = "user,item,ts,rating,rel,watch,age,device"
FIFTH = "u2,i4,170,2,0.75,50,41,ios"
ROWS = ["u1,i1,100,4,0.5,10,30,ios", "u1,i2,200,3,0.25,20,30,web",
        "u2,i1,150,5,1.0,30,41,ios", "u2,i3,160,1,0.0,40,41,web"]


def _row(**changes: str) -> str:
    """A fifth data row (row 5), with some fields replaced."""
    fields = dict(zip(HEADER.split(","), FIFTH.split(","), strict=True))
    fields.update(changes)
    return ",".join(fields[c] for c in HEADER.split(","))


# -- data files: (name, file name, text, words the message must hold) ------------------------

DATA_CASES = [
    ("missing-column", "log.csv", "user,item,ts,rating,watch,age,device\n"
     "u1,i1,100,4,10,30,ios\n", ["log.csv", "'rel'", "missing"]),
    ("misspelt-column", "log.csv", HEADER.replace(",rel,", ",rell,") + "\n" + ROWS[0] + "\n",
     ["log.csv", "'rel'", "did you mean 'rell'"]),
    ("header-only", "log.csv", HEADER + "\n", ["log.csv", "empty"]),
    ("text-objective", "log.csv", None, ["log.csv", "'rel'", "must be numeric"]),
    ("empty-objective-cell", "log.csv", None, ["log.csv", "'rel'", "row 5"]),
    ("nan-objective", "log.csv", None, ["log.csv", "'watch'", "non-finite", "row 5"]),
    ("inf-reward", "log.csv", None, ["log.csv", "'rating'", "non-finite", "row 5"]),
    ("objective-above-1", "log.csv", None, ["log.csv", "'rel'", "row 5", "[0, 1]"]),
    ("minmax-over-1e308", "log.csv", None, ["log.csv", "'watch'", "row 5", "beyond"]),
    ("reward-1e300", "log.csv", None, ["log.csv", "'rating'", "row 5", "beyond"]),
    ("reward-outside-scale", "log.csv", None, ["log.csv", "'rating'", "row 5",
                                               "[reward_scale] min = 1, max = 5"]),
    ("timestamp-1e300", "log.csv", None, ["log.csv", "'ts'", "row 5", "years 1-9999"]),
    ("timestamp-minus-1e300", "log.csv", None, ["log.csv", "'ts'", "row 5", "years 1-9999"]),
    ("timestamp-milliseconds", "log.csv", None, ["log.csv", "'ts'", "row 5", "milliseconds"]),
    ("bad-iso-datetime", "log.csv", None, ["log.csv", "'ts'", "row 3", "ISO-8601"]),
    ("boolean-timestamp", "log.csv", None, ["log.csv", "'ts'", "timestamp"]),
    ("duplicate-rows", "log.csv", None, ["log.csv", "rows 4 and 5", "keep-last"]),
    ("empty-user", "log.csv", None, ["log.csv", "'user'", "row 5"]),
    ("empty-item", "log.csv", None, ["log.csv", "'item'", "row 5"]),
    ("feature-1e308", "log.csv", None, ["log.csv", "'age'", "row"]),
    ("context-inf", "log.csv", None, ["log.csv", "'device'"]),
    ("xlsx-file", "log.xlsx", "not a spreadsheet", ["log.xlsx", "unsupported file type"]),
    ("ragged-csv", "log.csv", HEADER + "\nu1,i1\n\"unclosed,1,2\n", ["log.csv"]),
    ("binary-parquet", "log.parquet", "PAR1 this is not parquet", ["log.parquet",
                                                                  "cannot read"]),
]

_EDITS = {  # the fifth row of a log whose first four rows are ROWS
    "text-objective": _row(rel="high"),
    "empty-objective-cell": _row(rel=""),
    "nan-objective": _row(watch="NaN"),
    "inf-reward": _row(rating="inf"),
    "objective-above-1": _row(rel="1.5"),
    "minmax-over-1e308": _row(watch="1e308") + "\n" + _row(item="i5", watch="-1e308"),
    "reward-1e300": _row(rating="1e300"),
    "reward-outside-scale": _row(rating="50"),
    "timestamp-1e300": _row(ts="1e300"),
    "timestamp-minus-1e300": _row(ts="-1e300"),
    "timestamp-milliseconds": _row(ts="1700000000000"),
    "duplicate-rows": _row(item="i3", ts="160"),
    "empty-user": _row(user=""),
    "empty-item": _row(item=""),
    "feature-1e308": _row(user="u3", age="1e308"),
}


def _data_text(name: str, text: str | None) -> str:
    if text is not None:
        return text
    if name == "bad-iso-datetime":
        return HEADER + "\n" + "\n".join(r.replace(",100,", ",2024-01-01T10:00:00,", 1)
                                        .replace(",200,", ",2024-01-02T10:00:00,", 1)
                                        .replace(",150,", ",yesterday,", 1)
                                        .replace(",160,", ",2024-01-03T10:00:00,", 1)
                                        for r in ROWS) + "\n"
    if name == "boolean-timestamp":
        return HEADER + "\n" + "\n".join(r.replace(",100,", ",true,").replace(",200,", ",false,")
                                        .replace(",150,", ",true,").replace(",160,", ",false,")
                                        for r in ROWS) + "\n"
    if name == "context-inf":
        return (HEADER + "\n" + "\n".join(ROWS) + "\n").replace(",ios", ",1").replace(
            ",web", ",2") + _row(device="inf") + "\n"
    return HEADER + "\n" + "\n".join([*ROWS, _EDITS[name]]) + "\n"


# -- mapping files: (name, file name, text, words) ------------------------------------------

def _without(section: str) -> str:
    """MAPPING without one [section] (and its body up to the next section)."""
    out, skip = [], False
    for line in MAPPING.splitlines():
        if line.startswith("["):
            skip = line.strip() == section
        if not skip:
            out.append(line)
    return "\n".join(out) + "\n"


MAPPING_CASES = [
    ("toml-syntax", "m.toml", "[columns\nuser = 1\n", ["m.toml", "cannot parse mapping"]),
    ("json-syntax", "m.json", '{"columns": ', ["m.json", "cannot parse mapping"]),
    ("no-columns", "m.toml", _without("[columns]"), ["m.toml", "missing [columns] section"]),
    ("no-objectives", "m.toml", _without("[[objectives]]"), ["m.toml",
                                                             "missing [[objectives]] list"]),
    ("unknown-section", "m.toml", MAPPING + "[extra]\na = 1\n", ["m.toml", "'extra'",
                                                                 "[columns], [[objectives]]"]),
    ("unknown-column-key", "m.toml", MAPPING.replace("user = ", "usr = ", 1),
     ["m.toml", "columns.usr"]),
    ("user-not-a-string", "m.toml", MAPPING.replace('user = "user"', "user = 3"),
     ["m.toml", "columns.user"]),
    ("one-objective", "m.toml", MAPPING.split("[[objectives]]\nname = \"watch\"")[0],
     ["m.toml", "at least 2 objectives"]),
    ("duplicate-objective-name", "m.toml", MAPPING.replace('name = "watch"', 'name = "rel"'),
     ["m.toml", "'rel' is used twice"]),
    ("bad-normalise", "m.toml", MAPPING.replace('normalise = "minmax"', 'normalise = "log"'),
     ["m.toml", "objective 'watch'", "normalise must be one of"]),
    ("range-without-bounds", "m.toml", MAPPING.replace('normalise = "minmax"',
                                                       'normalise = "range"'),
     ["m.toml", "objective 'watch'", "min < max"]),
    ("range-over-1e308", "m.toml", MAPPING.replace(
        'normalise = "minmax"', 'normalise = "range"\nmin = -1e308\nmax = 1e308'),
     ["m.toml", "objective 'watch'", "min < max (both finite)"]),
    ("reward-scale-min-only", "m.toml", MAPPING.replace("max = 5\n", ""),
     ["m.toml", "reward_scale needs both min and max"]),
    ("reward-scale-reversed", "m.toml", MAPPING.replace("min = 1\nmax = 5", "min = 5\nmax = 1"),
     ["m.toml", "reward_scale", "min < max", "got min = 5.0, max = 1.0"]),
    ("reward-scale-unknown-key", "m.toml", MAPPING.replace("max = 5", "max = 5\nmid = 3"),
     ["m.toml", "[reward_scale] takes min and max only"]),
    ("column-named-twice", "m.toml", MAPPING.replace('reward = "rating"', 'reward = "rel"'),
     ["m.toml", "column 'rel' is named twice"]),
    ("categorical-not-a-feature", "m.toml",
     MAPPING.replace('context = ["device"]', 'context = ["device"]\ncategorical = ["segment"]'),
     ["m.toml", "columns.categorical", "'segment'"]),
    ("objective-without-column", "m.toml", MAPPING.replace('column = "rel"\n', ""),
     ["m.toml", "objectives[0] needs a 'column' string"]),
    ("objective-name-not-text", "m.toml", MAPPING.replace('name = "rel"', "name = 7"),
     ["m.toml", "objectives[0].name must be a string"]),
]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def refused(runner: CliRunner, args: list[str], words: list[str],
            out: Path | None = None) -> str:
    """Invoke the CLI; assert it refused with every word in its message and no traceback,
    and left no metrics.json. Returns the output, whitespace collapsed."""
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code not in (0, None), text
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output, text
    assert text.startswith("error:") or "\nerror:" in result.output, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    if out is not None:
        assert not (out / "metrics.json").exists()
    return text


@pytest.mark.parametrize(("name", "filename", "text", "words"), DATA_CASES,
                         ids=[c[0] for c in DATA_CASES])
def test_malformed_data_file(runner: CliRunner, tmp_path: Path, name: str, filename: str,
                             text: str | None, words: list[str]) -> None:
    data = tmp_path / filename
    data.write_text(_data_text(name, text), encoding="utf-8")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    out = tmp_path / "run"
    refused(runner, ["train", "--data", str(data), "--mapping", str(mapping), "--out",
                     str(out), "--quiet"], words, out)


@pytest.mark.parametrize(("name", "filename", "text", "words"), MAPPING_CASES,
                         ids=[c[0] for c in MAPPING_CASES])
def test_malformed_mapping_file(runner: CliRunner, tmp_path: Path, name: str, filename: str,
                                text: str, words: list[str]) -> None:
    data = tmp_path / "log.csv"
    data.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    mapping = tmp_path / filename
    mapping.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    refused(runner, ["train", "--data", str(data), "--mapping", str(mapping), "--out",
                     str(out), "--quiet"], words, out)


def test_mapping_path_with_markup_is_printed_literally(runner: CliRunner, tmp_path: Path
                                                       ) -> None:
    folder = tmp_path / "a[" / "x]b [bold]"  # the path holds "[/x]" and "[bold]"
    folder.mkdir(parents=True)
    data = folder / "log.csv"
    data.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    refused(runner, ["train", "--data", str(data), "--mapping", str(folder / "none.toml"),
                     "--out", str(tmp_path / "run")], [f"{folder}/none.toml",
                                                       "mapping file not found"])


# -- logs too small for the pipeline: refused before training, with the fix ---------------

def _short_log(tmp_path: Path, events_per_user: int, n_users: int = 12) -> Path:
    rng = np.random.default_rng(0)
    n = events_per_user * n_users
    frame = pl.DataFrame({
        "user": np.repeat([f"u{u}" for u in range(n_users)], events_per_user),
        "item": [f"i{i}" for i in np.concatenate(
            [rng.permutation(80)[:events_per_user] for _ in range(n_users)])],
        "ts": np.tile(np.arange(events_per_user) * 3600 + 1_700_000_000, n_users),
        "rating": rng.integers(1, 6, n), "rel": rng.random(n).round(3),
        "watch": rng.uniform(0, 100, n).round(1), "age": np.repeat(rng.integers(18, 70, n_users),
                                                                   events_per_user),
        "device": rng.choice(["ios", "web"], n)})
    path = tmp_path / "short.csv"
    frame.write_csv(path)
    (tmp_path / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    return path


PIPELINE_CASES = [
    ("test-period-too-short", 8, [], ["short.csv (12 users, 96 events)",
                                      "no test event has more than k=10", "lower k (e.g. --k"]),
    ("no-validation-for-static", 60, ["--model", "deepprl-static", "--set",
                                      "train.valid_fraction=0"],
     ["static-weight model", "train.valid_fraction > 0"]),
    ("validation-too-short", 60, ["--set", "train.validation=fraction", "--k", "6"],
     ["no validation event has more than k=6", "train.validation=test-window"]),
    ("policy-candidates-capped", 60, ["--set", "train.max_candidates=5"],
     ["train.max_candidates = 5 must exceed k = 10"]),
]


@pytest.mark.parametrize(("name", "events", "extra", "words"), PIPELINE_CASES,
                         ids=[c[0] for c in PIPELINE_CASES])
def test_pipeline_preconditions_fail_before_training(runner: CliRunner, tmp_path: Path,
                                                     name: str, events: int,
                                                     extra: list[str], words: list[str]) -> None:
    data = _short_log(tmp_path, events)
    out = tmp_path / "run"
    started = time.perf_counter()
    refused(runner, ["train", "--data", str(data), "--mapping", str(tmp_path / "mapping.toml"),
                     "--out", str(out), "--quiet", *extra], words, out)
    assert time.perf_counter() - started < 60  # refused up front, not after training
    log = (out / "train.log").read_text() if (out / "train.log").exists() else ""
    assert "stage 1" not in log


# -- CLI options ----------------------------------------------------------------------------

SIM = ["--dataset", "simulator", "--dataset-option", "n_users=5", "--dataset-option",
       "n_items=12", "--dataset-option", "events_per_user=12", "--quiet"]
OPTION_CASES = [
    ("eval-k-0", ["--set", "eval.k=0"], ["eval.k must be >= 1, got 0"]),
    ("history-length-0", ["--set", "model.history_length=0"],
     ["model.history_length must be >= 1, got 0"]),
    ("n-users-text", ["--dataset-option", "n_users=abc"], ["simulator.n_users must be int",
                                                           "'abc'"]),
    ("n-users-0", ["--dataset-option", "n_users=0"], ["simulator:", "at least 1 user"]),
    ("valid-fraction-too-big", ["--set", "train.valid_fraction=0.9"],
     ["train.valid_fraction must be in [0, 1 - train.test_fraction)"]),
    ("test-fraction-1.5", ["--set", "train.test_fraction=1.5"],
     ["train.test_fraction must be in (0, 1)"]),
    ("unknown-validation", ["--set", "train.validation=median"],
     ["train.validation must be one of", "'median'"]),
    ("unknown-algorithm", ["--set", "policy.algorithm=ppo"],
     ["policy.algorithm must be one of", "'ppo'"]),
    ("unknown-critic", ["--set", "policy.critic=double"], ["policy.critic must be one of"]),
    ("negative-lr", ["--set", "train.lr=-1"], ["train.lr must be a positive number"]),
    ("tau-0", ["--set", "policy.tau=0"], ["policy.tau must be in (0, 1]"]),
    ("fold-out-of-range", ["--set", "train.fold=7"], ["train.fold must be in"]),
    ("negative-seed", ["--seed", "-1"], ["seed must be an integer in [0, 2**32)"]),
    ("eval-k-text", ["--set", "eval.k=ten"], ["eval.k must be int", "'ten'"]),
    ("set-unknown-section", ["--set", "data.k=3"], ["--set needs SECTION.FIELD=VALUE"]),
    ("unknown-model", ["--model", "gpt"], ["unknown model 'gpt'"]),
    ("unknown-encoder", ["--set", "model.encoder=rnn"], ["unknown encoder 'rnn'"]),
]


@pytest.mark.parametrize(("name", "args", "words"), OPTION_CASES,
                         ids=[c[0] for c in OPTION_CASES])
def test_bad_cli_option(runner: CliRunner, tmp_path: Path, name: str, args: list[str],
                        words: list[str]) -> None:
    out = tmp_path / "run"
    refused(runner, ["train", *SIM, "--out", str(out), *args], words, out)


# -- run directories ------------------------------------------------------------------------

def test_out_is_an_existing_file(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run.txt"
    out.write_text("not a run", encoding="utf-8")
    refused(runner, ["train", *SIM, "--out", str(out)], [str(out), "existing file"])
    assert out.read_text(encoding="utf-8") == "not a run"


def test_out_under_a_file(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    out = tmp_path / "file" / "run"
    refused(runner, ["train", *SIM, "--out", str(out)], [str(out), "is a file"])


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc (Linux)")
def test_out_under_a_parent_that_refuses_directories(runner: CliRunner) -> None:
    out = Path("/proc/deepprl-battery/run")
    refused(runner, ["train", *SIM, "--out", str(out)], ["/proc", "run directory"])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root may write anywhere")
def test_out_under_a_read_only_parent(runner: CliRunner, tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        refused(runner, ["train", *SIM, "--out", str(parent / "run")], [str(parent),
                                                                         "not writable"])
    finally:
        parent.chmod(0o700)


RUN_CASES = [
    ("missing-with-markup", lambda d: d / "a[/x]b", ["a[/x]b", "no such run directory"]),
    ("a-file", lambda d: _file(d / "run.json"), ["run.json", "no such run directory"]),
    ("empty-directory", lambda d: _dir(d / "empty"), ["empty", "missing model.safetensors"]),
    ("config-not-json", lambda d: _fake_run(d, "{not json"), ["config.json",
                                                              "not valid JSON"]),
    ("config-unknown-key", lambda d: _fake_run(d, '{"nmae": "deepprl"}'),
     ["unknown key 'nmae'"]),
    ("never-completed", lambda d: _fake_run(d, "{}", sealed=False),
     ["incomplete run", "COMPLETE.json", "--resume"]),
]


def _file(path: Path) -> Path:
    path.write_text("{}", encoding="utf-8")
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _fake_run(root: Path, config: str, *, sealed: bool = True) -> Path:
    """A run directory with the right names and bad contents; `sealed`: with a completion
    marker over them, so that the checks past the marker's are reached."""
    run = _dir(root / "fake")
    for name in ("model.safetensors", "actor.safetensors", "schema.json"):
        (run / name).write_text("x", encoding="utf-8")
    (run / "config.json").write_text(config, encoding="utf-8")
    if sealed:
        write_marker(run, {})
    return run


@pytest.mark.parametrize(("name", "make", "words"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
@pytest.mark.parametrize("command", ["evaluate", "recommend"])
def test_bad_run_directory(runner: CliRunner, tmp_path: Path, name: str, make: object,
                           words: list[str], command: str) -> None:
    run = make(tmp_path)  # type: ignore[operator]
    extra = ["--json"] if command == "evaluate" else ["--user", "1"]
    refused(runner, [command, "--run", str(run), *extra], words)


def test_evaluate_refuses_an_unknown_reference(runner: CliRunner, tmp_path: Path) -> None:
    refused(runner, ["evaluate", "--run", str(tmp_path), "--weights", "best"],
            ["--weights must be one of learned, equal, static, popularity, oracle"])


# -- what works: the README example with the default protocol; a generated log -------------

def test_readme_example_trains_with_default_protocol(runner: CliRunner, tmp_path: Path
                                                     ) -> None:
    """Defaults everywhere except the lengths of training (k = 10, default validation):
    the example log once failed after training because no validation event had > k
    candidates. The full-default run is test_readme_example_with_all_defaults (slow)."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(EXAMPLES / "log.csv"), "--mapping",
                                 str(EXAMPLES / "mapping.toml"), "--out", str(out),
                                 "--epochs", "1", "--policy-steps", "20", "--set",
                                 "policy.static_trials=10", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["k"] == 10 and "static" in metrics
    assert "test window" in metrics["validation"]
    log = (out / "train.log").read_text()
    assert "preflight: validation: each user's window as long as their test window" in log
    text = " ".join(result.output.split())
    excluded = metrics["protocol"]["excluded_events_with_at_most_k_candidates"]
    assert f"excluded {excluded} of {metrics['protocol']['test_events']} test events" in text


@pytest.mark.slow
def test_readme_example_with_all_defaults(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(EXAMPLES / "log.csv"), "--mapping",
                                 str(EXAMPLES / "mapping.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    evaluated = runner.invoke(app, ["evaluate", "--run", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["weights"] == "learned"


def generated_log(path: Path, *, n_users: int = 1500, events: int = 100, n_items: int = 400,
                  seed: int = 0) -> Path:
    """A log shaped like a user's own: n_users x events, integer-coded and numeric user
    features, an item category, ISO-8601 timestamps, rating reward in [1, 5]."""
    rng = np.random.default_rng(seed)
    n = n_users * events
    user = np.repeat(np.arange(n_users), events)
    item = rng.integers(0, n_items, n)
    taste = rng.random(n_users)
    quality = rng.random(n_items)
    start = np.datetime64("2024-01-01T00:00:00")
    seconds = np.sort(rng.integers(0, 90 * 86400, (n_users, events)), axis=1).ravel()
    click = np.clip(quality[item] * taste[user] + rng.normal(0, 0.1, n), 0, 1)
    watch = rng.gamma(2.0, 60.0, n) * (1.2 - taste[user])
    pl.DataFrame({
        "user_id": [f"u{u}" for u in user], "item_id": [f"v{i}" for i in item],
        "ts": [str(start + np.timedelta64(int(s), "s")) for s in seconds],
        "click": click.round(4), "watch": watch.round(1),
        "rating": np.clip(np.round(1 + 4 * (0.6 * click + 0.4 * quality[item])), 1, 5),
        "age": rng.integers(16, 70, n_users)[user], "segment": rng.integers(0, 5, n_users)[user],
        "category": (item % 7), "device": rng.choice(["ios", "android", "web"], n),
    }).write_csv(path)
    return path


GENERATED_MAPPING = """\
[columns]
user = "user_id"
item = "item_id"
timestamp = "ts"
reward = "rating"
user_features = ["age", "segment"]
item_features = ["category"]
context = ["device"]
categorical = ["segment", "category"]

[reward_scale]
min = 1
max = 5

[[objectives]]
name = "click"
column = "click"

[[objectives]]
name = "watch"
column = "watch"
normalise = "minmax"
"""


@pytest.mark.slow
def test_generated_1500_user_log_trains_with_defaults(runner: CliRunner, tmp_path: Path
                                                      ) -> None:
    data = generated_log(tmp_path / "own.csv")
    (tmp_path / "own.toml").write_text(GENERATED_MAPPING, encoding="utf-8")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--mapping",
                                 str(tmp_path / "own.toml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"learned", "equal", "static", "popularity", "oracle"} <= set(metrics)
    assert "test window" in metrics["validation"]


# -- what the loader now understands, and how the protocol values a pair -------------------

def _load(tmp_path: Path, csv: str, mapping: str = MAPPING) -> Interactions:
    (tmp_path / "log.csv").write_text(csv, encoding="utf-8")
    (tmp_path / "m.toml").write_text(mapping, encoding="utf-8")
    return load_log(tmp_path / "log.csv", tmp_path / "m.toml")


def test_categorical_integer_codes_are_one_hot(tmp_path: Path) -> None:
    csv = HEADER + "\n" + "\n".join(ROWS) + "\n"
    plain = _load(tmp_path, csv)
    coded = _load(tmp_path, csv, MAPPING.replace('context = ["device"]', 'context = ["device"]'
                                                 '\ncategorical = ["age"]'))
    assert plain.user_feature_names == ("age",)
    assert coded.user_feature_names == ("age=30", "age=41")
    assert coded.user_features[1:].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_iso_8601_timestamps_are_parsed_as_utc(tmp_path: Path) -> None:
    stamps = ["2024-01-01T10:00:00Z", "2024-01-01T13:30:00+02:00", "2024-01-02",
              "2024-01-03 00:00:00"]
    rows = [r.split(",") for r in ROWS]
    for row, stamp in zip(rows, stamps, strict=True):
        row[2] = stamp
    data = _load(tmp_path, HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    expected = [1704103200.0, 1704108600.0, 1704153600.0, 1704240000.0]  # 13:30+02 = 11:30Z
    assert data.time.tolist() == expected
    assert "hour_sin" in data.context_names


def test_constant_minmax_objective_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    rows = [",".join([*r.split(",")[:5], "7", *r.split(",")[6:]]) for r in ROWS]
    with caplog.at_level("WARNING", logger="deepprl.data"):
        data = _load(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    assert "column 'watch' (objective 'watch') is constant (7)" in caplog.text
    assert data.objectives[:, 1].tolist() == [0.5] * 4


def test_a_repeated_pair_is_valued_at_its_latest_logged_event(tmp_path: Path) -> None:
    rows = ["u1,i1,100,4,0.1,10,30,ios", "u1,i2,200,3,0.2,20,30,ios",
            "u1,i1,300,2,0.9,30,30,ios", "u2,i1,150,5,0.4,40,41,web"]
    data = _load(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    first = 0  # u1's event at t=100 asks about i1, logged again (rel 0.9) at t=300
    objectives, reward = data.candidate_values(
        np.array([first]), np.array([[data.item_index("i1")]]))
    assert objectives[0, 0, 0] == np.float32(0.9)
    assert reward[0, 0] == np.float32((2 - 1) / 4)


def test_unknown_user_is_named_with_the_logs_file(runner: CliRunner, tmp_path: Path) -> None:
    data = _load(tmp_path, HEADER + "\n" + "\n".join(ROWS) + "\n")
    with pytest.raises(ValueError, match=r"unknown user id 'nobody': not in the training log "
                                         r"\(log\.csv\)"):
        data.user_index("nobody")


def test_auto_validation_keeps_the_fraction_where_it_works_and_widens_it_where_not() -> None:
    from deepprl.data.simulator import SimulatorConfig, load_simulator
    from deepprl.data.splits import choose_split, temporal_holdout

    sim = load_simulator(SimulatorConfig(n_users=20, n_items=30, events_per_user=20))
    split, why = choose_split(sim, valid_fraction=0.1, validation="auto", k=10)
    fraction = temporal_holdout(sim, valid_fraction=0.1)
    assert (split.valid == fraction.valid).all() and "train.valid_fraction = 0.1" in why

    logged = dataclasses_replace_valuer(sim)  # the same events, ground truth from the log only
    split, why = choose_split(logged, valid_fraction=0.1, validation="auto", k=3)
    # 2 validation events per user under the fraction: 2 candidates <= k, none rankable
    assert "test window" in why and "would leave 0 validation events" in why
    assert split.valid.sum() == split.test.sum() == 20 * 4  # 4 test, 4 validation per user
    assert (split.test == fraction.test).all() and split.train.sum() == 20 * 12
    assert not (split.valid & split.test).any() and not (split.valid & split.train).any()


def dataclasses_replace_valuer(data: Interactions) -> Interactions:
    return dataclasses.replace(data, valuer=None)


# -- evaluate --weights: every reference the run holds -------------------------------------

TINY = ["--dataset", "simulator", "--dataset-option", "n_users=20", "--dataset-option",
        "n_items=25", "--dataset-option", "events_per_user=20", "--epochs", "1",
        "--policy-steps", "20", "--k", "5", "--set", "policy.static_trials=5", "--quiet"]


@pytest.fixture(scope="module")
def tiny_runs(runner: CliRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("battery-runs")
    runs = {}
    for model in ("deepprl", "deepprl-static"):
        runs[model] = root / model
        result = runner.invoke(app, ["train", *TINY, "--model", model, "--out",
                                     str(runs[model])])
        assert result.exit_code == 0, result.output
    return runs


@pytest.mark.parametrize("weights", ["learned", "equal", "static", "popularity", "oracle"])
def test_evaluate_offers_every_reference(runner: CliRunner, tiny_runs: dict[str, Path],
                                         weights: str) -> None:
    run = tiny_runs["deepprl"]
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--weights", weights, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    saved = json.loads((run / "metrics.json").read_text())[weights]
    assert out["weights"] == weights and out["k"] == 5
    assert out["reward"] == pytest.approx(saved["reward"], rel=1e-5)


def test_static_weight_model_says_static(runner: CliRunner, tiny_runs: dict[str, Path]) -> None:
    run = tiny_runs["deepprl-static"]
    own = json.loads(runner.invoke(app, ["evaluate", "--run", str(run), "--json"]).stdout)
    static = json.loads(runner.invoke(app, ["evaluate", "--run", str(run), "--weights",
                                            "static", "--json"]).stdout)
    assert own["weights"] == "static" == static["weights"]
    assert own["reward"] == static["reward"]
    assert own["reward"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["learned"]["reward"], rel=1e-5)
