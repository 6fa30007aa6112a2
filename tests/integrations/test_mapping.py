"""The integrations' mapping code on hand-built inputs, with no framework imported.

test_mapping_runs_without_frameworks re-runs this file in a process where torch, gymnasium,
stable_baselines3, transformers and lightning cannot be imported.
"""

from __future__ import annotations

import enum
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import metrana
from metrana._flatten import flatten_config
from metrana.integrations._common import StepFilter, as_number, global_rank, safe_config
from metrana.integrations._episodes import episode_statistics
from metrana.integrations._trainer_hooks import TrainerHooks
from metrana.integrations.gymnasium import log_episode_statistics
from metrana.server import ServerInfo
from tests.integrations.helpers import attributes, run_name, series

ROOT = Path(__file__).resolve().parents[2]


def open_run(info: ServerInfo, name: str) -> metrana.Session:
    return metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                           ingestion_url=info.url, close_strategy="CompleteAll")


def by_name(stored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Series keyed "name{label=value,...}@env" (labels and env only where present)."""
    out = {}
    for s in stored:
        key = s["metric_name"]
        if s["labels"]:
            key += "{" + ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) + "}"
        if s["kind"] == "rl":
            key += f"@{s['environment_id']}"
        out[key] = s
    return out


# --------------------------------------------------------------------------- episode infos


def test_single_env_info() -> None:
    """gymnasium RecordEpisodeStatistics on one env: scalars, env index 0; no episode -> []."""
    assert episode_statistics({"episode": {"r": np.float32(9.5), "l": 10, "t": 0.25}}) == [
        (0, {"r": 9.5, "l": 10.0, "t": 0.25})]
    assert episode_statistics({}) == []
    assert episode_statistics({"lives": 3}) == []


def test_vector_info_honours_the_episode_mask() -> None:
    """Vector RecordEpisodeStatistics: only envs whose `_episode` entry is True finished."""
    infos = {
        "episode": {"r": np.array([1.0, 0.0, 3.0, 0.0]), "l": np.array([5, 0, 7, 0]),
                    "t": np.array([0.1, 0.0, 0.3, 0.0])},
        "_episode": np.array([True, False, True, False]),
    }
    assert episode_statistics(infos) == [(0, {"r": 1.0, "l": 5.0, "t": 0.1}),
                                         (2, {"r": 3.0, "l": 7.0, "t": 0.3})]
    infos["_episode"] = np.array([False, False, False, False])
    assert episode_statistics(infos) == []
    infos["_episode"] = np.array([True, False])
    with pytest.raises(ValueError, match="_episode"):
        episode_statistics(infos)


def test_vector_info_with_nested_masks() -> None:
    """A sub-env's own statistics merged by a vector env: the mask is episode['_r']."""
    infos = {"episode": {"r": np.array([0.0, 2.0]), "_r": np.array([False, True]),
                         "l": np.array([0, 4]), "_l": np.array([False, True])}}
    assert episode_statistics(infos) == [(1, {"r": 2.0, "l": 4.0})]


def test_sb3_monitor_infos() -> None:
    """SB3: a list of per-env dicts; finished envs carry episode={'r','l','t'}."""
    infos = [{"TimeLimit.truncated": False},
             {"episode": {"r": 12.0, "l": 12, "t": 0.5}, "terminal_observation": [0.0]},
             {},
             {"episode": {"r": 30.0, "l": 30, "t": 1.5}}]
    assert episode_statistics(infos) == [(1, {"r": 12.0, "l": 12.0, "t": 0.5}),
                                         (3, {"r": 30.0, "l": 30.0, "t": 1.5})]
    assert episode_statistics([{}, {}]) == []


def test_old_gymnasium_final_info() -> None:
    """gymnasium < 1.0 vector envs: final_info (object array of dicts or None) + mask."""
    final = np.array([None, {"episode": {"r": 4.0, "l": 4, "t": 0.1}}, None], dtype=object)
    infos = {"final_info": final, "_final_info": np.array([False, True, False])}
    assert episode_statistics(infos) == [(1, {"r": 4.0, "l": 4.0, "t": 0.1})]


def test_bad_infos_raise() -> None:
    with pytest.raises(TypeError):
        episode_statistics(3)
    with pytest.raises(TypeError, match="episode"):
        episode_statistics({"episode": [1.0]})


def test_log_episode_statistics_logs_per_env(live_server: ServerInfo) -> None:
    """One point per finished episode and statistic, env_id = env index, episodes numbered
    per env from 0, rl_step as the major step; masked-out envs log nothing."""
    name = run_name("episodes")
    with open_run(live_server, name) as run:
        step1 = {"episode": {"r": np.array([1.0, 0.0, 3.0]), "l": np.array([1, 0, 3]),
                             "t": np.array([0.1, 0.0, 0.3])},
                 "_episode": np.array([True, False, True])}
        assert log_episode_statistics(step1, rl_step=30, session=run) == 2
        step2 = [{}, {"episode": {"r": 5.0, "l": 5, "t": 0.5}}, {"episode": {"r": 6.0, "l": 6,
                                                                            "t": 0.6}}]
        assert log_episode_statistics(step2, rl_step=60, session=run, prefix="ep") == 2
        assert log_episode_statistics({}, rl_step=90, session=run) == 0
    stored = by_name(series(live_server, name))
    assert sorted(stored) == ["ep/length@1", "ep/length@2", "ep/return@1", "ep/return@2",
                              "ep/time@1", "ep/time@2",
                              "episode/length@0", "episode/length@2", "episode/return@0",
                              "episode/return@2", "episode/time@0", "episode/time@2"]
    points = stored["episode/return@2"]["points"]
    assert [(p["step"], p["minor_step"], p["value"]) for p in points] == [(30, 0, 3.0)]
    assert stored["episode/return@2"]["scale"] == "EPISODE"
    assert [p["value"] for p in stored["ep/length@2"]["points"]] == [6.0]


def test_log_episode_statistics_uses_the_open_run_and_rank(live_server: ServerInfo,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without session= it logs to metrana.init's run; on rank 1 it logs nothing (unless
    rank_zero_only=False); with no run at all it says to call init."""
    info = [{"episode": {"r": 1.0, "l": 1, "t": 0.0}}]
    with pytest.raises(metrana.MetranaNotInitializedError, match="init"):
        log_episode_statistics(info, rl_step=1)
    name = run_name("global")
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, close_strategy="CompleteAll")
    assert log_episode_statistics(info, rl_step=1) == 1
    monkeypatch.setenv("RANK", "1")
    assert global_rank() == 1
    assert log_episode_statistics(info, rl_step=2) == 0
    assert log_episode_statistics(info, rl_step=3, rank_zero_only=False,
                                  labels={"rank": "1"}) == 1
    metrana.close()
    stored = by_name(series(live_server, name))
    assert [p["step"] for p in stored["episode/return@0"]["points"]] == [1]
    assert [p["step"] for p in stored["episode/return{rank=1}@0"]["points"]] == [3]
    assert len(stored) == 6  # 3 statistics x (unlabelled, rank=1)


# --------------------------------------------------------------------------- values, steps


class Colour(enum.Enum):
    RED = "red"


def test_as_number() -> None:
    """Numbers (incl. numpy scalars, 0-d and one-element arrays) -> float; the rest -> None."""
    assert as_number(1) == 1.0 and as_number(True) == 1.0 and as_number(2.5) == 2.5
    assert as_number(np.float32(0.5)) == 0.5 and as_number(np.int64(3)) == 3.0
    assert as_number(np.array(4.0)) == 4.0 and as_number(np.array([5.0])) == 5.0
    assert math.isnan(as_number(float("nan")) or 0.0)
    for other in ("1.0", b"1", None, [1.0], {"a": 1}, np.zeros(2), np.array(["x"]), object(),
                  Colour.RED):
        assert as_number(other) is None, other


def test_step_filter(loguru_messages: list[str]) -> None:
    """One value per (key, step): a repeat of the same value is skipped quietly; a different
    value, or an earlier step, is skipped, counted and reported once per key."""
    steps = StepFilter("test")
    assert steps.accept("a", 0, 1.0) and steps.accept("a", 2, 1.0)
    assert not steps.accept("a", 2, 1.0) and steps.dropped == 0
    assert steps.accept("nan", 1, math.nan) and not steps.accept("nan", 1, math.nan)
    assert steps.dropped == 0 and not any("'a'" in m for m in loguru_messages)
    assert not steps.accept("a", 2, 7.0)
    assert not steps.accept("a", 1, 1.0)
    assert steps.dropped == 2
    assert sum("'a'" in m for m in loguru_messages) == 1
    assert steps.accept("b", 0, 1.0) and steps.next_step("b") == 1 and steps.next_step("c") == 0


def test_safe_config_is_accepted_by_init() -> None:
    """Framework settings with int keys, bad characters, enums, objects, None, numpy values
    become a config flatten_config accepts, keys kept distinct."""
    raw = {
        "id2label": {0: "NEG", 1: "POS"},
        "lr scheduler": Colour.RED,
        "lr_scheduler": "linear",
        "path/with/slash": Path("/tmp/x"),
        "callback": print,
        "dropped": None,
        "np": np.float64(0.5),
        "big": 2**70,
        "nested": {"tuple": (1, 2), "set": {"b", "a"}},
        "namespace": SimpleNamespace(x=1, _private=2),
        "obj": Colour,
    }
    safe = safe_config(raw, who="test")
    assert safe["id2label"] == {"0": "NEG", "1": "POS"}
    assert safe["lr_scheduler"] == "red" and safe["lr_scheduler_2"] == "linear"
    assert safe["path_with_slash"] == "/tmp/x" and "dropped" not in safe
    assert safe["np"] == 0.5 and safe["big"] == str(2**70)
    assert safe["nested"] == {"tuple": [1, 2], "set": ["a", "b"]}
    assert isinstance(safe["callback"], str) and isinstance(safe["obj"], str)
    assert safe["namespace"] == {"x": 1}
    paths = {a["path"] for a in flatten_config(safe)}
    assert "config/id2label/0" in paths and "config/nested/set/1" in paths


def test_safe_config_stays_within_the_attribute_limit(loguru_messages: list[str]) -> None:
    safe = safe_config({"vocab": list(range(20_000))}, who="test", reserve={"a": [1, 2]})
    assert len(flatten_config(safe)) == 9_998
    assert any("more than" in m for m in loguru_messages)


# --------------------------------------------------------------------------- Trainer hooks


def state(step: int, zero: bool = True) -> SimpleNamespace:
    """What the callback reads of a transformers TrainerState."""
    return SimpleNamespace(global_step=step, is_world_process_zero=zero)


class Args:
    """What the callback reads of TrainingArguments."""

    def to_dict(self) -> dict[str, Any]:
        return {"learning_rate": 5e-5, "lr_scheduler_type": Colour.RED, "hub_token": None,
                "output_dir": "/tmp/out"}


def test_trainer_hooks_map_logs_and_evaluation(live_server: ServerInfo) -> None:
    """on_log: numbers at global_step (manual), eval_* as evaluation=True without the prefix,
    strings skipped; on_evaluate does not log twice what on_log logged; other ranks and a
    repeated identical log add nothing; a different value at a logged step is not logged."""
    name = run_name("hooks")
    with open_run(live_server, name) as run:
        hooks = TrainerHooks(session=run)
        hooks.on_train_begin(Args(), state(0), None)
        hooks.on_log(Args(), state(2), None, logs={"loss": 0.9, "learning_rate": 1e-4,
                                                  "epoch": 0.5, "note": "text"})
        hooks.on_log(Args(), state(2, zero=False), None, logs={"rank1_only": 1.0})
        evaluation = {"eval_loss": 0.7, "eval_runtime": 0.1, "epoch": 0.5}
        hooks.on_log(Args(), state(2), None, logs=evaluation)
        hooks.on_evaluate(Args(), state(2), None, metrics=evaluation)
        hooks.on_evaluate(Args(), state(4), None, metrics={"test_acc": 0.5, "epoch": 1.0})
        hooks.on_log(Args(), state(4), None, logs={"loss": 0.5, "epoch": 1.0})
        hooks.on_log(Args(), state(4), None, logs={"loss": 0.4})
        hooks.on_train_end(Args(), state(4), None)
        assert run.get_metrics().invalid == 0
    stored = by_name(series(live_server, name))
    assert sorted(stored) == ["epoch", "learning_rate", "loss", "loss{evaluation=true}",
                              "runtime{evaluation=true}", "test_acc{evaluation=true}"]
    assert [(p["step"], p["value"]) for p in stored["loss"]["points"]] == [(2, 0.9), (4, 0.5)]
    assert [(p["step"], p["value"]) for p in stored["loss{evaluation=true}"]["points"]] == [(2, 0.7)]
    assert [(p["step"], p["value"]) for p in stored["epoch"]["points"]] == [(2, 0.5), (4, 1.0)]
    assert stored["loss"]["ordering"] == "ORDERING_MODE_ABSOLUTE_UNORDERED"


def test_trainer_hooks_open_and_close_their_own_run(live_server: ServerInfo) -> None:
    """With init keyword arguments the hooks open a run at on_train_begin whose config holds
    args/... and model/..., close it at on_train_end and resume it when used again."""
    name = run_name("own")
    hooks = TrainerHooks(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url, close_strategy="CompleteAll",
                         config={"seed": 7})
    model = SimpleNamespace(config=SimpleNamespace(to_dict=lambda: {"hidden_size": 16}))
    hooks.on_train_begin(Args(), state(0), None, model=model)
    hooks.on_log(Args(), state(1), None, logs={"loss": 1.0})
    hooks.on_log(Args(), state(1, zero=False), None, logs={"loss": 3.0})
    hooks.on_train_end(Args(), state(1), None)
    first = hooks.session
    assert first is not None and first.get_metrics().sent == 1
    with pytest.raises(metrana.MetranaLoggerClosedError):
        first.log("x", 1.0)
    hooks.on_evaluate(Args(), state(1), None, metrics={"eval_loss": 2.0})
    assert hooks.session is not first and hooks.session is not None
    hooks.session.close()

    assert attributes(live_server, name) == {
        "config/args/learning_rate": 5e-5, "config/args/lr_scheduler_type": "red",
        "config/args/output_dir": "/tmp/out", "config/model/hidden_size": 16, "config/seed": 7}
    stored = by_name(series(live_server, name))
    assert [p["value"] for p in stored["loss"]["points"]] == [1.0]
    assert [p["value"] for p in stored["loss{evaluation=true}"]["points"]] == [2.0]


def test_trainer_hooks_need_a_run() -> None:
    hooks = TrainerHooks()
    with pytest.raises(metrana.MetranaNotInitializedError):
        hooks.on_train_begin(Args(), state(0), None)
    hooks.on_train_begin(Args(), state(0, zero=False), None)  # other ranks never log
    with pytest.raises(TypeError, match="session"):
        TrainerHooks(session=object(), run_name="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bogus"):
        TrainerHooks(run_name="x", bogus=1)


# --------------------------------------------------------------------------- isolation


def test_mapping_runs_without_frameworks() -> None:
    """This file's tests pass in a process where no framework can be imported."""
    if os.environ.get("BLOCK_FRAMEWORKS_FOR_TEST") == "1":
        pytest.skip("already the framework-free run")
    env = {**os.environ, "BLOCK_FRAMEWORKS_FOR_TEST": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


IMPORTS = """
import importlib, sys
frameworks = {"torch", "gymnasium", "stable_baselines3", "transformers", "lightning",
              "pytorch_lightning"}
def loaded():
    return {name for name in frameworks if name in sys.modules}
for module in %r:
    importlib.import_module(module)
own = loaded()
for module in %r:
    importlib.import_module(module)
print(",".join(sorted(loaded() - own)))
"""

# (what a user imports first: the framework itself, then the integration module)
CASES = [
    ([], ["metrana", "metrana.integrations", "metrana.integrations.gymnasium",
          "metrana.integrations._common", "metrana.integrations._episodes",
          "metrana.integrations._trainer_hooks"]),
    (["gymnasium"], ["metrana.integrations.gymnasium", "metrana.integrations._gymnasium_wrapper"]),
    (["stable_baselines3"], ["metrana.integrations.sb3"]),
    (["transformers.trainer_callback"], ["metrana.integrations.transformers"]),
    (["lightning.pytorch"], ["metrana.integrations.lightning"]),
]


def test_each_integration_imports_only_its_framework() -> None:
    """Importing metrana (and the framework-free modules) imports no framework; each
    integration module imports nothing beyond what its framework itself imports."""
    blocked = os.environ.get("BLOCK_FRAMEWORKS_FOR_TEST") == "1"
    cases = [case for case in CASES if not (blocked and case[0])]
    procs = [subprocess.Popen([sys.executable, "-c", IMPORTS % case], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for case in cases]
    for case, proc in zip(cases, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert out.strip() == "", (case, out)
