"""transformers end to end: a tiny randomly initialised model trained by a real Trainer (no
hub access), its logs and config stored by a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import metrana
from metrana.integrations.transformers import MetranaCallback
from metrana.server import ServerInfo
from tests.integrations.helpers import attributes, run_name, series


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Random token sequences whose label is whether token 1 occurs."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(2, 30, (n, 8), generator=g)
        self.ids[::2, 3] = 1
        self.labels = (self.ids == 1).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_trainer(tmp_path: Path, callback: MetranaCallback) -> Trainer:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16,
                        num_labels=2)  # type: ignore[call-arg]  # a PretrainedConfig kwarg
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=8, logging_steps=2, eval_strategy="steps",
        eval_steps=4, per_device_train_batch_size=8, per_device_eval_batch_size=8,
        learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True,
        disable_tqdm=True, seed=0, dataloader_num_workers=0)
    return Trainer(model=BertForSequenceClassification(config), args=args,
                   train_dataset=Tokens(64, 1), eval_dataset=Tokens(16, 2), callbacks=[callback])


def series_name(key: str) -> str:
    return f"{key[5:]}{{evaluation=true}}" if key.startswith("eval_") else key


def test_trainer_logs_metrics_and_config(live_server: ServerInfo, tmp_path: Path) -> None:
    """8 steps, a log every 2 and an evaluation every 4: every number in the Trainer's
    log_history is a point at its global step (eval_* as evaluation=True without the prefix);
    the run's config holds the TrainingArguments and the model config; the callback's own run
    is closed at the end, and resumed by a later evaluate()."""
    name = run_name("hf")
    callback = MetranaCallback(workspace_name="ws", project_name="proj", run_name=name,
                               ingestion_url=live_server.url, close_strategy="CompleteAll",
                               config={"dataset": "tokens"})
    trainer = tiny_trainer(tmp_path, callback)
    trainer.train()
    session = callback.session
    assert session is not None
    first = session.get_metrics()
    assert first.sent == first.logged > 0 and first.invalid == 0
    with pytest.raises(Exception, match="closed"):
        session.log("x", 1.0)

    expected: dict[str, list[tuple[int, float]]] = {}
    for entry in trainer.state.log_history:
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)):
                points = expected.setdefault(series_name(key), [])
                if not points or points[-1][0] != entry["step"]:  # one value per step
                    points.append((int(entry["step"]), float(value)))
    assert {"loss", "learning_rate", "grad_norm", "epoch", "train_loss", "loss{evaluation=true}",
            "runtime{evaluation=true}"} <= set(expected)
    assert [s for s, _ in expected["loss"]] == [2, 4, 6, 8]
    assert [s for s, _ in expected["loss{evaluation=true}"]] == [4, 8]

    def stored() -> dict[str, list[tuple[int, float]]]:
        out = {}
        for s in series(live_server, name):
            labels = "".join(f"{{{k}={v}}}" for k, v in sorted(s["labels"].items()))
            out[s["metric_name"] + labels] = [(p["step"], p["value"]) for p in s["points"]]
        return out

    assert stored() == expected

    attrs = attributes(live_server, name)
    args = trainer.args
    assert attrs["config/args/learning_rate"] == args.learning_rate == 1e-3
    assert attrs["config/args/max_steps"] == 8
    assert attrs["config/args/output_dir"] == args.output_dir
    assert attrs["config/args/lr_scheduler_type"] == "linear"
    assert attrs["config/model/hidden_size"] == 16
    assert attrs["config/model/num_hidden_layers"] == 1
    assert attrs["config/dataset"] == "tokens"

    metrics = trainer.evaluate(metric_key_prefix="eval")
    resumed = callback.session
    assert resumed is not None and resumed is not session and resumed.resumed
    resumed.close()
    after = stored()
    # evaluated again at global step 8: the first evaluation there is kept, nothing invalid
    assert after["loss{evaluation=true}"] == expected["loss{evaluation=true}"]
    assert metrics["eval_loss"] == pytest.approx(after["loss{evaluation=true}"][-1][1])
    assert resumed.get_metrics().invalid == 0


def test_the_arguments_go_to_the_config_of_a_run_opened_by_init(live_server: ServerInfo,
                                                                tmp_path: Path) -> None:
    """Logging to the run of metrana.init(): the TrainingArguments and the model config are
    added to its config when training begins (next to the user's own)."""
    name = run_name("hf-init")
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, config={"dataset": "tokens"})
    trainer = tiny_trainer(tmp_path, MetranaCallback())
    trainer.train()
    metrana.close()
    attrs = attributes(live_server, name)
    assert attrs["config/args/learning_rate"] == trainer.args.learning_rate == 1e-3
    assert attrs["config/args/max_steps"] == 8
    assert attrs["config/model/hidden_size"] == 16
    assert attrs["config/dataset"] == "tokens"


def test_only_world_process_zero_logs(live_server: ServerInfo, tmp_path: Path) -> None:
    """On a process that is not the world's process zero the callback opens no run at all."""
    name = run_name("hf-rank1")
    callback = MetranaCallback(workspace_name="ws", project_name="proj", run_name=name,
                               ingestion_url=live_server.url)
    trainer = tiny_trainer(tmp_path, callback)
    # What a process of rank > 0 of a real job answers; the Trainer copies it into its state.
    trainer.is_world_process_zero = lambda: False  # type: ignore[method-assign]
    trainer.train()
    assert trainer.state.is_world_process_zero is False
    assert callback.session is None
    import httpx

    assert httpx.get(f"{live_server.url}/api/runs/ws/proj/{name}").status_code == 404
