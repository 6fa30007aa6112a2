"""A real 2-process job for test_distributed.py: Lightning's DDP strategy on 2 CPU processes
(gloo), every rank using the integrations.

    python ddp_job.py INGESTION_URL LIGHTNING_RUN RL_RUN

Lightning's launcher starts rank 1 by running this same command again. Each rank logs values
and metric names that carry its rank, so the test can tell whose data reached the server:

- Lightning: ``MetranaLogger`` opening its own run (LIGHTNING_RUN), ``train_loss`` and
  ``rank<r>/marker`` logged by every rank;
- gymnasium: every rank opens a session on RL_RUN (as ``metrana.init`` on every rank would)
  and logs episodes through ``log_episode_statistics`` (prefix ``rank<r>``) and
  ``MetranaEpisodeStatistics`` (prefix ``wrapper<r>``).
"""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import metrana
from metrana.integrations.gymnasium import MetranaEpisodeStatistics, log_episode_statistics
from metrana.integrations.lightning import MetranaLogger

URL, LIGHTNING_RUN, RL_RUN = sys.argv[1:4]


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters({"width": 4})
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.log(f"rank{self.global_rank}/marker", float(self.global_rank))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        rank = self.global_rank
        with metrana.session(workspace_name="ws", project_name="proj", run_name=RL_RUN,
                             ingestion_url=URL, close_strategy="CompleteAll") as run:
            infos = {"episode": {"r": np.array([100.0 * rank + 1, 100.0 * rank + 2]),
                                 "l": np.array([1, 2]), "t": np.array([0.1, 0.2])},
                     "_episode": np.array([True, True])}
            log_episode_statistics(infos, rl_step=10, session=run, prefix=f"rank{rank}")
            env = MetranaEpisodeStatistics(gym.make("CartPole-v1"), session=run,
                                           prefix=f"wrapper{rank}")
            env.reset(seed=rank)
            finished = 0
            while finished < 3:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    finished += 1
                    env.reset()
        print(f"rank {rank} done", flush=True)


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)
    logger = MetranaLogger(workspace_name="ws", project_name="proj", run_name=LIGHTNING_RUN,
                           ingestion_url=URL, close_strategy="CompleteAll")
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                         logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Model(), data)


if __name__ == "__main__":
    main()
