"""The Trainer's handlers (best weights, early stopping) and stateful callbacks across resume."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_training import TRAIN, VAL, model_with_seed, quick

from emotionnet.errors import InvalidArgumentError
from emotionnet.training import BestWeights, EarlyStopping, Trainer, load_checkpoint
from emotionnet.training.checkpoint import save_checkpoint_file

scores = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30)


@given(values=scores, patience=st.integers(1, 5))
def test_early_stopping_counts_epochs_since_the_best(values: list[float], patience: int) -> None:
    stopper = EarlyStopping(patience)
    stopped_at = None
    for epoch, value in enumerate(values, start=1):
        if stopper.update(epoch, value) and stopped_at is None:
            stopped_at = epoch
    best_epoch = values.index(max(values)) + 1  # the first epoch reaching the maximum
    assert stopper.best == max(values) and stopper.best_epoch == best_epoch
    # Hand-computed: epochs since the last strict improvement.
    since, best = 0, -math.inf
    first_stop = None
    for epoch, value in enumerate(values, start=1):
        since, best = (0, value) if value > best else (since + 1, best)
        if since >= patience and first_stop is None:
            first_stop = epoch
    assert stopper.bad_epochs == since and stopped_at == first_stop


def test_early_stopping_state_round_trips_and_ignores_another_metric() -> None:
    stopper = EarlyStopping(2, monitor="val_loss")
    for epoch, loss in enumerate([0.9, 0.8, 0.85], start=1):
        stopper.update(epoch, loss)
    again = EarlyStopping(2, monitor="val_loss")
    again.load_state_dict(stopper.state_dict())
    assert again.state_dict() == {
        "metric": "val_loss",
        "best": 0.8,
        "best_epoch": 2,
        "bad_epochs": 1,
    }
    assert again.update(4, 0.81) and again.triggered  # the second bad epoch in a row
    other = EarlyStopping(2)  # val_accuracy: a val_loss state does not apply
    other.load_state_dict(stopper.state_dict())
    assert other.state_dict()["best"] is None and other.bad_epochs == 0
    never = EarlyStopping(None)
    assert not any(never.update(epoch, 0.5) for epoch in range(1, 20)) and never.bad_epochs == 18
    with pytest.raises(InvalidArgumentError, match="patience"):
        EarlyStopping(0)
    with pytest.raises(InvalidArgumentError, match="monitor"):
        EarlyStopping(1, monitor="accuracy_top5")


def test_best_weights_keeps_the_best_epoch_and_a_nan_never_wins() -> None:
    best = BestWeights()
    assert [best.update(e, v) for e, v in enumerate([0.5, math.nan, 0.7, 0.7], start=1)] == [
        True,
        False,
        True,
        False,
    ]
    assert best.state_dict() == {"metric": "val_accuracy", "value": 0.7, "epoch": 3}
    other = BestWeights("val_loss")
    other.load_state_dict(best.state_dict())
    assert other.value is None and other.epoch is None


def test_the_trainer_writes_its_handlers_state_into_the_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(
        model_with_seed(), TRAIN, VAL, quick(max_epochs=2, checkpoint_dir=str(tmp_path))
    )
    trainer.fit()
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["best"] == trainer.best_weights.state_dict()
    assert state["bad_epochs"] == trainer.early_stopping.bad_epochs
    assert trainer.best_epoch == trainer.best_weights.epoch == trainer.early_stopping.best_epoch
    weights = trainer.best_weights.weights
    assert weights is not None and all(t.device.type == "cpu" for t in weights.values())


class SpareBuffer(torch.nn.Module):
    """TinyNet with a buffer its forward pass never reads: poisoning it leaves the metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.net = model_with_seed()
        self.register_buffer("spare", torch.zeros(3))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(inputs)
        return logits


class PoisonEpoch:
    """Puts a NaN in the model's spare buffer for one epoch (as a diverging layer would)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        spare = trainer.model.get_buffer("spare")
        spare.fill_(math.nan if epoch == self.epoch else 0.0)


def test_best_weights_are_never_non_finite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 29: an epoch whose weights held a NaN was kept as "best", and the library's own
    # loader then refused best.safetensors.
    from safetensors.torch import load_file

    config = quick(max_epochs=3, monitor="train_loss", checkpoint_dir=str(tmp_path))
    trainer = Trainer(SpareBuffer(), TRAIN, VAL, config, callbacks=[PoisonEpoch(3)])
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        history = trainer.fit()
    losses = [row["train_loss"] for row in history]
    assert losses[2] < min(losses[:2]), losses  # epoch 3 had the best metric ...
    assert trainer.best_epoch == 2  # ... but its weights were not finite: epoch 2 stays best
    assert "epoch 3: train_loss" in caplog.text and "spare" in caplog.text
    saved = load_file(str(tmp_path / "best.safetensors"))
    assert all(bool(torch.isfinite(tensor).all()) for tensor in saved.values())
    assert load_checkpoint(tmp_path / "last.ckpt")["best"]["epoch"] == 2
    weights = trainer.best_weights.weights
    assert weights is not None and torch.equal(weights["spare"], torch.zeros(3))
    trainer.load_best()  # the loaded weights are the finite ones
    assert bool(torch.isfinite(trainer.model.get_buffer("spare")).all())


class EpochCounter:
    """A user callback with state: how many epochs it has seen, over resumes."""

    def __init__(self) -> None:
        self.seen = 0

    def on_validation_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.seen += 1  # before the checkpoint: last.ckpt holds this epoch's count

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "tensor": torch.tensor([self.seen])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])
        assert torch.equal(state["tensor"], torch.tensor([self.seen]))


def test_a_stateful_callback_is_saved_and_restored_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = EpochCounter()
    config = quick(max_epochs=3, checkpoint_dir=str(tmp_path))
    Trainer(model_with_seed(), TRAIN, VAL, config, callbacks=[first]).fit()
    assert first.seen == 3
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["callbacks"] == {"0:EpochCounter": {"seen": 3, "tensor": torch.tensor([3])}}

    # Stop after one epoch, resume with a fresh callback: it continues from its saved state.
    folder = tmp_path / "resumed"
    stopped = EpochCounter()

    class StopAfterOne:
        def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
            trainer.should_stop = True

    cut = quick(max_epochs=3, checkpoint_dir=str(folder))
    Trainer(model_with_seed(), TRAIN, VAL, cut, callbacks=[stopped, StopAfterOne()]).fit()
    state = load_checkpoint(folder / "last.ckpt")
    state["should_stop"] = False  # the stop came from a test callback, not early stopping
    with (folder / "edited.ckpt").open("wb") as handle:
        save_checkpoint_file(state, handle)
    resumed = EpochCounter()
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, cut, callbacks=[resumed]).fit(
            resume=folder / "edited.ckpt"
        )
    assert resumed.seen == 3  # 1 restored + epochs 2 and 3

    # A callback the checkpoint holds no state for starts afresh, with a warning.
    late = EpochCounter()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emotionnet.training"):
        Trainer(model_with_seed(), TRAIN, VAL, cut, callbacks=[StopAfterOne(), late]).fit(
            resume=folder / "edited.ckpt"
        )
    assert "no state for the callback 1:EpochCounter" in caplog.text and late.seen == 1
