"""Groups of runs compared with statistical confidence, as deep-RL evaluation recommends.

Agarwal et al. (NeurIPS 2021, "Deep Reinforcement Learning at the Edge of the Statistical
Precipice") and their library ``rliable`` report, per group of seeds, the interquartile mean
(IQM), median, mean and optimality gap of the runs' scores, each with a **stratified bootstrap**
95% confidence interval; performance profiles (the fraction of runs scoring above each
threshold, with CI bands); and the probability that a run of one group beats a run of another.

A score is one number per run (:meth:`~.store.Store.run_scores`: a summary of a metric),
optionally normalised per task (a config key, e.g. ``config/task``; ``(score - min) / (max -
min)`` with the user's reference scores, as rliable does with human-normalised scores). A
group's scores form a matrix ``runs × tasks`` (the same number of runs on every task: the
bootstrap resamples runs within each task).

**Numbers equal rliable's.** The aggregates' and the probability of improvement's point
estimates are rliable's own functions (``rliable.metrics``; a profile's is the fraction of
scores above each threshold, as rliable's). The bootstrap draws exactly what rliable's ``StratifiedBootstrap``
(and ``StratifiedIndependentBootstrap`` for the probability of improvement) draws —
``np.random.choice(runs, (runs, tasks))`` per repetition from the legacy generator — and takes
arch's percentile interval, but all repetitions at once in numpy: rliable calls the statistic
once per repetition in Python (10 groups × 20 runs × 2,000 repetitions: seconds), this takes
tens of milliseconds. With ``seed``, the draws come from ``np.random.RandomState(seed)``,
groups (or pairs) in their listed order: what rliable gives after ``np.random.seed(seed)``
(the tests compare every number). rliable computes the point estimates, so it is required:
the ``stats`` extra (``pip install 'metrana[stats]'``), imported on first use only.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .bootstrap import BLOCK, CONFIDENCE, counts, draws, interval
from .errors import QueryError
from .store import RunScores
from .store.views import group_label, group_order, tagged

__all__ = ["AGGREGATES", "INSTALL", "MAX_PAIRS", "MAX_REPS", "MAX_THRESHOLDS", "Scored", "compare",
           "score_matrices"]

F64 = npt.NDArray[np.float64]
AGGREGATES = ("iqm", "median", "mean", "optimality_gap")
INSTALL = "pip install 'metrana[stats]'"
MAX_REPS = 50_000  # rliable's own default
MAX_THRESHOLDS = 1000
MAX_PAIRS = 400  # probabilities of improvement in one answer (every pair of 20 groups: 380)


def rliable_metrics() -> ModuleType:
    """``rliable.metrics``, imported on first use (it brings scipy); a QueryError saying how
    to install it when it is missing."""
    try:
        return importlib.import_module("rliable.metrics")
    except ImportError:
        raise QueryError(f"the statistics need rliable on the server: {INSTALL}") from None


# ------------------------------------------------------------------------ scores


@attrs.frozen
class Group:
    """A group's scores: ``matrix[r, t]`` is the score of run ``runs[t][r]`` on task ``t``."""

    key: tuple[Any, ...]
    label: str
    runs: list[list[str]]
    matrix: F64


@attrs.frozen
class Scored:
    tasks: list[Any]
    groups: list[Group]
    unscored: list[str]  # matching runs without a score


def _task_name(task: Any) -> str:
    return group_label(["t"], (task,))[2:]


def _references(normalize: Any, tasks: list[Any]) -> list[tuple[float, float]] | None:
    """Each task's (min, max) reference scores; QueryError naming a missing or bad one."""
    if normalize is None:
        return None

    def pair(value: Any, where: str) -> tuple[float, float]:
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in value)) or value[0] == value[1]:
            raise QueryError(f"normalize: {where} is [min, max], two different finite numbers, "
                             f"got {value!r:.80}")
        return float(value[0]), float(value[1])

    if isinstance(normalize, (list, tuple)):
        both = pair(normalize, "the references")
        return [both] * len(tasks)
    if not isinstance(normalize, dict):
        raise QueryError("normalize is [min, max] (every task) or {task: [min, max]}")
    missing = [_task_name(t) for t in tasks if _task_name(t) not in normalize]
    if missing:
        raise QueryError(f"normalize has no [min, max] for task {', '.join(map(repr, missing[:10]))}"
                         f" (it has {', '.join(map(repr, list(normalize)[:10]))})")
    return [pair(normalize[_task_name(t)], f"task {_task_name(t)!r}") for t in tasks]


def score_matrices(scores: RunScores, group_by: list[str], normalize: Any) -> Scored:
    """The runs' scores as one matrix per group (groups in the order of their values, runs
    by name within each task); QueryError when a group's tasks do not hold as many runs each
    (or a group lacks a task)."""
    unscored = [n for n, s in zip(scores.names, scores.scores, strict=True) if s is None]
    cells: dict[tuple[Any, ...], dict[Any, list[tuple[str, float]]]] = {}
    for name, key, task, score in zip(scores.names, scores.keys, scores.tasks, scores.scores,
                                      strict=True):
        if score is not None:
            cells.setdefault(key, {}).setdefault(task, []).append((name, score))
    if not cells:  # nothing to compare: no groups (a filter matching nothing is no error)
        return Scored([], [], unscored)
    tasks = sorted({t for by_task in cells.values() for t in by_task},
                   key=lambda t: group_order((t,)))
    references = _references(normalize, tasks)
    groups = []
    for key in sorted(cells, key=group_order):
        label = group_label(group_by, key)
        by_task = cells[key]
        absent = [_task_name(t) for t in tasks if t not in by_task]
        if absent:
            raise QueryError(f"group {label} has no scored run on task "
                             f"{', '.join(map(repr, absent[:10]))}: every group needs every task "
                             "(filter the tasks or the runs)")
        counts = {_task_name(t): len(by_task[t]) for t in tasks}
        if len(set(counts.values())) > 1:
            raise QueryError(f"group {label} has {counts} runs per task: the stratified bootstrap "
                             "needs as many runs on each task (filter out the extra seeds)")
        matrix = np.array([[score for _, score in by_task[t]] for t in tasks], np.float64).T
        if references is not None:
            low = np.array([r[0] for r in references])
            high = np.array([r[1] for r in references])
            matrix = (matrix - low) / (high - low)
        groups.append(Group(key, label, [[name for name, _ in by_task[t]] for t in tasks],
                            matrix))
    return Scored(tasks, groups, unscored)


# --------------------------------------------------------------------- bootstrap


def _resampled(rs: np.random.RandomState, matrix: F64, reps: int) -> Iterator[F64]:
    """Blocks of bootstrap repetitions of ``matrix`` (runs × tasks), each run resampled
    within its task (:func:`.bootstrap.draws`), as the scores drawn."""
    columns = np.arange(matrix.shape[1])
    for index in draws(rs, matrix.shape[0], (matrix.shape[1],), reps):
        yield matrix[index, columns]


def _replicate_aggregates(x: F64, names: Sequence[str], gamma: float) -> F64:
    """Each aggregate of each repetition (rows of ``x``: repetitions × runs × tasks)."""
    from scipy.stats import trim_mean

    flat = x.reshape(x.shape[0], -1)
    task_means = x.mean(axis=1)
    columns: dict[str, Callable[[], Any]] = {
        "iqm": lambda: trim_mean(flat, proportiontocut=0.25, axis=1),
        "median": lambda: np.median(task_means, axis=1),
        "mean": lambda: task_means.mean(axis=1),
        "optimality_gap": lambda: gamma - np.minimum(flat, gamma).mean(axis=1),
    }
    return np.stack([np.asarray(columns[name](), np.float64) for name in names], axis=1)


def _point_aggregates(metrics: ModuleType, matrix: F64, names: Sequence[str], gamma: float
                      ) -> list[float]:
    functions: dict[str, Callable[[F64], Any]] = {
        "iqm": metrics.aggregate_iqm, "median": metrics.aggregate_median,
        "mean": metrics.aggregate_mean,
        "optimality_gap": lambda m: metrics.aggregate_optimality_gap(m, gamma),
    }
    return [float(functions[name](matrix)) for name in names]


def _profile(matrix: F64, thresholds: F64, counts: F64) -> F64:
    """The fraction of scores above each threshold (rliable's score distribution) in each
    repetition (``counts``: how many times each run is drawn, repetitions × tasks × runs):
    the sum over tasks of counts · (score > threshold), exact small integers, over the
    number of scores."""
    above = (matrix[:, :, None] > thresholds).astype(np.float64)  # runs × tasks × thresholds
    total = sum(counts[:, t] @ above[:, t] for t in range(matrix.shape[1]))
    out: F64 = np.asarray(total) / matrix.size
    return out


def _improvement(x: F64, y: F64, x_index: npt.NDArray[np.int64],
                 y_index: npt.NDArray[np.int64]) -> F64:
    """P(X > Y) of each repetition (the runs drawn: ``x_index``, ``y_index``, repetitions ×
    runs × tasks), ties counting half, averaged over tasks: rliable's Mann-Whitney U /
    (runs_x · runs_y). The sign of every (x run, y run) pair is computed once; a repetition's
    sum of signs is then counts_x · signs · counts_y (exact small integers), and U = (pairs +
    that sum) / 2."""
    nx, ny = x.shape[0], y.shape[0]
    cx, cy = counts(x_index, nx), counts(y_index, ny)
    signs = np.sign(x[:, None, :] - y[None, :, :])  # nx × ny × tasks
    total = np.stack([((cx[:, t] @ signs[:, :, t]) * cy[:, t]).sum(axis=1)
                      for t in range(x.shape[1])], axis=1)
    out: F64 = (((nx * ny + total) / 2) / (nx * ny)).mean(axis=1)
    return out


def _pair_replicates(rs: np.random.RandomState, x: F64, y: F64, reps: int) -> F64:
    """P(X > Y) of each repetition of rliable's StratifiedIndependentBootstrap: per
    repetition, X's runs resampled within each task, then Y's."""
    nx, tasks = x.shape
    ny = y.shape[0]
    block = max(1, BLOCK // ((nx + ny) * tasks))
    out = []
    for start in range(0, reps, block):
        count = min(block, reps - start)
        if nx == ny:  # one draw of many repetitions is the same stream
            index = rs.randint(0, nx, (count, 2, nx, tasks))
            out.append(_improvement(x, y, index[:, 0], index[:, 1]))
            continue
        xs = np.empty((count, nx, tasks), np.int64)
        ys = np.empty((count, ny, tasks), np.int64)
        for rep in range(count):
            xs[rep] = rs.randint(0, nx, (nx, tasks))
            ys[rep] = rs.randint(0, ny, (ny, tasks))
        out.append(_improvement(x, y, xs, ys))
    return np.concatenate(out)


# ----------------------------------------------------------------------- answers


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _thresholds(profile: Any, groups: list[Group]) -> F64:
    if profile is True or profile == {}:
        profile = {"points": 51}
    if not isinstance(profile, dict):
        raise QueryError("profile is true or {\"thresholds\": [numbers]} or {\"points\": N}")
    given = profile.get("thresholds")
    if given is not None:
        if not isinstance(given, list) or not 1 <= len(given) <= MAX_THRESHOLDS or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in given):
            raise QueryError(f"profile thresholds are 1 to {MAX_THRESHOLDS} numbers")
        return np.array(given, np.float64)
    points = profile.get("points", 51)
    if isinstance(points, bool) or not isinstance(points, int) \
            or not 2 <= points <= MAX_THRESHOLDS:
        raise QueryError(f"profile points is an integer from 2 to {MAX_THRESHOLDS}")
    if not groups:
        return np.zeros(0)
    every = np.concatenate([g.matrix.ravel() for g in groups])
    return np.linspace(float(every.min()), float(every.max()), points)


def _group_index(side: Any, groups: list[Group], group_by: list[str]) -> int:
    """A group named by its label (``config/algo=ppo``) or its values (``{"config/algo":
    "ppo"}``)."""
    for i, group in enumerate(groups):
        if side == group.label or (isinstance(side, dict) and set(side) == set(group_by) and all(
                side[p] == v for p, v in zip(group_by, group.key, strict=True))):
            return i
    if isinstance(side, dict) and set(side) == set(group_by):
        side = group_label(group_by, tuple(side[p] for p in group_by))
    raise QueryError(f"no group {side!r:.80}; the groups are "
                     f"{', '.join(repr(g.label) for g in groups[:20])}")


def _pairs(improvement: Any, groups: list[Group], group_by: list[str]) -> list[tuple[int, int]]:
    if improvement == "all":
        if len(groups) * (len(groups) - 1) > MAX_PAIRS:
            raise QueryError(f"{len(groups)} groups make {len(groups) * (len(groups) - 1):,} "
                             f"pairs, more than {MAX_PAIRS}: name the pairs to compare")
        return [(i, j) for i in range(len(groups)) for j in range(len(groups)) if i != j]
    if not isinstance(improvement, list) or len(improvement) > MAX_PAIRS or not all(
            isinstance(p, list) and len(p) == 2 for p in improvement):
        raise QueryError(f"improvement is \"all\" or a list of at most {MAX_PAIRS} [group X, "
                         "group Y], each a label or {path: value}")
    return [(_group_index(x, groups, group_by), _group_index(y, groups, group_by))
            for x, y in improvement]


def compare(scores: RunScores, *, group_by: list[str], task_key: str | None, normalize: Any,
            aggregates: Sequence[str], reps: int, seed: int | None, gamma: float,
            profile: Any = None, improvement: Any = None) -> dict[str, Any]:
    """The statistics of each group (and, if asked, performance profiles and probabilities
    of improvement) as the read API answers them. Each part draws from its own
    ``RandomState(seed)`` (None: fresh entropy), groups or pairs in order."""
    metrics = rliable_metrics()
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown or not aggregates:
        raise QueryError(f"aggregates are some of {', '.join(AGGREGATES)}; got {aggregates!r:.80}")
    scored = score_matrices(scores, group_by, normalize)
    aggregates = list(dict.fromkeys(aggregates))

    def generator() -> np.random.RandomState:
        return np.random.RandomState(seed)

    rs = generator()
    groups = []
    for group in scored.groups:
        values = np.concatenate([_replicate_aggregates(x, aggregates, gamma)
                                 for x in _resampled(rs, group.matrix, reps)])
        low, high = interval(values)
        points = _point_aggregates(metrics, group.matrix, aggregates, gamma)
        groups.append({
            "key": {p: tagged(v) for p, v in zip(group_by, group.key, strict=True)},
            "label": group.label, "runs": int(group.matrix.size),
            "runs_per_task": int(group.matrix.shape[0]), "run_names": group.runs,
            "scores": group.matrix.T.tolist(),
            "aggregates": {name: {"value": _number(points[i]), "ci_low": _number(low[i]),
                                  "ci_high": _number(high[i])}
                           for i, name in enumerate(aggregates)},
        })
    answer: dict[str, Any] = {
        "metric": scores.series.metric, "kind": scores.series.kind,
        "scale": scores.series.scale, "group_by": group_by, "task_key": task_key,
        "tasks": [tagged(t) for t in scored.tasks], "normalized": normalize is not None,
        "reps": reps, "seed": seed, "confidence": CONFIDENCE, "gamma": gamma,
        "groups": groups, "runs_matched": scores.matched,
        "runs_scored": sum(g.matrix.size for g in scored.groups),
        "runs_unscored": scored.unscored[:100], "truncated": scores.truncated,
    }
    if profile is not None and profile is not False:
        thresholds = _thresholds(profile, scored.groups)
        rs = generator()
        curves = []
        for group in scored.groups:
            runs = group.matrix.shape[0]
            values = np.concatenate([_profile(group.matrix, thresholds, counts(index, runs))
                                     for index in draws(rs, runs, group.matrix.shape[1:],
                                                        reps)])
            low, high = interval(values)
            fraction = (group.matrix.ravel()[:, None] > thresholds).mean(axis=0)
            curves.append({"label": group.label, "fraction": fraction.tolist(),
                           "ci_low": low.tolist(), "ci_high": high.tolist()})
        answer["profile"] = {"thresholds": thresholds.tolist(), "groups": curves}
    if improvement is not None:
        pairs = _pairs(improvement, scored.groups, group_by)
        rs = generator()
        found = []
        for i, j in pairs:
            x, y = scored.groups[i].matrix, scored.groups[j].matrix
            low, high = interval(_pair_replicates(rs, x, y, reps)[:, None])
            found.append({"x": scored.groups[i].label, "y": scored.groups[j].label,
                          "value": float(metrics.probability_of_improvement(x, y)),
                          "ci_low": float(low[0]), "ci_high": float(high[0])})
        answer["improvement"] = found
    return answer
