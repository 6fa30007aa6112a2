"""init(config=...) becomes run attributes under config/..., with clear errors."""

from __future__ import annotations

import datetime
import enum
import math
import pathlib
from typing import Any

import numpy as np
import pytest

import metrana
from metrana._flatten import flatten_config


def by_path(config: Any) -> dict[str, dict[str, Any]]:
    return {a["path"]: {k: v for k, v in a.items() if k != "path"} for a in flatten_config(config)}


def test_types_map_to_attribute_kinds() -> None:
    """bool before int, ints as strings, floats, strings, dates as str, numpy via item()."""
    got = by_path({"flag": True, "n": 3, "lr": 0.001, "name": "ppo", "none": None,
                   "when": datetime.date(2026, 11, 26), "np_int": np.int64(7),
                   "np_float": np.float32(0.5), "np_bool": np.bool_(False), "bad": math.nan})
    assert got == {
        "config/flag": {"boolValue": True}, "config/n": {"intValue": "3"},
        "config/lr": {"floatValue": 0.001}, "config/name": {"stringValue": "ppo"},
        "config/when": {"stringValue": "2026-11-26"}, "config/np_int": {"intValue": "7"},
        "config/np_float": {"floatValue": 0.5}, "config/np_bool": {"boolValue": False},
        "config/bad": {"floatValue": "NaN"},
    }


def test_nesting_recurses_dicts_by_key_and_lists_by_index() -> None:
    """{"optimizer": {"betas": [0.9, 0.99]}} → config/optimizer/betas/0 and /1."""
    assert by_path({"optimizer": {"name": "adam", "betas": [0.9, 0.99]}}) == {
        "config/optimizer/name": {"stringValue": "adam"},
        "config/optimizer/betas/0": {"floatValue": 0.9},
        "config/optimizer/betas/1": {"floatValue": 0.99},
    }


def test_colliding_paths_are_an_error() -> None:
    """"a/b" and {"a": {"b": ...}} flatten to one path: refused, naming it."""
    with pytest.raises(metrana.MetranaConfigError, match="config/a/b"):
        flatten_config({"a/b": 1, "a": {"b": 2}})


@pytest.mark.parametrize("key", ["has space", "", "semi;colon", "ü"])
def test_bad_keys_are_an_error(key: str) -> None:
    """Keys outside [a-zA-Z0-9._-:/] are refused."""
    with pytest.raises(metrana.MetranaConfigError, match="may only use"):
        flatten_config({key: 1})


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", np.array([object()])])
def test_unsupported_values_are_type_errors(value: object) -> None:
    """A value we cannot represent is a TypeError naming its path and the supported types."""
    with pytest.raises(TypeError, match="config/x.*pathlib.Path, Enum, numpy arrays"):
        flatten_config({"x": value})


class Algo(enum.Enum):
    PPO = "ppo"
    DQN = "dqn"


class Seed(enum.IntEnum):
    A = 7


def test_paths_arrays_and_enums_are_what_ml_configs_hold() -> None:
    """pathlib paths as strings; numpy arrays like the nested lists they hold (0-d ones as
    scalars); enums by value (IntEnum too, whatever str() of it says on this Python)."""
    got = by_path({"ckpt": pathlib.Path("/data/ckpt"), "rel": pathlib.PurePosixPath("a/b"),
                   "betas": np.array([0.9, 0.99]), "grid": np.array([[1, 2], [3, 4]]),
                   "scalar": np.array(2.5), "flags": np.array([True]), "algo": Algo.PPO,
                   "seed": Seed.A, "nested": [Algo.DQN, np.int32(3)], "empty": np.zeros(0)})
    assert got == {
        "config/ckpt": {"stringValue": "/data/ckpt"}, "config/rel": {"stringValue": "a/b"},
        "config/betas/0": {"floatValue": 0.9}, "config/betas/1": {"floatValue": 0.99},
        "config/grid/0/0": {"intValue": "1"}, "config/grid/0/1": {"intValue": "2"},
        "config/grid/1/0": {"intValue": "3"}, "config/grid/1/1": {"intValue": "4"},
        "config/scalar": {"floatValue": 2.5}, "config/flags/0": {"boolValue": True},
        "config/algo": {"stringValue": "ppo"}, "config/seed": {"intValue": "7"},
        "config/nested/0": {"stringValue": "dqn"}, "config/nested/1": {"intValue": "3"},
    }


def test_a_big_array_counts_against_the_value_limit() -> None:
    """An array is flattened value by value, so a weight matrix passed by mistake is refused
    with the limit, not sent as 10,000+ attributes."""
    with pytest.raises(metrana.MetranaConfigError, match="10000"):
        flatten_config({"weights": np.zeros((200, 100))})


def test_too_many_leaves_and_huge_ints() -> None:
    """At most 10,000 leaves; ints beyond 64 bits are refused."""
    with pytest.raises(metrana.MetranaConfigError, match="10000"):
        flatten_config({"xs": list(range(10_001))})
    with pytest.raises(metrana.MetranaConfigError, match="64 bits"):
        flatten_config({"big": 2**64})


def test_init_raises_config_errors_at_the_call_site() -> None:
    """init(config=...) with a bad value fails in init(), before any network."""
    with pytest.raises(TypeError, match="config/model"):
        metrana.init(workspace_name="ws", project_name="p", run_name="r",
                     ingestion_url="http://127.0.0.1:9", config={"model": object()})
