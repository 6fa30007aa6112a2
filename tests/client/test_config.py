"""init() arguments and environment variables: spellings, defaults, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import metrana
from metrana._config import resolve_settings
from metrana._enums import (
    BackpressureStrategy,
    CloseStrategy,
    ErrorStrategy,
    LogLevel,
    ResumeStrategy,
)

BASE: dict[str, Any] = {"workspace_name": "ws", "project_name": "proj", "run_name": "r",
        "ingestion_url": "http://127.0.0.1:9"}

ENV_CHOICES = [
    ("METRANA_BACKPRESSURE_STRATEGY", "backpressure_strategy", BackpressureStrategy),
    ("METRANA_ERROR_MODES", "error_strategy", ErrorStrategy),
    ("METRANA_RESUME_STRATEGY", "resume_strategy", ResumeStrategy),
    ("METRANA_CLOSE_STRATEGY", "close_strategy", CloseStrategy),
    ("METRANA_LOG_LEVEL", "log_level", LogLevel),
]


def snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def test_defaults_are_the_seed_readme_defaults_but_complete_all() -> None:
    """DropNew, Warn, Allow, Success, unbounded queues as in the seed; CompleteAll on close
    (the seed's CompletePending discards the last batch window: every point of a short run)."""
    s = resolve_settings(BASE, environ={})
    assert (s.backpressure_strategy, s.error_strategy, s.resume_strategy, s.close_strategy,
            s.log_level) == ("DropNew", "Warn", "Allow", "CompleteAll", "Success")
    assert (s.event_queue_max_size, s.dispatch_queue_max_size, s.error_queue_max_size) == (0, 0, 0)
    assert s.num_dispatch_workers == 4


@pytest.mark.parametrize(("var", "arg", "kind"), ENV_CHOICES)
def test_every_strategy_accepts_readme_and_snake_case_from_env_and_args(var, arg, kind) -> None:  # type: ignore[no-untyped-def]
    """Each value works as DropNew / drop_new / DROPNEW, from the env var and the argument."""
    for member in kind:
        for spelling in (member.value, snake(member.value), member.value.upper()):
            assert getattr(resolve_settings(BASE, environ={var: spelling}), arg) is member
            assert getattr(resolve_settings({**BASE, arg: spelling}, environ={}), arg) is member


@pytest.mark.parametrize(("var", "arg", "kind"), ENV_CHOICES)
def test_invalid_strategy_names_the_variable_and_the_choices(var, arg, kind) -> None:  # type: ignore[no-untyped-def]
    """A typo is a MetranaConfigError from init() saying where it came from and what is valid."""
    with pytest.raises(metrana.MetranaConfigError) as from_env:
        resolve_settings(BASE, environ={var: "sometimes"})
    assert var in str(from_env.value)
    assert all(m.value in str(from_env.value) for m in kind)
    with pytest.raises(metrana.MetranaConfigError) as from_arg:
        metrana.init(**BASE, **{arg: "sometimes"})  # type: ignore[arg-type]
    assert arg in str(from_arg.value)


def test_argument_wins_over_environment() -> None:
    """An explicit init() argument overrides its environment variable."""
    env = {"METRANA_CLOSE_STRATEGY": "Immediate", "METRANA_EVENT_QUEUE_MAX_SIZE": "50"}
    s = resolve_settings({**BASE, "close_strategy": "complete_all"}, environ=env)
    assert s.close_strategy is CloseStrategy.CompleteAll
    assert s.event_queue_max_size == 50


@pytest.mark.parametrize("var", ["METRANA_EVENT_QUEUE_MAX_SIZE", "METRANA_DISPATCH_QUEUE_MAX_SIZE",
                                 "METRANA_ERROR_QUEUE_MAX_SIZE"])
def test_queue_sizes_from_env(var: str) -> None:
    """Queue bounds are integers; 0 means unbounded; junk is a clear error."""
    field = var.removeprefix("METRANA_").lower()
    assert getattr(resolve_settings(BASE, environ={var: "1000"}), field) == 1000
    assert getattr(resolve_settings(BASE, environ={var: "0"}), field) == 0
    for junk in ("ten", "-1", "1.5"):
        with pytest.raises(metrana.MetranaConfigError, match=var):
            resolve_settings(BASE, environ={var: junk})


def test_ingestion_url_from_env_and_joined_without_double_slash() -> None:
    """METRANA_INGESTION_URL is used; a trailing slash does not produce //v1."""
    s = resolve_settings({k: v for k, v in BASE.items() if k != "ingestion_url"},
                         environ={"METRANA_INGESTION_URL": "http://localhost:8787/"})
    assert s.api_url == "http://localhost:8787/v1"
    with pytest.raises(metrana.MetranaConfigError, match="http"):
        resolve_settings({**BASE, "ingestion_url": "localhost:8787"}, environ={})


def test_hosted_service_without_api_key_is_refused_with_a_way_out() -> None:
    """No key for a non-loopback service: NoMetranaApiKeyError that mentions metrana serve."""
    args = {**BASE, "ingestion_url": None}
    with pytest.raises(metrana.NoMetranaApiKeyError, match="metrana serve"):
        resolve_settings(args, environ={})
    key = resolve_settings(args, environ={"METRANA_API_KEY": "k"}).api_key
    assert key is not None and key.get_secret_value() == "k"


def test_api_key_never_appears_in_reprs() -> None:
    """The key is hidden in settings reprs and strings."""
    s = resolve_settings({**BASE, "api_key": "super-secret-123"}, environ={})
    assert "super-secret-123" not in repr(s) + str(s)
    assert s.api_key is not None and s.api_key.get_secret_value() == "super-secret-123"


def test_bad_names_and_sizes_are_config_errors() -> None:
    """Empty workspace/project/run names and zero dispatch workers fail in init()."""
    for field in ("workspace_name", "project_name", "run_name"):
        with pytest.raises(metrana.MetranaConfigError, match=field):
            resolve_settings({**BASE, field: ""}, environ={})
    with pytest.raises(metrana.MetranaConfigError, match="num_dispatch_workers"):
        resolve_settings({**BASE, "num_dispatch_workers": 0}, environ={})


def test_aggregation_rules_validate_and_encode() -> None:
    """Rules accept enum or wire names and refuse output_metric_name without metric_name."""
    rule = metrana.AggregationRule(metric_name="reward", source_scale="EPISODE",
                                   output_scale=metrana.StandardMetricScale.EPISODE,
                                   fns=["AGGREGATION_FN_MIN", metrana.AggregationFn.AGGREGATION_FN_SUM],
                                   output_metric_name="reward/final")
    assert rule.to_wire() == {"metricName": "reward", "sourceScale": "EPISODE",
                              "outputScale": "EPISODE", "outputMetricName": "reward/final",
                              "fns": ["AGGREGATION_FN_MIN", "AGGREGATION_FN_SUM"]}
    with pytest.raises(ValueError, match="output_metric_name"):
        metrana.AggregationRule(source_scale="EPISODE", output_scale="EPISODE",
                                fns=["AGGREGATION_FN_MIN"], output_metric_name="x")
    with pytest.raises(ValueError):
        metrana.AggregationRule(source_scale="EPISODE", output_scale="EPISODE", fns=[])


def test_init_reads_its_configuration_from_the_environment(
        live_server: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """With only names in code, URL, strategies and sizes come from METRANA_* variables."""
    monkeypatch.setenv("METRANA_INGESTION_URL", live_server.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("METRANA_CLOSE_STRATEGY", "complete_all")
    monkeypatch.setenv("METRANA_BACKPRESSURE_STRATEGY", "block")
    monkeypatch.setenv("METRANA_EVENT_QUEUE_MAX_SIZE", "64")
    monkeypatch.setenv("METRANA_ERROR_MODES", "RAISE_ON_CLOSE")
    monkeypatch.setenv("METRANA_LOG_LEVEL", "off")
    run = metrana.init(workspace_name="ws", project_name="proj", run_name="from-env")
    s = run.settings
    assert (s.close_strategy, s.backpressure_strategy, s.error_strategy, s.log_level,
            s.event_queue_max_size) == ("CompleteAll", "Block", "RaiseOnClose", "Off", 64)
    for i in range(5000):
        metrana.log("loss", float(i))
    assert metrana.close().sent == 5000  # Block with a 64-point queue: nothing dropped


def unknown(name: str, hint: str) -> str:
    return (f"environment variable {name} is not a metrana setting and is ignored{hint} "
            "(docs/configuration.md lists them)")


def test_an_unknown_metrana_variable_is_named_with_the_one_meant(
        loguru_messages: list[str]) -> None:
    """A guessed name is not silently ignored: metrana's logger names the variable that is
    read (a WARNING line, not a Python warning), and only what is read counts."""
    env = {"METRANA_ERROR_STRATEGY": "Silent", "METRANA_CLOSE_STRATEGI": "Immediate",
           "METRANA_ERROR_MODES": "Warn", "METRANA_SERVER_DB": "x.db", "OTHER": "1"}
    settings = resolve_settings({**BASE, "api_key": "k"}, env)  # filterwarnings=error: none
    assert loguru_messages == [
        "WARNING metrana: " + unknown("METRANA_CLOSE_STRATEGI",
                                      "; did you mean METRANA_CLOSE_STRATEGY?") + "\n",
        "WARNING metrana: " + unknown("METRANA_ERROR_STRATEGY",
                                      "; did you mean METRANA_ERROR_MODES?") + "\n"]
    assert settings.error_strategy is ErrorStrategy.Warn  # what was read, and only that


@pytest.mark.parametrize(("name", "hint"), [
    ("METRANA_URL", "; did you mean METRANA_INGESTION_URL?"),  # not METRANA_DB
    ("METRANA_SERVER_URL", "; did you mean METRANA_INGESTION_URL?"),
    ("METRANA_INGEST_URL", "; did you mean METRANA_INGESTION_URL?"),
    ("METRANA_TOKEN", "; did you mean METRANA_API_KEY?"),
    ("METRANA_TIMEOUT", "; did you mean METRANA_CLOSE_TIMEOUT?"),
    ("METRANA_OFFLINE", "; did you mean METRANA_MODE=offline?"),
    ("METRANA_LEVEL", "; did you mean METRANA_LOG_LEVEL?"),
    ("METRANA_WORKSPACE", "; workspace_name has no environment variable: pass it to init()"),
    ("METRANA_SERVER_D", "; did you mean METRANA_SERVER_DB?"),  # a server name: the server's
    ("METRANA_DBB", "; did you mean METRANA_DB?"),  # no client name is close
    ("METRANA_FROBNICATE", ""),
])
def test_suggestions_are_ranked_by_what_the_user_meant(name: str, hint: str) -> None:
    """The argument a client-side name means comes first, then the closest client variable,
    and a server variable only for server names or when nothing else is close."""
    from metrana._config import unknown_environment

    assert unknown_environment({name: "1"}) == [unknown(name, hint)]


def test_unknown_variables_are_said_in_metranas_voice_before_init_fails(tmp_path: Path) -> None:
    """What the user sees: a short metrana WARNING line (no Python warning pointing at
    metrana's source), printed before the error the misspelt variable causes (no API key for
    the hosted service, because METRANA_INGESTION_URL was not set)."""
    script = tmp_path / "env.py"
    script.write_text("import metrana\n"
                      "metrana.init(workspace_name='ws', project_name='proj', run_name='r')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRANA_")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env={**env, "METRANA_URL": "http://127.0.0.1:8787"})
    lines = done.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if "| WARNING  | metrana: " in line]
    assert len(said) == 1, done.stderr
    assert lines[said[0]].endswith("metrana: " + unknown(
        "METRANA_URL", "; did you mean METRANA_INGESTION_URL?"))
    assert lines[said[0] + 1] == "Traceback (most recent call last):"  # the line before: ours
    assert "UserWarning" not in done.stderr
    assert lines[-1].startswith("metrana._exceptions.NoMetranaApiKeyError: no API key")


def test_log_level_off_silences_them_too(loguru_messages: list[str]) -> None:
    resolve_settings({**BASE, "log_level": "Off"}, {"METRANA_URL": "x"})
    resolve_settings(BASE, {"METRANA_URL": "x", "METRANA_LOG_LEVEL": "off"})
    assert loguru_messages == []


def test_known_variables_give_no_warning(loguru_messages: list[str]) -> None:
    resolve_settings({**BASE, "api_key": "k"}, {"METRANA_CLOSE_STRATEGY": "CompleteAll",
                                            "METRANA_DB": "x", "METRANA_SERVER_API_KEY": "k"})
    assert loguru_messages == []
