"""Lightning end to end: a 2-epoch fit on random tensors, its metrics and hyper-parameters
stored by a real server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger
from torch.utils.data import DataLoader, TensorDataset

import metrana
from metrana.integrations.lightning import MetranaLogger
from metrana.server import ServerInfo
from tests.integrations.helpers import attributes, run_name, series

# Lightning's own warnings: a tiny CPU fit has few dataloader workers, and lightning 2.6 still
# uses torch's deprecated LeafSpec.
pytestmark = [pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning")]


class Regression(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, optimizer: str = "sgd") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        self.log("batch_idx", float(batch_idx))
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


class Capture(Logger):
    """What Lightning handed its loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return (DataLoader(TensorDataset(x, y), batch_size=8),
            DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8))


def trainer(*loggers: Logger, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=list(loggers),
                      log_every_n_steps=2, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def test_fit_logs_every_metric_once_per_step(live_server: ServerInfo) -> None:
    """Every value Lightning passed to log_metrics is a point at its step, the first value per
    (key, step) (Lightning sends `epoch` with every call); hyper-parameters become the run's
    config; the logger's own run is closed by finalize and resumed by a later validate()."""
    name = run_name("pl")
    logger = MetranaLogger(workspace_name="ws", project_name="proj", run_name=name,
                           ingestion_url=live_server.url, close_strategy="CompleteAll",
                           config={"data": "random"})
    assert logger.name == "proj" and logger.version == name
    capture = Capture()
    model = Regression()
    train, val = loaders()
    fit = trainer(logger, capture)
    fit.fit(model, train, val)
    session = logger.session
    assert isinstance(session, metrana.Session)
    metrics = session.get_metrics()
    assert metrics.sent == metrics.logged > 0 and metrics.invalid == 0
    with pytest.raises(metrana.MetranaLoggerClosedError):
        session.log("x", 1.0)

    expected: dict[str, list[tuple[int, float]]] = {}
    repeats = 0
    for step, values in capture.calls:
        assert step is not None
        for key, value in values.items():
            points = expected.setdefault(key, [])
            if points and points[-1][0] == step:
                repeats += 1
                assert points[-1][1] == value  # Lightning repeats, never contradicts
                continue
            points.append((step, float(value)))
    assert repeats > 0  # the same key at one step: what the logger must not send twice
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "epoch", "batch_idx"} <= set(expected)
    assert [s for s, _ in expected["train_loss_step"]] == [1, 3, 5, 7, 9, 11, 13, 15]
    assert len(expected["val_loss"]) == 2

    stored = {s["metric_name"]: [(p["step"], p["value"]) for p in s["points"]]
              for s in series(live_server, name)}
    assert stored == expected
    assert attributes(live_server, name) == {"config/lr": 0.05, "config/hidden": 8,
                                             "config/optimizer": "sgd", "config/data": "random"}

    fit.validate(model, val)
    resumed = logger.session
    assert resumed is not None and resumed is not session and resumed.resumed
    assert resumed.get_metrics().invalid == 0
    after = {s["metric_name"]: [(p["step"], p["value"]) for p in s["points"]]
             for s in series(live_server, name)}
    # validate() logs at the next step (16): the same model, so the same val_loss
    assert after == {**stored, "val_loss": [*stored["val_loss"], (16, stored["val_loss"][-1][1])],
                     "epoch": [*stored["epoch"], (16, 2.0)]}


def test_logger_on_the_open_run_and_on_other_ranks(live_server: ServerInfo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without init arguments the logger logs to metrana.init's run and leaves it open; its
    hyper-parameters are added to that run's config. On a rank other than 0 it logs nothing
    and experiment is a no-op object."""
    from lightning.pytorch.utilities import rank_zero_only

    name = run_name("pl-global")
    run = metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                       ingestion_url=live_server.url, close_strategy="CompleteAll")
    logger = MetranaLogger(prefix="pl/")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0, "text": "x"}, step=3)
    logger.log_metrics({"loss": 0.5})  # no step: the key's next one
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"loss": 9.0}, step=10)
    # Lightning's no-op object (it answers every attribute, so isinstance of a runtime
    # protocol cannot tell it apart: check it is not the run)
    assert logger.experiment is not run and type(logger.experiment).__name__ == "_DummyExperiment"
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    logger.finalize("success")
    assert logger.experiment is run and run.get_metrics().sent == 2
    metrana.close()
    stored = {s["metric_name"]: [(p["step"], p["value"]) for p in s["points"]]
              for s in series(live_server, name)}
    assert stored == {"pl/loss": [(3, 1.0), (4, 0.5)]}
    attributes = httpx.get(f"{live_server.url}/api/runs/ws/proj/{name}").json()["attributes"]
    assert {path: a["value"] for path, a in attributes.items() if path.startswith("config/")} \
        == {"config/lr": 0.1}
