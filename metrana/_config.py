"""Resolving ``init()`` arguments and environment variables into one validated Settings.

An explicit argument wins over its environment variable, which wins over the default. Every
bad value is a :class:`MetranaConfigError` that names the argument or variable and the choices.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ._enums import (
    AggregationFn,
    BackpressureStrategy,
    CloseStrategy,
    Distributed,
    ErrorStrategy,
    LogLevel,
    ResumeStrategy,
    StandardMetricScale,
    parse_choice,
)
from ._exceptions import MetranaConfigError, NoMetranaApiKeyError
from ._log import say
from ._orchestration import resolve_logger_id, resolve_orchestration_id
from ._spool import DEFAULT_SPOOL_MAX_BYTES, run_spool_dir

__all__ = ["SPOOL_DIR_DEFAULT", "AggregationRule", "Settings", "SpoolDirDefault", "check_notes", "check_tags",
           "resolve_settings"]

HOSTED_INGESTION_URL = "https://ingestion.development.metrana.ai"
DEFAULT_SPOOL_DIR = Path.home() / ".metrana" / "spool"
DEFAULT_CLOSE_TIMEOUT = 30.0
DEFAULT_SYSTEM_METRICS_INTERVAL = 15.0
MAX_TAGS = 100
MAX_TAG = 200  # characters (the server's limits too: metrana.server.manage_api)


class _Default(enum.Enum):
    """Defaults that need a name of their own.

    ``spool_dir=None`` already means "no spool", so "not given" (read ``METRANA_SPOOL_DIR``,
    else ``~/.metrana/spool``) needs a third value; its repr is what ``help(metrana.init)``
    shows, so it says what it stands for.
    """

    SPOOL_DIR = "spool_dir"

    def __repr__(self) -> str:
        return "<default: ~/.metrana/spool or METRANA_SPOOL_DIR>"


SpoolDirDefault = Literal[_Default.SPOOL_DIR]
SPOOL_DIR_DEFAULT: Final = _Default.SPOOL_DIR


class AggregationRule(BaseModel):
    """How the service derives new series from existing ones (declared at run creation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source_scale: str
    output_scale: str
    fns: list[AggregationFn | str] = Field(min_length=1)  # strings become AggregationFn
    metric_name: str | None = None
    aggregate_over_labels: list[str] = Field(default_factory=list)
    output_metric_name: str | None = None
    output_name_suffix: str | None = None

    @field_validator("source_scale", "output_scale", mode="before")
    @classmethod
    def _scale(cls, value: Any) -> str:
        if isinstance(value, StandardMetricScale):
            return value.value
        if not isinstance(value, str) or not value:
            raise ValueError("a scale is a non-empty string such as 'EPISODE'")
        return value

    @field_validator("fns", mode="before")
    @classmethod
    def _fns(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [parse_choice(AggregationFn, v, "AggregationRule.fns") for v in value]
        return value

    @model_validator(mode="after")
    def _output_name_needs_metric(self) -> AggregationRule:
        if self.output_metric_name is not None and self.metric_name is None:
            raise ValueError("output_metric_name is only valid when metric_name is set")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The rule as the protocol's JSON (camelCase field names), as ``init()`` sends it."""
        body: dict[str, Any] = {
            "sourceScale": self.source_scale,
            "outputScale": self.output_scale,
            "fns": [str(fn) for fn in self.fns],
        }
        if self.metric_name is not None:
            body["metricName"] = self.metric_name
        if self.aggregate_over_labels:
            body["aggregateOverLabels"] = list(self.aggregate_over_labels)
        if self.output_metric_name is not None:
            body["outputMetricName"] = self.output_metric_name
        if self.output_name_suffix is not None:
            body["outputNameSuffix"] = self.output_name_suffix
        return body


class Settings(BaseModel):
    """Everything a logger needs, validated once. The API key never appears in its repr."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    api_key: SecretStr | None
    workspace_name: str = Field(min_length=1)
    project_name: str = Field(min_length=1)
    run_name: str = Field(min_length=1)
    experiment_name: str | None = None
    resume_strategy: ResumeStrategy = ResumeStrategy.Allow
    backpressure_strategy: BackpressureStrategy = BackpressureStrategy.DropNew
    error_strategy: ErrorStrategy = ErrorStrategy.Warn
    close_strategy: CloseStrategy = CloseStrategy.CompleteAll
    log_level: LogLevel = LogLevel.Success
    aggregation_rules: tuple[AggregationRule, ...] = ()
    config: Mapping[str, Any] | None = None
    num_dispatch_workers: int = Field(default=4, ge=1, le=64)
    ingestion_url: str = HOSTED_INGESTION_URL
    event_queue_max_size: int = Field(default=0, ge=0)
    dispatch_queue_max_size: int = Field(default=0, ge=0)
    error_queue_max_size: int = Field(default=0, ge=0)
    close_timeout: float = Field(default=DEFAULT_CLOSE_TIMEOUT, gt=0)
    spool_dir: Path | None = DEFAULT_SPOOL_DIR
    spool_max_bytes: int = Field(default=DEFAULT_SPOOL_MAX_BYTES, gt=0)
    offline: bool = False
    distributed: Distributed = Distributed.auto
    tags: tuple[str, ...] = ()
    notes: str | None = None
    capture_context: bool = True
    system_metrics_interval: float = Field(default=DEFAULT_SYSTEM_METRICS_INTERVAL, ge=0)
    # The job whose processes write this run together, and this process among them
    # (metrana._orchestration): resolved from the launcher's environment when not given.
    orchestration_id: str | None = None
    logger_id: str = ""

    def run_spool_dir(self) -> Path | None:
        """Where this run's points wait when they cannot be delivered (None: no spool)."""
        if self.spool_dir is None:
            return None
        return run_spool_dir(self.spool_dir, self.workspace_name, self.project_name, self.run_name)

    @property
    def api_url(self) -> str:
        """``<ingestion_url>/v1`` with no doubled slash."""
        return self.ingestion_url.rstrip("/") + "/v1"


_ENV = {
    "api_key": "METRANA_API_KEY",
    "backpressure_strategy": "METRANA_BACKPRESSURE_STRATEGY",
    "error_strategy": "METRANA_ERROR_MODES",
    "resume_strategy": "METRANA_RESUME_STRATEGY",
    "close_strategy": "METRANA_CLOSE_STRATEGY",
    "log_level": "METRANA_LOG_LEVEL",
    "event_queue_max_size": "METRANA_EVENT_QUEUE_MAX_SIZE",
    "dispatch_queue_max_size": "METRANA_DISPATCH_QUEUE_MAX_SIZE",
    "error_queue_max_size": "METRANA_ERROR_QUEUE_MAX_SIZE",
    "ingestion_url": "METRANA_INGESTION_URL",
    "close_timeout": "METRANA_CLOSE_TIMEOUT",
    "spool_dir": "METRANA_SPOOL_DIR",
    "spool_max_bytes": "METRANA_SPOOL_MAX_BYTES",
    "mode": "METRANA_MODE",
    "distributed": "METRANA_DISTRIBUTED",
    "capture_context": "METRANA_CAPTURE_CONTEXT",
    "system_metrics_interval": "METRANA_SYSTEM_METRICS_INTERVAL",
    "orchestration_id": "METRANA_ORCHESTRATION_ID",
    "logger_id": "METRANA_LOGGER_ID",
}
# Read elsewhere: by metrana serve and the CLI (its database and key), and by the test suite.
_SERVER_ENV = ("METRANA_SERVER_DB", "METRANA_DB", "METRANA_SERVER_API_KEY")
_OTHER_ENV = (*_SERVER_ENV, "METRANA_PG_BINDIR")

# Names people reach for first (from other metrics libraries, or by shortening ours), mapped to
# the init() argument they mean: difflib finds typos, it cannot see that ``url`` means
# ingestion_url. Used for init()'s keywords and for METRANA_* variables alike.
LIKELY_MEANT = {
    "workspace": "workspace_name", "ws": "workspace_name", "entity": "workspace_name",
    "team": "workspace_name", "project": "project_name", "run": "run_name",
    "name": "run_name", "run_id": "run_name", "id": "run_name", "experiment": "experiment_name",
    "group": "experiment_name", "url": "ingestion_url", "host": "ingestion_url",
    "server": "ingestion_url", "endpoint": "ingestion_url", "base_url": "ingestion_url",
    "server_url": "ingestion_url", "key": "api_key", "token": "api_key", "apikey": "api_key",
    "timeout": "close_timeout", "spool": "spool_dir", "spool_path": "spool_dir",
    "level": "log_level", "verbosity": "log_level", "offline": "mode",
    "workers": "num_dispatch_workers", "queue_size": "event_queue_max_size",
    "hyperparameters": "config", "params": "config", "hparams": "config", "args": "config",
    "tag": "tags", "description": "notes", "note": "notes",
    "system_metrics": "system_metrics_interval", "monitor_system": "system_metrics_interval",
    "capture_code": "capture_context", "save_code": "capture_context",
}


def _meant_variable(name: str) -> str | None:
    """What a user who set ``name`` most likely meant, as a hint (None: no good guess).

    In order: the variable of the init() argument the name spells (``METRANA_ERROR_STRATEGY``
    is read as ``METRANA_ERROR_MODES``) or means (``METRANA_URL``: ingestion_url); then the
    closest spelling among the client's variables, and only then among the server's — a
    client-side name is not a typo of ``METRANA_DB``.
    """
    setting = name.removeprefix("METRANA_").lower()
    argument = setting if setting in _ENV else LIKELY_MEANT.get(setting)
    if argument in _ENV:
        value = "=offline" if setting == "offline" else ""
        return f"did you mean {_ENV[argument]}{value}?"
    if argument is not None:
        return f"{argument} has no environment variable: pass it to init()"
    groups = [_SERVER_ENV, tuple(_ENV.values())]
    if not setting.startswith("server"):
        groups.reverse()
    for group in groups:
        by_suffix = {v.removeprefix("METRANA_").lower(): v for v in group}
        close = difflib.get_close_matches(setting, by_suffix, n=1, cutoff=0.6)
        if close:
            return f"did you mean {by_suffix[close[0]]}?"
    return None


def unknown_environment(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``METRANA_*`` variable metrana does not read: a misspelt or guessed
    name (``METRANA_ERROR_STRATEGY`` for ``METRANA_ERROR_MODES``) would otherwise be ignored
    without a word, and the run would go ahead with the setting the user thought they
    changed left at its default."""
    known = (*_ENV.values(), *_OTHER_ENV)
    out = []
    for name in sorted(env):
        if name.startswith("METRANA_") and name not in known:
            hint = _meant_variable(name)
            out.append(f"environment variable {name} is not a metrana setting and is "
                       f"ignored{'; ' + hint if hint else ''} (docs/configuration.md "
                       "lists them)")
    return out


def _early_log_level(arguments: Mapping[str, Any], env: Mapping[str, str]) -> LogLevel:
    """The log level to say things at before the settings are resolved (which may fail:
    a misspelt variable is often the reason they do)."""
    given = arguments.get("log_level") or env.get(_ENV["log_level"]) or LogLevel.Success
    try:
        return parse_choice(LogLevel, given, "log_level")
    except MetranaConfigError:
        return LogLevel.Success  # resolving the settings says what is wrong with it


_CHOICES: dict[str, Any] = {
    "backpressure_strategy": BackpressureStrategy,
    "error_strategy": ErrorStrategy,
    "resume_strategy": ResumeStrategy,
    "close_strategy": CloseStrategy,
    "log_level": LogLevel,
    "distributed": Distributed,
}


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (IPv6 may come in brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_local_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def normalize_ingestion_url(url: Any, name: str = "ingestion_url") -> str:
    """Check that ``url`` is an http(s) base URL; drop trailing slashes and a trailing ``/v1``.

    Requests go to ``<url>/v1/...``; a URL copied from a request log or from the protocol docs
    often ends in ``/v1`` already, which would make every request ``/v1/v1/...`` (a 404).
    ``name`` is the argument's name in messages.

    Raises:
        MetranaConfigError: not an http(s) URL, or a dashboard (or API) address.
    """
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MetranaConfigError(
            f"{name}={url!r} is not an http(s) URL such as http://127.0.0.1:8787"
        )
    root = dashboard_root(text)
    if root is not None:
        raise MetranaConfigError(
            f"{name}={url!r} looks like a dashboard address, not the server's base URL; "
            f"use {name}={root!r}")
    text = text.rstrip("/")
    if text.endswith("/v1") and len(urlsplit(text).path) >= 3:
        text = text[: -len("/v1")].rstrip("/")
    return text


# A path that reaches one of the server's own pages or routes (the dashboard, the JSON API, an
# ingestion endpoint) cannot be a base URL; a service mounted under a prefix of its own
# (https://example.com/metrana) can.
_ROUTE = re.compile(r"(?:^|/)(?:api/(?:runs|query)|v1/runs[^/]*|runs?|compare|index\.html)(?:/|$)",
                    re.IGNORECASE)


def dashboard_root(url: str) -> str | None:
    """The base URL to suggest when ``url`` was copied from the browser's address bar (a
    ``#/run/...`` fragment, a query, a dashboard or API path), else None.

    Pasted as it is, such a URL becomes requests to ``…/runs#/run/x/v1/runs``: a 404 that names
    a mangled URL and says nothing of the cause.
    """
    parts = urlsplit(url)
    found = _ROUTE.search(parts.path)
    if found is None and not parts.fragment and not parts.query:
        return None
    path = parts.path[: found.start()] if found is not None else parts.path
    return f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}"


def resolve_settings(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge explicit ``init()`` arguments (``None`` = not given) with environment variables.

    ``spool_dir`` is the exception: :data:`SPOOL_DIR_DEFAULT` (or leaving it out) means not
    given, and ``None`` switches the spool off.
    """
    env = os.environ if environ is None else environ
    if any(name.startswith("METRANA_") for name in env):
        level = _early_log_level(arguments, env)
        for message in unknown_environment(env):
            say(level, "WARNING", message)
    values: dict[str, Any] = {}
    for name in {**dict.fromkeys(_ENV), **arguments}:
        value = arguments.get(name)
        if value is SPOOL_DIR_DEFAULT:  # spool_dir's "not given" (None there means "no spool")
            value = None
        source = name
        if value is None and name in _ENV and env.get(_ENV[name], "") != "":
            value, source = env[_ENV[name]], _ENV[name]
        if value is None:
            continue
        if name in _CHOICES:
            value = parse_choice(_CHOICES[name], value, source)
        elif name.endswith("_max_size") or name in ("num_dispatch_workers", "spool_max_bytes"):
            value = _as_int(value, source)
        elif name == "mode":
            value = _as_mode(value, source)
            name = "offline"
        elif name == "spool_dir":
            value = _as_spool_dir(value)
        elif name == "close_timeout":
            value = _as_float(value, source)
        elif name == "system_metrics_interval":
            value = _as_interval(value, source)
        elif name == "capture_context":
            value = _as_bool(value, source)
        elif name == "tags":
            value = check_tags(value, source)
        elif name == "notes":
            value = check_notes(value, source)
        elif name == "aggregation_rules":
            value = tuple(_as_rule(rule) for rule in value)
        values[name] = value
    url = values.get("ingestion_url")
    if url is not None:
        url = values["ingestion_url"] = normalize_ingestion_url(url)
    if arguments.get("spool_dir", SPOOL_DIR_DEFAULT) is None:
        values["spool_dir"] = None  # spool_dir=None in code switches the spool off
    if values.get("offline") and values.get("spool_dir", DEFAULT_SPOOL_DIR) is None:
        raise MetranaConfigError("mode='offline' writes every point to the spool; it needs a spool_dir")
    if (values.get("api_key") is None and not values.get("offline")
            and not is_local_url(str(url or HOSTED_INGESTION_URL))):
        raise NoMetranaApiKeyError(
            "no API key: pass api_key= or set METRANA_API_KEY for the Metrana service; "
            "to log without an account run `metrana serve` and set "
            "METRANA_INGESTION_URL=http://127.0.0.1:8787 (a loopback server needs no key)"
        )
    if values.get("api_key") is not None:
        values["api_key"] = SecretStr(str(values["api_key"]))
    else:
        values["api_key"] = None
    try:
        launchers = values.get("distributed", Distributed.auto) is not Distributed.off
        values["orchestration_id"] = resolve_orchestration_id(
            values.get("orchestration_id"), env, launchers=launchers)
        values["logger_id"] = resolve_logger_id(values.get("logger_id"), env)
    except ValueError as exc:
        raise MetranaConfigError(str(exc)) from None
    for name in ("workspace_name", "project_name", "run_name"):
        if not isinstance(values.get(name), str) or not values[name]:
            raise MetranaConfigError(f"{name} must be a non-empty string, got {values.get(name)!r}")
    try:
        return Settings(**values)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise MetranaConfigError(f"invalid metrana settings: {exc}") from None


def _as_int(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MetranaConfigError(f"{source}={value!r} must be an integer")
    try:
        number = int(value)
    except ValueError:
        raise MetranaConfigError(f"{source}={value!r} must be an integer") from None
    if number < 0:
        raise MetranaConfigError(f"{source}={value!r} must be >= 0 (0 means unbounded)")
    return number


def _as_mode(value: Any, source: str) -> bool:
    text = str(value).strip().lower()
    if text in ("offline", "online"):
        return text == "offline"
    raise MetranaConfigError(f"{source}={value!r} is not a valid mode; choose one of: online, offline")


def _as_spool_dir(value: Any) -> Path | None:
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "false", "0", ""):
        return None
    return Path(value).expanduser()


def _as_float(value: Any, source: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetranaConfigError(f"{source}={value!r} must be a number of seconds") from None
    if not number > 0:
        raise MetranaConfigError(f"{source}={value!r} must be > 0 seconds")
    return number


def _as_interval(value: Any, source: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetranaConfigError(f"{source}={value!r} must be a number of seconds (0 turns "
                                 "system metrics off)") from None
    if not number >= 0 or number == float("inf"):
        raise MetranaConfigError(f"{source}={value!r} must be >= 0 seconds (0 turns system "
                                 "metrics off)")
    return number


def _as_bool(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise MetranaConfigError(f"{source}={value!r} must be true or false")


def check_tags(value: Any, source: str = "tags") -> tuple[str, ...]:
    """Tags as a run keeps them: a list (or tuple, or set) of non-empty strings of at most
    :data:`MAX_TAG` characters, surrounding whitespace dropped, each once."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{source} is a list of strings, e.g. {source}=['baseline'], got "
                        f"{type(value).__name__}")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str):
            raise TypeError(f"{source}: a tag is a string, got {type(tag).__name__} {tag!r:.40}")
        tag = tag.strip()
        if not tag or len(tag) > MAX_TAG:
            raise MetranaConfigError(f"{source}: a tag is a non-empty string of at most "
                                     f"{MAX_TAG} characters, got {tag!r:.60}")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise MetranaConfigError(f"{source}: a run has at most {MAX_TAGS} tags, got {len(tags)}")
    return tuple(tags)


MAX_NOTES = 20_000  # characters (the server's limit too)


def check_notes(value: Any, source: str = "notes") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{source} is a string, got {type(value).__name__}")
    if len(value) > MAX_NOTES:
        raise MetranaConfigError(f"{source}: at most {MAX_NOTES:,} characters, got "
                                 f"{len(value):,}")
    return value


def _as_rule(rule: Any) -> AggregationRule:
    if isinstance(rule, AggregationRule):
        return rule
    if isinstance(rule, Mapping):
        try:
            return AggregationRule(**rule)
        except ValueError as exc:
            raise MetranaConfigError(f"invalid aggregation rule {dict(rule)!r}: {exc}") from None
    raise MetranaConfigError(f"aggregation_rules items must be AggregationRule, got {rule!r}")
