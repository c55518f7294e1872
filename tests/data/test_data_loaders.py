"""Loaders on small files written to tmp_path, including every error case."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from robustrec.data import (
    FORMATS, LOG_FORMATS, DataError, Interactions, Split, deca_noise_mask, detect_format, load, load_split,
)


# ---------------------------------------------------------------- writers, one per format
def write_csv(tmp_path, text="user_id,item_id,rating,timestamp\nu1,a,5,10\nu2,b,3,11\nu1,b,4,12\n", name="log.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def write_parquet(tmp_path, df=None):
    p = tmp_path / "log.parquet"
    (df if df is not None else pd.DataFrame({"user": [1, 2, 1], "item": [5, 5, 6], "rating": [1.0, 2.0, 3.0]})).to_parquet(p)
    return p


def write_lightgcn(tmp_path, train="0 0 1 2\n1 1 2\n2\n3 0 3\n", test="0 3\n1 0 4\n3 1\n"):
    d = tmp_path / "lgcn"
    d.mkdir()
    (d / "train.txt").write_text(train)
    (d / "test.txt").write_text(test)
    return d


def write_nbpo(tmp_path, train="[[0, 1], [2], [1, 3]]", validation="[[2], [0], []]", test="[[3], [1], [0]]"):
    d = tmp_path / "nbpo"
    d.mkdir()
    for name, text in (("train", train), ("validation", validation), ("test", test)):
        (d / f"{name}_data.json").write_text(text)
    return d


DECA_TRAIN = "1\t10\t5\r\n1\t11\t2\r\n2\t10\t3\r\n2\t12\t4\r\n3\t11\t1\r\n"


def write_deca(tmp_path, train=DECA_TRAIN, valid="1\t12\t5\r\n", test="2\t11\t5\r\n3\t10\t5\r\n3\t99\t5\r\n"):
    d = tmp_path / "deca"
    d.mkdir()
    (d / "toy.train.rating").write_text(train, newline="")
    if valid is not None:
        (d / "toy.valid.rating").write_text(valid, newline="")
    (d / "toy.test.negative").write_text(test, newline="")
    return d


INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n")


def write_inter(tmp_path, text=INTER):
    d = tmp_path / "ml-toy"  # a RecBole dataset directory
    d.mkdir()
    (d / "ml-toy.inter").write_text(text)
    return d


WRITERS = {"csv": write_csv, "parquet": write_parquet, "inter": write_inter, "lightgcn": write_lightgcn,
           "nbpo-json": write_nbpo, "deca": write_deca}


def test_every_format_has_a_writer():
    assert set(WRITERS) == set(FORMATS) - {"auto"}


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "auto"])
def test_auto_detects_each_format_and_matches_explicit(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path)
    assert detect_format(path) == fmt
    auto, explicit = load(path), load(path, format=fmt)
    assert type(auto) is type(explicit)
    assert auto == explicit
    assert isinstance(auto, Interactions if fmt in LOG_FORMATS else Split)
    assert isinstance(load_split(path, seed=0), Split)


def test_unknown_format_and_undetectable_path(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'json'.*'nbpo-json'"):
        load(tmp_path, format="json")
    (tmp_path / "x.bin").write_text("1 2")
    with pytest.raises(DataError, match=r"x\.bin: cannot detect.*" + re.escape(str(list(FORMATS)))):
        load(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="apply to the log formats"):
        load(write_lightgcn(tmp_path), user_col="u")


# ---------------------------------------------------------------- csv / parquet
def test_csv_aliases_and_values(tmp_path):
    inter = load(write_csv(tmp_path))
    assert list(inter.user_ids) == ["u1", "u2"] and list(inter.item_ids) == ["a", "b"]
    np.testing.assert_array_equal(inter.ratings.data, [5, 4, 3])
    np.testing.assert_array_equal(inter.timestamps.data, [10, 12, 11])
    assert inter.report.format == "csv" and inter.report.rows_read == {"all": 3}


def test_tsv_without_header_blank_lines_and_duplicates(tmp_path, caplog):
    p = write_csv(tmp_path, "1\t7\t4\n\n2\t7\t5\n1\t7\t2\n", name="log.tsv")
    with caplog.at_level(logging.WARNING, logger="robustrec.data"):
        inter = load(p, has_header=False)
    assert inter.n_interactions == 2
    np.testing.assert_array_equal(inter.ratings.data, [4, 5])
    assert inter.report.blank_lines == {"all": 1} and inter.report.duplicates_merged == {"all": 1}
    assert "duplicates merged all 1" in caplog.text


def test_csv_explicit_columns(tmp_path):
    p = write_csv(tmp_path, "who,what,stars\n1,2,3\n")
    inter = load(p, user_col="who", item_col="what", rating_col="stars")
    assert inter.ratings.data.tolist() == [3.0]
    with pytest.raises(DataError, match=r"log\.csv, column 'when': missing timestamp column"):
        load(p, user_col="who", item_col="what", timestamp_col="when")


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("person,thing\n1,2\n", r"log\.csv, column 'user': no user column found.*available columns: \['person', 'thing'\]"),
        ("user,item,rating\n1,2,5\n3,4,high\n", r"log\.csv, line 3, column 'rating': rating must be a finite number \(got 'high'\)"),
        ("user,item\n1,2\n,4\n", r"log\.csv, line 3, column 'user': missing user id"),
        ("user,item\n1,2\n\n3,\n", r"log\.csv, line 4, column 'item': missing item id"),
        ("", r"log\.csv: empty file"),
        ("user,item\n", r"log\.csv: no interactions"),
        ("user,item\n1,2\n3,4,5,6\n", r"log\.csv, line 3: cannot parse csv"),
    ],
)
def test_csv_errors_name_file_line_and_value(tmp_path, text, pattern):
    with pytest.raises(DataError, match=pattern):
        load(write_csv(tmp_path, text))


def test_parquet_values_and_errors(tmp_path):
    inter = load(write_parquet(tmp_path))
    assert inter.n_interactions == 3 and list(inter.user_ids) == [1, 2]
    bad = pd.DataFrame({"user": [1, 2], "item": [5, 6], "rating": [1.0, np.nan]})
    with pytest.raises(DataError, match=r"log\.parquet, row 2, column 'rating'.*finite number"):
        load(write_parquet(tmp_path, bad))
    with pytest.raises(DataError, match=r"log\.parquet, column 'item': no item column"):
        load(write_parquet(tmp_path, pd.DataFrame({"user": [1]})))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.parquet: empty file"):
        load(tmp_path / "empty.parquet")


# ---------------------------------------------------------------- lightgcn
def test_lightgcn_split_drops_unseen_and_counts(tmp_path):
    split = load(write_lightgcn(tmp_path))
    assert (split.n_users, split.n_items) == (4, 4)  # max train user 3, max train item 3
    assert split.validation is None
    assert _pairs(split.train) == {(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (3, 0), (3, 3)}
    assert _pairs(split.test) == {(0, 3), (1, 0), (3, 1)}  # item 4 never in train: dropped
    r = split.report
    assert r.empty_users == {"train": 1, "test": 0}
    assert r.dropped_unseen == {"test": 1} and r.dropped_in_train == {"test": 0}
    assert r.rows_read == {"train": 7, "test": 4}


def test_lightgcn_drops_test_pairs_already_in_train(tmp_path):
    split = load(write_lightgcn(tmp_path, test="0 0 3\n"))
    assert _pairs(split.test) == {(0, 3)}
    assert split.report.dropped_in_train == {"test": 1}


@pytest.mark.parametrize(
    "train, test, pattern",
    [
        ("0 1 2\n1 2 x3\n", "0 1\n", r"train\.txt, line 2, column 3: item id must be a non-negative integer \(got 'x3'\)"),
        ("0 1 2\n1 2\n", "0 1\n-1 2\n", r"test\.txt, line 2, column 1: user id must be a non-negative integer \(got '-1'\)"),
        ("0 1.5\n", "0 1\n", r"train\.txt, line 1, column 2: item id .*'1\.5'"),
        ("\n  \n", "0 1\n", r"train\.txt: empty file"),
        ("0\n1\n", "0 1\n", r"train\.txt: no interactions"),
    ],
)
def test_lightgcn_errors(tmp_path, train, test, pattern):
    with pytest.raises(DataError, match=pattern):
        load(write_lightgcn(tmp_path, train, test), format="lightgcn")


def test_lightgcn_missing_file(tmp_path):
    d = write_lightgcn(tmp_path)
    (d / "test.txt").unlink()
    with pytest.raises(DataError, match=r"lgcn: lightgcn directory lacks \['test\.txt'\]"):
        load(d)


# ---------------------------------------------------------------- nbpo-json
def test_nbpo_json_split(tmp_path):
    split = load(write_nbpo(tmp_path))
    assert (split.n_users, split.n_items) == (3, 4)
    assert _pairs(split.validation) == {(0, 2), (1, 0)}
    assert _pairs(split.test) == {(0, 3), (1, 1), (2, 0)}
    assert split.report.empty_users == {"train": 0, "validation": 1, "test": 0}


@pytest.mark.parametrize(
    "train, pattern",
    [
        ("[[0, 1],\n [2,, 3]]", r"train_data\.json, line 2, column \d+: malformed JSON"),
        ('[[0, 1], [2, "3"]]', r"train_data\.json, entry 1 \(user 1\), position 1: item id must be a non-negative integer \(got '3'\)"),
        ("[[0, 1], [2, -3]]", r"entry 1 \(user 1\), position 1: .*\(got -3\)"),
        ("[[0, 1], [2.5]]", r"entry 1 \(user 1\), position 0: .*\(got 2\.5\)"),
        ('{"0": [1]}', r"train_data\.json: expected a JSON list"),
        ("[[0], 3]", r"entry 1 \(user 1\): expected a list of item ids \(got 3\)"),
        ("", r"train_data\.json: empty file"),
    ],
)
def test_nbpo_json_errors(tmp_path, train, pattern):
    with pytest.raises(DataError, match=pattern):
        load(write_nbpo(tmp_path, train=train))


# ---------------------------------------------------------------- deca
def test_deca_split_ratings_and_noise_mask(tmp_path):
    split = load(write_deca(tmp_path))
    assert list(split.user_ids) == [1, 2, 3] and list(split.item_ids) == [10, 11, 12]
    assert split.train.n_interactions == 5
    np.testing.assert_array_equal(split.train.ratings.data, [5, 2, 3, 4, 1])
    np.testing.assert_array_equal(deca_noise_mask(split), [False, True, True, False, True])
    users, items = split.train.coo()
    raw = list(zip(split.user_ids[users], split.item_ids[items], deca_noise_mask(split)))
    assert (1, 11, True) in raw and (2, 12, False) in raw  # mask aligned with coo order
    assert _pairs(split.validation) == {(0, 2)}
    assert _pairs(split.test) == {(1, 1), (2, 0)}
    assert split.report.dropped_unseen == {"validation": 0, "test": 1}  # item 99


def test_deca_without_validation_and_noise_mask_needs_ratings(tmp_path):
    split = load(write_deca(tmp_path, valid=None))
    assert split.validation is None
    with pytest.raises(DataError, match="needs ratings"):
        deca_noise_mask(load(write_nbpo(tmp_path)))


@pytest.mark.parametrize(
    "train, pattern",
    [
        ("1\t10\t5\n1\t11\n", r"toy\.train\.rating, line 2: expected at least 3 tab-separated fields"),
        ("1\t10\t5\nu2\t11\t3\n", r"toy\.train\.rating, line 2, column 1: user id must be a non-negative integer \(got 'u2'\)"),
        ("1\t10\t5\n\n2\t-11\t3\n", r"line 3, column 2: item id .*\(got '-11'\)"),
        ("1\t10\tfive\n", r"line 1, column 3: rating must be a number \(got 'five'\)"),
        ("", r"toy\.train\.rating: empty file"),
    ],
)
def test_deca_errors(tmp_path, train, pattern):
    with pytest.raises(DataError, match=pattern):
        load(write_deca(tmp_path, train=train))


def _pairs(inter):
    return set(zip(*inter.coo()))


def test_load_split_of_a_log_keeps_report_and_csv_only_options(tmp_path):
    split = load_split(write_csv(tmp_path), test_fraction=0.5, seed=0)
    assert split.report.format == "csv" and split.test.n_interactions == 1
    with pytest.raises(ValueError, match="sep applies to csv and inter only, not 'parquet'"):
        load(write_parquet(tmp_path), sep=";")
    with pytest.raises(ValueError, match="has_header=False applies to csv only"):
        load(write_parquet(tmp_path), has_header=False)


# ---------------------------------------------------------------- RecBole atomic files
def test_inter_files_keep_token_ids_as_strings(tmp_path):
    log = load(write_inter(tmp_path) / "ml-toy.inter")
    assert detect_format(tmp_path / "ml-toy" / "ml-toy.inter") == "inter"
    assert list(log.user_ids) == ["186", "196"] and list(log.item_ids) == ["242", "302", "377"]
    frame = log.to_frame()
    assert frame.loc[(frame.user == "196") & (frame.item == "377"), "timestamp"].item() == 878887116
    assert frame["rating"].tolist() == [3.0, 3.0, 1.0]


@pytest.mark.parametrize("text, match", [
    ("user_id\titem_id:token\n1\t2\n", r"ml-toy.inter, line 1, column 1: an atomic-file header .*'user_id'"),
    ("user_id:token\titem_id:id\n1\t2\n", r"line 1, column 2: .*'item_id:id'"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\t5\n3\t4\tbad\n",
     r"line 3, column 'rating': rating must be a finite number \(got 'bad'\)"),
    ("uid:token\tobj:token\n1\t2\n", r"no item column found"),
    ("\n", r"empty file"),
])
def test_inter_errors_name_the_line_and_column(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load(write_inter(tmp_path, text))


def test_inter_column_names_and_separator(tmp_path):
    text = "uid:token,obj:token,when:float\na,x,3\nb,y,1\na,y,2\n"
    (tmp_path / "log.inter").write_text(text)
    log = load(tmp_path / "log.inter", user_col="uid", item_col="obj", timestamp_col="when", sep=",")
    assert log.n_interactions == 3 and list(log.user_ids) == ["a", "b"] and log.timestamps is not None
