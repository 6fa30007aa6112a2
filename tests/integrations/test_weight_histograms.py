"""``log_weight_histograms_every=N`` of the Lightning logger and the transformers callback: a
histogram of every parameter tensor, at the steps promised, read back from a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import metrana
from metrana.integrations.lightning import MetranaLogger
from metrana.integrations.transformers import MetranaCallback
from metrana.query import QueryClient
from metrana.server import ServerInfo
from tests.integrations.helpers import run_name
from tests.integrations.test_lightning import Regression, loaders, trainer
from tests.integrations.test_transformers import tiny_trainer

pytestmark = [pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning")]


def test_lightning_logs_weight_histograms_every_n_steps(live_server: ServerInfo) -> None:
    """Lightning logs metrics at steps 1, 3, ..., 15 (log_every_n_steps=2): with N=4 the
    weights are logged at the first and then at least 4 steps apart: 1, 5, 9, 13."""
    name = run_name("pl-hist")
    logger = MetranaLogger(workspace_name="ws", project_name="proj", run_name=name,
                           ingestion_url=live_server.url, log_weight_histograms_every=4)
    model = Regression()
    train, val = loaders()
    trainer(logger).fit(model, train, val)
    with QueryClient("ws", "proj", url=live_server.url) as client:
        for parameter, tensor in model.named_parameters():
            frame = client.fetch_histogram_series(name, f"weights/{parameter}")
            assert frame["step"].tolist() == [1, 5, 9, 13]
            assert [int(c.sum()) for c in frame["counts"]] == [tensor.numel()] * 4
            assert all(len(e) == 65 for e in frame["edges"])


def test_lightning_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="log_weight_histograms_every must be a positive int"):
        MetranaLogger(log_weight_histograms_every=0)


def test_transformers_logs_weight_histograms_every_n_steps(live_server: ServerInfo,
                                                           tmp_path: Path) -> None:
    """8 steps with N=4: every parameter at steps 4 and 8; the last is the trained model's."""
    name = run_name("hf-hist")
    callback = MetranaCallback(workspace_name="ws", project_name="proj", run_name=name,
                               ingestion_url=live_server.url, log_weight_histograms_every=4)
    hf = tiny_trainer(tmp_path, callback)
    hf.train()
    assert hf.model is not None
    parameters = dict(hf.model.named_parameters())
    with QueryClient("ws", "proj", url=live_server.url) as client:
        for parameter in ("bert.embeddings.word_embeddings.weight", "classifier.bias"):
            frame = client.fetch_histogram_series(name, f"weights/{parameter}")
            assert frame["step"].tolist() == [4, 8]
            final = metrana.Histogram.from_values(parameters[parameter])
            assert np.array_equal(frame["counts"][1], np.asarray(final.counts))
            assert np.array_equal(frame["edges"][1], final.edges)
    with pytest.raises(ValueError, match="log_weight_histograms_every must be a positive int"):
        MetranaCallback(log_weight_histograms_every=-1)
