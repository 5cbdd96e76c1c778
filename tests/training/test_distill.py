"""Knowledge distillation in the Trainer: the loss, mixed soft targets, teachers, exact resume."""

from __future__ import annotations

import math
from dataclasses import replace as dataclass_replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import (
    TRAIN,
    VAL,
    Kill,
    assert_same_weights,
    model_with_seed,
    quick,
    without_timing,
)

from emotionnet.augmentation import AugmentConfig
from emotionnet.errors import InvalidArgumentError
from emotionnet.models import EmotionNet
from emotionnet.preprocessing import normalize
from emotionnet.training import (
    TEACHER_TARGETS,
    TrainConfig,
    Trainer,
    distillation_loss,
    load_checkpoint,
    precompute_teacher_targets,
)
from emotionnet.training.batches import BatchSource

LABELS = tuple(f"class_{i}" for i in range(4))  # the students' labels: TinyNet, 4 classes
NO_AUGMENT = AugmentConfig(hflip=0.0, rotation=0.0, translate=0.0, scale=(1.0, 1.0), erasing=0.0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random teacher for 16x16 faces of 4 classes, saved as a model folder."""
    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("teacher")
    teacher = EmotionNet(stem="imagenet", num_classes=4, input_size=16, labels=LABELS)
    with torch.no_grad():  # a confident teacher: its soft targets differ from the labels
        teacher.fc.weight.mul_(20)
    teacher.save_pretrained(folder)
    return folder


# ---- the loss ------------------------------------------------------------------------------


def test_distillation_loss_matches_a_hand_computation() -> None:
    student = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1])
    temperature, weight, smoothing = 2.0, 0.3, 0.1

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    # Hard part: cross-entropy against the smoothed one-hot labels.
    smoothed = np.full((2, 3), smoothing / 3) + np.eye(3)[labels] * (1 - smoothing)
    hard = -(smoothed * np.log(softmax(student))).sum(axis=1).mean()
    # Soft part: KL(teacher || student at T), summed over classes, averaged over the batch.
    soft_student = softmax(student / temperature)
    kl = (teacher * np.log(teacher / soft_student)).sum(axis=1).mean()
    expected = (1 - weight) * hard + weight * temperature**2 * kl

    got = distillation_loss(
        torch.tensor(student, dtype=torch.float32),
        torch.tensor(labels),
        torch.tensor(teacher, dtype=torch.float32),
        temperature=temperature,
        weight=weight,
        label_smoothing=smoothing,
    )
    assert math.isclose(float(got), expected, rel_tol=1e-5)
    # weight=0 is exactly the plain training loss; a teacher equal to the student adds nothing.
    plain = torch.nn.functional.cross_entropy(torch.tensor(student).float(), torch.tensor(labels))
    logits = torch.tensor(student, dtype=torch.float32)
    probs = torch.tensor(teacher, dtype=torch.float32)
    assert torch.equal(distillation_loss(logits, torch.tensor(labels), probs, weight=0.0), plain)
    same = torch.softmax(logits / 3.0, dim=1)
    only_soft = distillation_loss(logits, torch.tensor(labels), same, temperature=3.0, weight=1.0)
    assert abs(float(only_soft)) < 1e-6


# ---- soft targets mixed like the images ----------------------------------------------------


def _source(soft: torch.Tensor | None, **mix: float) -> BatchSource:
    images, targets = TRAIN
    return BatchSource(
        images.unsqueeze(1),
        targets,
        batch_size=16,
        seed=3,
        rank=0,
        world_size=1,
        augment=NO_AUGMENT,
        mean=0.5,
        std=0.25,
        num_classes=4,
        mixup_alpha=mix.get("mixup_alpha", 0.0),
        cutmix_alpha=mix.get("cutmix_alpha", 0.0),
        mix_prob=1.0,
        mix_switch_prob=0.5,
        mix_until=10,
        soft_targets=soft,
    )


@pytest.mark.parametrize("mix", [{"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}])
def test_soft_targets_are_mixed_with_the_images_lambda_and_partner(
    mix: dict[str, float],
) -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = torch.softmax(torch.randn(len(TRAIN[1]), 4, generator=generator) * 3, dim=1)
    with_teacher, without = _source(teacher, **mix), _source(None, **mix)
    lams = []
    for key in [(0, 0), (0, 3), (1, 2)]:
        batch, hard, soft = with_teacher[key]
        plain_batch, plain_hard = without[key]
        # The images and the labels are mixed exactly as without a teacher ...
        assert torch.equal(batch, plain_batch) and torch.equal(hard, plain_hard)
        # ... and the teacher's rows of the same faces with the same lambda and partner.
        chosen = with_teacher.epoch_order(key[0])[key[1] * 16 : (key[1] + 1) * 16]
        labels = torch.nn.functional.one_hot(TRAIN[1][chosen], 4).float()
        differ = (labels != labels.flip(0)).any(dim=1)
        # hard = lam * labels + (1 - lam) * partner's: read lam off a row whose labels differ
        row = int(torch.nonzero(differ)[0])
        label = int(labels[row].argmax())
        lam = float(hard[row, label] - labels.flip(0)[row, label]) / float(
            labels[row, label] - labels.flip(0)[row, label]
        )
        if "mixup_alpha" in mix:  # the images: lam * image + (1 - lam) * partner
            original = normalize(TRAIN[0][chosen].unsqueeze(1), 0.5, 0.25)
            expected_images = original * lam + original.flip(0) * (1 - lam)
            torch.testing.assert_close(batch, expected_images, rtol=0, atol=1e-5)
        expected = teacher[chosen] * lam + teacher[chosen].flip(0) * (1 - lam)
        torch.testing.assert_close(soft, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(16))
        lams.append(lam)
    assert len({round(lam, 6) for lam in lams}) > 1  # several draws, each followed


# ---- a run with a teacher ------------------------------------------------------------------


def distilled(folder: Path, teacher: Path, mode: str, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "max_epochs": 2,
        "mixup_alpha": 0.4,
        "cutmix_alpha": 1.0,
        "mix_prob": 0.8,
        "distill_teacher": str(teacher),
        "distill_mode": mode,
        "distill_temperature": 2.0,
        "distill_weight": 0.7,
        "checkpoint_dir": str(folder),
    }
    if mode == "precomputed":
        settings["distill_tta"] = "flip"
    settings.update(overrides)
    return quick(**settings)


@pytest.mark.parametrize("mode", ["online", "precomputed"])
def test_a_run_learns_from_the_teacher(tmp_path: Path, teacher_dir: Path, mode: str) -> None:
    config = distilled(tmp_path / "run", teacher_dir, mode)
    history = Trainer(model_with_seed(), TRAIN, VAL, config).fit()
    assert len(history) == 2 and all(math.isfinite(row["train_loss"]) for row in history)
    plain = Trainer(
        model_with_seed(), TRAIN, VAL, quick(**{**config.to_dict(), "checkpoint_dir": None,
        "distill_teacher": None, "distill_mode": "online", "distill_tta": "none"})
    ).fit()  # fmt: skip
    assert history[0]["train_loss"] != plain[0]["train_loss"]  # the teacher changed the loss
    targets_file = tmp_path / "run" / TEACHER_TARGETS
    assert targets_file.is_file() is (mode == "precomputed")


@pytest.mark.parametrize("mode", ["online", "precomputed"])
def test_resume_with_a_teacher_continues_exactly(
    tmp_path: Path, teacher_dir: Path, mode: str
) -> None:
    config = distilled(tmp_path / "straight", teacher_dir, mode, max_epochs=3)
    straight = model_with_seed()
    history = Trainer(straight, TRAIN, VAL, config).fit()

    killed = dataclass_replace(config, checkpoint_dir=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        Trainer(model_with_seed(), TRAIN, VAL, killed, callbacks=[Kill(after_epoch=1)]).fit()
    assert load_checkpoint(tmp_path / "killed" / "last.ckpt")["epoch"] == 1
    resumed_model = model_with_seed(seed=99)
    resumed = Trainer(resumed_model, TRAIN, VAL, killed).fit(resume=True)
    assert_same_weights(resumed_model, straight)
    assert without_timing(resumed) == without_timing(history)


def test_dataloader_workers_carry_the_precomputed_targets(
    tmp_path: Path, teacher_dir: Path
) -> None:
    config = distilled(tmp_path / "loop", teacher_dir, "precomputed", monitor="train_loss")
    in_loop = model_with_seed()
    Trainer(in_loop, TRAIN, None, config).fit()
    workers = model_with_seed()
    with_workers = dataclass_replace(config, checkpoint_dir=str(tmp_path / "w"), num_workers=1)
    Trainer(workers, TRAIN, None, with_workers).fit()
    assert_same_weights(in_loop, workers)


# ---- precomputed targets -------------------------------------------------------------------


def test_precomputed_targets_are_found_by_face_in_any_subset(
    tmp_path: Path, teacher_dir: Path
) -> None:
    images, labels = TRAIN
    path = precompute_teacher_targets(teacher_dir, images, tmp_path / "t.safetensors", tta="flip")
    # Without the teacher, a run on a reordered subset of the faces reads its rows by face.
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))[:48]
    subset = (images[keep], labels[keep])
    config = quick(
        max_epochs=1, distill_mode="precomputed", distill_targets=str(path), distill_tta="flip"
    )
    history = Trainer(model_with_seed(), subset, VAL, config).fit()
    assert math.isfinite(history[-1]["train_loss"])

    # Faces the file lacks, without a teacher to compute them: a clear error.
    with pytest.raises(InvalidArgumentError, match=r"lack 32 of the 32 training faces"):
        Trainer(model_with_seed(), VAL, VAL, config).fit()
    # Another view set than the file's: refused, naming both.
    other = dataclass_replace(config, distill_tta="flip_crop")
    with pytest.raises(InvalidArgumentError, match=r"tta='flip'.*'flip_crop'"):
        Trainer(model_with_seed(), subset, VAL, other).fit()
    # With the teacher, the missing faces are added to the file.
    before = path.stat().st_size
    adding = dataclass_replace(config, distill_teacher=str(teacher_dir))
    Trainer(model_with_seed(), VAL, VAL, adding).fit()
    assert path.stat().st_size > before


def test_precomputing_in_chunks_gives_the_targets_of_one_pass(
    tmp_path: Path, teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from emotionnet.training import distill

    whole = precompute_teacher_targets(teacher_dir, TRAIN[0], tmp_path / "whole.safetensors")
    monkeypatch.setattr(distill, "_PRECOMPUTE_CHUNK", 40)  # written after 40, 80 and 96 faces
    chunked = precompute_teacher_targets(teacher_dir, TRAIN[0], tmp_path / "chunks.safetensors")
    one, parts = load_file(str(whole)), load_file(str(chunked))
    assert torch.equal(one["keys"], parts["keys"])
    torch.testing.assert_close(one["logits"], parts["logits"])


def test_a_file_of_another_teacher_is_refused(tmp_path: Path, teacher_dir: Path) -> None:
    path = precompute_teacher_targets(teacher_dir, TRAIN[0], tmp_path / "t.safetensors")
    torch.manual_seed(8)
    other = tmp_path / "other"
    EmotionNet(stem="imagenet", num_classes=4, input_size=16, labels=LABELS).save_pretrained(other)
    config = quick(
        max_epochs=1,
        distill_mode="precomputed",
        distill_teacher=str(other),
        distill_targets=str(path),
        distill_tta="flip_crop",
    )
    with pytest.raises(InvalidArgumentError, match="computed by another teacher"):
        Trainer(model_with_seed(), TRAIN, VAL, config).fit()


def test_a_teacher_of_other_classes_or_sizes_is_refused(tmp_path: Path, teacher_dir: Path) -> None:
    config = quick(max_epochs=1, distill_teacher=str(teacher_dir))
    small = (TRAIN[0][:, :8, :8].contiguous(), TRAIN[1])
    no_val = dataclass_replace(config, monitor="train_loss")
    with pytest.raises(InvalidArgumentError, match=r"takes 16x16 images.*8x8"):
        Trainer(model_with_seed(), small, None, no_val).fit()
    seven = EmotionNet(stem="imagenet", num_classes=7, input_size=16)
    seven.save_pretrained(tmp_path / "seven")
    for folder, match in ((tmp_path / "seven", "same classes"), (tmp_path, "not a model folder")):
        other = dataclass_replace(config, distill_teacher=str(folder))
        with pytest.raises(InvalidArgumentError, match=match):
            Trainer(model_with_seed(), TRAIN, VAL, other).fit()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"distill_targets": "t.safetensors"}, "distill_mode='precomputed'"),
        ({"distill_tta": "flip"}, "distill_mode='precomputed'"),
        ({"distill_weight": 1.5}, "distill_weight"),
        ({"distill_temperature": 0}, "distill_temperature"),
        ({"distill_mode": "offline"}, "distill_mode"),
    ],
)
def test_distillation_settings_are_checked(settings: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        TrainConfig(**settings)  # type: ignore[arg-type]
    assert not TrainConfig().distilling
    assert TrainConfig(distill_teacher="folder").distilling
