"""Malformed logs and mappings: each raises the specific error and names file, column, row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from deepprl.data.generic import load_log, read_table
from deepprl.data.interactions import UnknownIdError
from deepprl.data.schema import DataError, Mapping, ObjectiveSpec, mapping_from_dict, read_mapping

GOOD_TOML = """\
[columns]
user = "user"
item = "item"
timestamp = "ts"
reward = "rating"

[[objectives]]
name = "rel"
column = "rel"
normalise = "none"

[[objectives]]
name = "watch"
column = "watch"
normalise = "minmax"
"""

GOOD_CSV = """\
user,item,ts,rating,rel,watch
u1,i1,100,4,0.5,10
u1,i2,200,3,0.25,20
u2,i1,150,5,1.0,30
u2,i3,160,1,0.0,40
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_with(tmp_path: Path, rows: list[str], header: str = "user,item,ts,rating,rel,watch"
             ) -> Path:
    return write(tmp_path, "log.csv", "\n".join([header, *rows]) + "\n")


@pytest.fixture
def mapping_path(tmp_path: Path) -> Path:
    return write(tmp_path, "mapping.toml", GOOD_TOML)


def raw_mapping(**columns: object) -> dict[str, object]:
    cols: dict[str, object] = {"user": "user", "item": "item", "timestamp": "ts",
                               "reward": "rating"}
    cols.update(columns)
    return {
        "columns": cols,
        "objectives": [{"name": "rel", "column": "rel"},
                       {"name": "watch", "column": "watch", "normalise": "minmax"}],
    }


def esc(value: object) -> str:
    return re.escape(str(value))


# -- sanity: the fixtures themselves are valid ---------------------------------------------

def test_good_fixture_loads(tmp_path: Path, mapping_path: Path) -> None:
    data = load_log(write(tmp_path, "log.csv", GOOD_CSV), mapping_path)
    assert data.n_events == 4
    assert data.n_users == 2
    assert data.n_items == 3


# -- columns and dtypes --------------------------------------------------------------------

def test_missing_column_names_file_and_column(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5"], header="user,item,ts,rating,rel")
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'watch' \(objective 'watch'\) "
                                        r"is missing") as info:
        load_log(data, mapping_path)
    assert "did you mean" not in str(info.value)


def test_misspelt_column_suggests_near_match(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10"], header="user,item,ts,rating,rel,wacth")
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'watch' .*did you mean 'wacth'\?"):
        load_log(data, mapping_path)


def test_string_objective_column_is_rejected(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,high,20"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'rel' \(objective 'rel'\) "
                                        r"must be numeric, found String"):
        load_log(data, mapping_path)


def test_string_reward_column_is_rejected(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,four,0.5,10"])
    with pytest.raises(DataError, match=r"column 'rating' \(reward\) must be numeric"):
        load_log(data, mapping_path)


def test_string_timestamp_column_is_rejected(tmp_path: Path, mapping_path: Path) -> None:
    """Text is read as ISO-8601; text that is not is refused at its row."""
    data = csv_with(tmp_path, ["u1,i1,yesterday,4,0.5,10", "u1,i2,today,3,0.25,20"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'ts' \(timestamp\) has "
                                        r"'yesterday' at row 1: not an ISO-8601 datetime"):
        load_log(data, mapping_path)


def test_boolean_objective_is_not_numeric(tmp_path: Path, mapping_path: Path) -> None:
    frame = pl.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "ts": [1, 2],
                          "rating": [1.0, 2.0], "rel": [True, False], "watch": [1.0, 2.0]})
    path = tmp_path / "log.parquet"
    frame.write_parquet(path)
    with pytest.raises(DataError, match=r"column 'rel' \(objective 'rel'\) must be numeric, "
                                        r"found Boolean"):
        load_log(path, mapping_path)


# -- values ----------------------------------------------------------------------------------

def test_nan_objective_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,20",
                               "u2,i1,300,3,0.5,NaN"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'watch' \(objective 'watch'\) "
                                        r"has a non-finite value \(nan\) at row 3$"):
        load_log(data, mapping_path)


def test_empty_objective_cell_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,,20"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'rel' \(objective 'rel'\) is "
                                        r"empty at row 2$"):
        load_log(data, mapping_path)


def test_inf_reward_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,inf,0.5,10", "u1,i2,200,3.5,0.5,20"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'rating' \(reward\) has a "
                                        r"non-finite value \(inf\) at row 1$"):
        load_log(data, mapping_path)


def test_null_user_id_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,20",
                               ",i3,300,3,0.5,20", "u2,i3,300,3,0.5,20"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'user' \(user\) is empty at "
                                        r"row 3$"):
        load_log(data, mapping_path)


def test_null_item_id_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,,100,4,0.5,10"])
    with pytest.raises(DataError, match=r"column 'item' \(item\) is empty at row 1$"):
        load_log(data, mapping_path)


def test_null_timestamp_names_row(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,,3,0.5,20"])
    with pytest.raises(DataError, match=r"column 'ts' \(timestamp\) is empty at row 2$"):
        load_log(data, mapping_path)


def test_objective_outside_unit_interval_with_none(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,20",
                               "u2,i1,150,5,1.5,30", "u2,i3,160,1,-0.2,40"])
    # u1's rows are fine; u2 @ 150 (file row 3) is the first offender in (user, time) order.
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'rel' \(objective 'rel'\) has "
                                        r"value 1\.5 at row 3: objectives must lie in \[0, 1\]"):
        load_log(data, mapping_path)


def test_row_number_is_the_file_row_not_the_sorted_row(tmp_path: Path, mapping_path: Path
                                                       ) -> None:
    # Events get sorted by (user, time); the error must still point at the file's row 4.
    data = csv_with(tmp_path, ["u2,i1,500,4,0.5,10", "u2,i2,600,3,0.5,20",
                               "u2,i3,700,5,0.5,30", "u1,i3,160,1,7,40"])
    with pytest.raises(DataError, match=r"column 'rel' .* value 7\.0 at row 4:"):
        load_log(data, mapping_path)


def test_value_outside_declared_range(tmp_path: Path) -> None:
    mapping = write(tmp_path, "m.toml", GOOD_TOML.replace(
        'normalise = "minmax"', 'normalise = "range"\nmin = 0\nmax = 60'))
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,75",
                               "u2,i1,150,5,0.5,30"])
    with pytest.raises(DataError, match=rf"{esc(data)}: column 'watch' \(objective 'watch'\) "
                                        r"has value 75\.0 at row 2: outside its range "
                                        r"\[0\.0, 60\.0\]"):
        load_log(data, mapping)


def test_header_only_file_is_empty(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, [])
    with pytest.raises(DataError, match=rf"{esc(data)}: the log is empty \(no data rows\)"):
        load_log(data, mapping_path)


def test_duplicate_rows_name_both_rows(tmp_path: Path, mapping_path: Path) -> None:
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,20",
                               "u2,i1,150,5,0.5,30", "u1,i2,200,1,0.25,40"])
    with pytest.raises(DataError, match=rf"{esc(data)}: rows 2 and 4 repeat the same \(user, "
                                        r"item, timestamp\) = \('u1', 'i2', 200\).*"
                                        r"keep-last"):
        load_log(data, mapping_path)


def test_duplicates_keep_last_keeps_the_last_row(tmp_path: Path) -> None:
    mapping = write(tmp_path, "m.toml", GOOD_TOML.replace(
        'reward = "rating"', 'reward = "rating"\nduplicates = "keep-last"'))
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i2,200,3,0.5,20",
                               "u2,i1,150,5,0.5,30", "u1,i2,200,1,0.25,40"])
    log = load_log(data, mapping)
    assert log.n_events == 3
    u1 = log.user_index("u1")
    i2 = log.item_index("i2")
    hit = np.flatnonzero((log.user == u1) & (log.item == i2))
    assert hit.size == 1
    assert log.reward[hit[0]] == pytest.approx(1.0)  # rating of the last row (row 4)
    assert log.objectives[hit[0], 0] == pytest.approx(0.25)
    # minmax over the kept rows: watch in {10, 30, 40}: the kept 40 maps to 1
    assert log.objectives[hit[0], 1] == pytest.approx(1.0)


def test_duplicate_without_timestamp_is_not_a_duplicate(tmp_path: Path) -> None:
    # Without a clock, row order is the time: the same (user, item) twice is two events.
    mapping = write(tmp_path, "m.toml", GOOD_TOML.replace('timestamp = "ts"\n', ""))
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10", "u1,i1,100,4,0.5,10"])
    assert load_log(data, mapping).n_events == 2


def test_non_finite_numeric_feature_names_row(tmp_path: Path) -> None:
    mapping = write(tmp_path, "m.toml", GOOD_TOML.replace(
        'reward = "rating"', 'reward = "rating"\ncontext = ["temp"]'))
    data = csv_with(tmp_path, ["u1,i1,100,4,0.5,10,1.0", "u1,i2,200,3,0.5,20,inf"],
                    header="user,item,ts,rating,rel,watch,temp")
    with pytest.raises(DataError, match=r"column 'temp' \(feature\) has a missing or "
                                        r"non-finite value at row 2"):
        load_log(data, mapping)


# -- mapping ---------------------------------------------------------------------------------

def test_fewer_than_two_objectives(tmp_path: Path) -> None:
    text = GOOD_TOML.split("[[objectives]]\nname = \"watch\"")[0]
    path = write(tmp_path, "one.toml", text)
    with pytest.raises(DataError, match=rf"{esc(path)}: a log needs at least 2 objectives, the "
                                        r"mapping names 1"):
        read_mapping(path)


def test_zero_objectives_in_dataclass() -> None:
    with pytest.raises(DataError, match="at least 2 objectives, the mapping names 0"):
        Mapping(user="u", item="i", objectives=())


def test_column_named_twice(tmp_path: Path) -> None:
    raw = raw_mapping(user="rel")
    with pytest.raises(DataError, match=r"cfg\.json: column 'rel' is named twice \(as user and "
                                        r"as objective 'rel'\)"):
        mapping_from_dict(raw, source="cfg.json")


def test_feature_column_also_an_objective(tmp_path: Path) -> None:
    raw = raw_mapping(context=["watch"])
    with pytest.raises(DataError, match=r"column 'watch' is named twice \(as objective 'watch' "
                                        r"and as context\)"):
        mapping_from_dict(raw)


def test_two_objectives_with_the_same_name(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('name = "watch"', 'name = "rel"'))
    with pytest.raises(DataError, match=rf"{esc(path)}: objective name 'rel' is used twice"):
        read_mapping(path)


def test_unknown_column_key(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('item = "item"',
                                                       'item = "item"\nitems = "x"'))
    with pytest.raises(DataError, match=rf"{esc(path)}: unknown key columns\.items; expected "):
        read_mapping(path)


def test_unknown_objective_key(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('normalise = "none"',
                                                       'normalize = "none"'))
    with pytest.raises(DataError, match=rf"{esc(path)}: unknown key objectives\[0\]\.normalize"):
        read_mapping(path)


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML + "\n[rewards]\nmin = 1\n")
    with pytest.raises(DataError, match=rf"{esc(path)}: unknown section 'rewards'"):
        read_mapping(path)


def test_unknown_normaliser(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('"minmax"', '"zscore"'))
    with pytest.raises(DataError, match=r"objective 'watch': normalise must be one of .*"
                                        r"got 'zscore'"):
        read_mapping(path)


def test_range_without_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('"minmax"', '"range"\nmin = 3'))
    with pytest.raises(DataError, match=r"objective 'watch': normalise = 'range' needs min < max"):
        read_mapping(path)


def test_unknown_duplicates_policy(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace(
        'reward = "rating"', 'reward = "rating"\nduplicates = "keep-first"'))
    with pytest.raises(DataError, match=r"duplicates must be one of .*got 'keep-first'"):
        read_mapping(path)


def test_non_numeric_range_bound(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace(
        '"minmax"', '"range"\nmin = 0\nmax = "sixty"'))
    with pytest.raises(DataError, match=rf"{esc(path)}: objectives\[1\]\.max must be a number, "
                                        r"got 'sixty'"):
        read_mapping(path)


def test_missing_user_column_in_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML.replace('user = "user"\n', ""))
    with pytest.raises(DataError, match=rf"{esc(path)}: columns\.user must name a column"):
        read_mapping(path)


def test_features_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"columns\.user_features must be a list of column names"):
        mapping_from_dict(raw_mapping(user_features="age"))


def test_reward_scale_with_only_min(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML + "\n[reward_scale]\nmin = 1\n")
    with pytest.raises(DataError, match=rf"{esc(path)}: reward_scale needs both min and max"):
        read_mapping(path)


def test_reward_scale_with_min_above_max(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", GOOD_TOML + "\n[reward_scale]\nmin = 5\nmax = 1\n")
    with pytest.raises(DataError, match=r"reward_scale needs both min and max, with min < max"):
        read_mapping(path)


def test_unparseable_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", "[columns\nuser = 'u'\n")
    with pytest.raises(DataError, match=rf"{esc(path)}: cannot parse mapping"):
        read_mapping(path)


def test_unparseable_json(tmp_path: Path) -> None:
    path = write(tmp_path, "m.json", '{"columns": {"user": "u",}')
    with pytest.raises(DataError, match=rf"{esc(path)}: cannot parse mapping"):
        read_mapping(path)


def test_json_mapping_must_be_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "m.json", json.dumps(["user", "item"]))
    with pytest.raises(DataError, match=rf"{esc(path)}: the mapping must be a table/object"):
        read_mapping(path)


def test_mapping_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(DataError, match=rf"{esc(path)}: mapping file not found"):
        read_mapping(path)


def test_mapping_not_found_via_load_log(tmp_path: Path) -> None:
    data = write(tmp_path, "log.csv", GOOD_CSV)
    with pytest.raises(DataError, match="mapping file not found"):
        load_log(data, tmp_path / "missing.toml")


def test_data_file_not_found(tmp_path: Path, mapping_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=rf"{esc(path)}: data file not found"):
        load_log(path, mapping_path)


def test_unsupported_extension(tmp_path: Path, mapping_path: Path) -> None:
    path = write(tmp_path, "log.xlsx", GOOD_CSV)
    with pytest.raises(DataError, match=rf"{esc(path)}: unsupported file type '\.xlsx'"):
        load_log(path, mapping_path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path, "log.parquet", "this is not parquet")
    with pytest.raises(DataError, match=rf"{esc(path)}: cannot read the file"):
        read_table(path)


def test_ragged_csv(tmp_path: Path, mapping_path: Path) -> None:
    path = write(tmp_path, "log.csv", GOOD_CSV + "u3,i1,170,2,0.5,10,extra,fields\n")
    with pytest.raises(DataError, match=rf"{esc(path)}: cannot read the file"):
        load_log(path, mapping_path)


def test_zero_byte_csv(tmp_path: Path, mapping_path: Path) -> None:
    path = write(tmp_path, "log.csv", "")
    with pytest.raises(DataError, match=rf"{esc(path)}: cannot read the file"):
        load_log(path, mapping_path)


def test_data_errors_are_value_errors() -> None:
    assert issubclass(DataError, ValueError)
    assert issubclass(UnknownIdError, ValueError)


# -- ids at inference ------------------------------------------------------------------------

def test_unknown_user_and_item_ids(tmp_path: Path, mapping_path: Path) -> None:
    data = load_log(write(tmp_path, "shop.csv", GOOD_CSV), mapping_path)
    assert data.user_index("u2") == 2
    with pytest.raises(UnknownIdError, match=r"unknown user id 'u9': not in the training log "
                                             r"\(shop\.csv\)"):
        data.user_index("u9")
    assert data.item_indices(["i3", "i1"]).tolist() == [3, 1]
    with pytest.raises(UnknownIdError, match=r"unknown item id 'i7'"):
        data.item_indices(["i1", "i7"])
    with pytest.raises(UnknownIdError, match=r"unknown item id 'zz'"):
        data.item_index("zz")


def test_mapping_dataclass_rejects_bad_objective_spec() -> None:
    objs = (ObjectiveSpec("a", "a", "range", min=1.0, max=1.0), ObjectiveSpec("b", "b"))
    with pytest.raises(DataError, match=r"<mapping>: objective 'a': normalise = 'range' needs"):
        Mapping(user="u", item="i", objectives=objs)
