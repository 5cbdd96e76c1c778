"""Recipes: tables to settings, one default release dtype, bad tables refused."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emotionnet.errors import InvalidArgumentError
from emotionnet.recipe import Recipe

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_recipe() -> None:
    recipe = Recipe.from_file(ROOT / "configs" / "fer2013_resnet18.toml")
    assert recipe.model.stem == "middle" and recipe.train.lr == 0.1
    assert (recipe.train_split, recipe.val_split) == ("train", "public_test")
    assert recipe.dtype == "float16" and recipe.tta == ("none", "flip")
    assert recipe.path is not None and recipe.path.name == "fer2013_resnet18.toml"


def test_defaults_are_the_same_for_every_caller() -> None:
    # `emotionnet train` once saved float32 and the example float16 for a recipe without
    # [release]: both read the recipe here now.
    assert Recipe.from_mapping({"train": {}}).dtype == "float16"
    assert Recipe.from_mapping({"max_epochs": 2}).dtype == "float16"


def test_with_train_ignores_none_and_keeps_the_rest() -> None:
    recipe = Recipe.from_mapping({"train": {"lr": 0.05}})
    changed = recipe.with_train(lr=None, max_epochs=7)
    assert (changed.train.lr, changed.train.max_epochs) == (0.05, 7)
    assert recipe.train.max_epochs != 7  # frozen: a copy


@pytest.mark.parametrize(
    ("tables", "match"),
    [
        ({"train": {}, "trian": {}}, "Unknown recipe tables"),
        ({"train": {}, "release": {"dtype": "int8"}}, r"argument \[release\] dtype"),
        ({"train": {}, "release": {"tta": "flip"}}, "non-empty list"),
        ({"train": {}, "release": {"tta": ["sideways"]}}, r"argument \[release\] tta"),
        ({"train": {"lr": -1}}, "lr"),
    ],
)
def test_bad_tables(tables: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Recipe.from_mapping(tables)


def test_init_names_weights_relative_to_the_recipe_file(tmp_path: Path) -> None:
    recipe_file = tmp_path / "recipes" / "restart.toml"
    recipe_file.parent.mkdir()
    recipe_file.write_text('[model]\ninit = "../runs/first"\nstem = "small"\n[train]\n')
    (tmp_path / "runs" / "first").mkdir(parents=True)
    recipe = Recipe.from_file(recipe_file)
    assert recipe.model.stem == "small"  # init is not a ModelConfig field
    assert recipe.init == recipe_file.parent / "../runs/first"
    assert recipe.init_weights == recipe.init / "model.safetensors"  # a folder: its weights
    plain = Recipe.from_mapping({"model": {"init": "best.safetensors"}, "train": {}})
    assert plain.init_weights == Path("best.safetensors")  # a mapping: as given
    assert Recipe.from_mapping({"train": {}}).init_weights is None
    with pytest.raises(InvalidArgumentError, match=r"\[model\] init"):
        Recipe.from_mapping({"model": {"init": 3}, "train": {}})


def test_train_recipe_starts_from_the_init_weights(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from emotionnet import EmotionNet
    from emotionnet.recipe import train_recipe

    torch.manual_seed(5)
    start = EmotionNet(stem="imagenet")
    start.save_pretrained(tmp_path / "first")
    recipe = Recipe.from_mapping(
        {
            "model": {"stem": "imagenet", "init": str(tmp_path / "first")},
            # lr 1e-12 and no momentum: one epoch leaves the weights where they started.
            "train": {"max_epochs": 1, "batch_size": 8, "lr": 1e-12, "momentum": 0.0,
                      "weight_decay": 0.0, "warmup_epochs": 0, "progress": False,
                      "device": "cpu", "amp": "off", "mixup_alpha": 0.0},
            "release": {"dtype": "float32"},
        }
    )  # fmt: skip
    images = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8)
    data = (images, torch.arange(16) % 7)
    train_recipe(recipe, data, data, tmp_path / "second")
    before = start.state_dict()
    after = load_file(tmp_path / "second" / "model.safetensors")
    assert torch.allclose(after["conv1.weight"], before["conv1.weight"], atol=1e-6)
    assert torch.allclose(after["fc.weight"], before["fc.weight"], atol=1e-6)


def test_the_distilled_recipe_is_the_release_recipe_with_the_bundled_model_as_teacher() -> None:
    release = Recipe.from_file(ROOT / "configs" / "fer2013_resnet18.toml")
    distilled = Recipe.from_file(ROOT / "configs" / "fer2013_resnet18_distilled.toml")
    train = distilled.train
    assert train.distilling and train.distill_mode == "precomputed"
    assert train.distill_tta == "flip_crop"
    teacher = Path(str(train.distill_teacher))
    assert teacher.resolve() == (ROOT / "src" / "emotionnet" / "weights" / "default").resolve()
    assert (teacher / "config.json").is_file()
    targets = Path(str(train.distill_targets)).resolve()
    assert targets.parent == (ROOT / "data").resolve()  # git-ignored, carried to the device
    distill = {name for name in train.to_dict() if name.startswith("distill_")}
    unset = {name: getattr(release.train, name) for name in distill}
    assert dataclasses.replace(train, **unset) == release.train
    assert (distilled.model, distilled.tta, distilled.dtype) == (
        release.model,
        release.tta,
        release.dtype,
    )


@pytest.mark.slow
def test_train_recipe_distils_from_a_teacher_end_to_end(tmp_path: Path) -> None:
    # A few CPU steps with a teacher folder named relative to the recipe file, on a tiny
    # generated data set: the released folder says what the teacher was.
    import json

    import torch

    from emotionnet import EmotionNet
    from emotionnet.recipe import train_recipe

    torch.manual_seed(3)
    EmotionNet(stem="imagenet").save_pretrained(tmp_path / "teacher")
    recipe_file = tmp_path / "recipes" / "distilled.toml"
    recipe_file.parent.mkdir()
    recipe_file.write_text(
        '[model]\nstem = "imagenet"\n'
        "[train]\nmax_epochs = 2\nbatch_size = 8\nlr = 0.01\nwarmup_epochs = 0\n"
        'device = "cpu"\namp = "off"\nprogress = false\nmixup_alpha = 0.4\n'
        'distill_teacher = "../teacher"\ndistill_mode = "precomputed"\n'
        'distill_tta = "flip_crop"\ndistill_targets = "../targets.safetensors"\n'
        "distill_temperature = 2.0\ndistill_weight = 0.7\n"
        '[release]\ndtype = "float32"\n'
    )
    recipe = Recipe.from_file(recipe_file).with_train(checkpoint_dir=str(tmp_path / "ckpt"))
    assert Path(str(recipe.train.distill_teacher)) == recipe_file.parent / "../teacher"
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 48, 48), dtype=torch.uint8, generator=generator)
    data = (images, torch.arange(24) % 7)
    history, reports = train_recipe(recipe, data, data, tmp_path / "out")
    assert len(history) == 2 and reports
    assert (tmp_path / "targets.safetensors").is_file()  # computed once, kept for a resume
    training = json.loads((tmp_path / "out" / "config.json").read_text())["metadata"]["training"]
    assert "precomputed soft targets of" in training["distillation"]
    assert (
        "teacher views flip_crop, temperature 2, soft-loss weight 0.7" in training["distillation"]
    )
    assert Recipe.from_file(tmp_path / "out" / "recipe.toml").train.distill_weight == 0.7


# Recipe.save: the recipe as it ran, whatever changed after it was read.

RUN_ONLY = {"checkpoint_dir", "progress", "save_every"}


def _same_training(saved: Recipe, ran: Recipe) -> bool:
    """Equal but for where and how often checkpoints are written and progress bars."""
    keep = {name: getattr(saved.train, name) for name in RUN_ONLY}
    return dataclasses.replace(ran.train, **keep) == saved.train


def test_save_copies_an_unchanged_recipe_file_byte_for_byte(tmp_path: Path) -> None:
    committed = ROOT / "configs" / "fer2013_resnet18.toml"
    saved = (
        Recipe.from_file(committed).with_train(progress=False, save_every=10).save(tmp_path / "out")
    )
    assert saved == tmp_path / "out" / "recipe.toml"
    assert saved.read_bytes() == committed.read_bytes()


def test_save_writes_the_overrides_into_the_file_and_keeps_its_comments(tmp_path: Path) -> None:
    committed = ROOT / "configs" / "fer2013_resnet18.toml"
    ran = Recipe.from_file(committed).with_train(
        max_epochs=14, lr=0.02, seed=2, amp="off", checkpoint_dir=str(tmp_path / "ck")
    )
    ran = dataclasses.replace(ran, init=Path("runs/first"))  # as --init gives it: cwd-relative
    text = ran.save(tmp_path).read_text()
    lines = text.splitlines()
    assert "max_epochs = 14  # run: 117 in fer2013_resnet18.toml" in lines
    assert "lr = 0.02  # run: 0.1 in fer2013_resnet18.toml" in lines
    first = Path("runs/first").absolute()
    assert f'init = "{first}"  # run: unset in fer2013_resnet18.toml' in lines
    assert "batch_size = 128" in lines  # untouched lines stay as written
    assert "# emotionnet.training.TrainConfig" in lines
    assert str(tmp_path / "ck") not in text  # run-only settings are not written
    saved = Recipe.from_file(tmp_path / "recipe.toml")
    assert _same_training(saved, ran) and saved.model == ran.model
    assert saved.init == Path("runs/first").absolute()  # from any folder, the same weights
    assert len(text.splitlines()) == len(committed.read_text().splitlines()) + 3  # header + init


def test_save_adds_a_missing_table_and_drops_a_setting_set_back_to_none(tmp_path: Path) -> None:
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text("[train]\nmax_epochs = 3\ngrad_clip = 1.0\n")
    read = Recipe.from_file(recipe_file)
    ran = read.with_train(augment=dataclasses.replace(read.train.augment, crop=(40, 48)))
    ran = dataclasses.replace(ran, train=dataclasses.replace(ran.train, grad_clip=None))
    saved_file = ran.save(tmp_path / "out")
    text = saved_file.read_text()
    assert "[train.augment]" in text and "grad_clip" not in text
    saved = Recipe.from_file(saved_file)
    assert saved.train.augment.crop == (40, 48) and saved.train.grad_clip is None
    assert _same_training(saved, ran)


def test_save_falls_back_to_json_where_toml_cannot_be_edited(tmp_path: Path) -> None:
    # A value spread over lines cannot be rewritten line by line; a bare [train] table
    # cannot hold [model] init. Both are written whole as JSON, read back the same.
    spread = tmp_path / "spread.toml"
    spread.write_text("[train]\nmax_epochs = 3\n[train.augment]\nscale = [\n  0.8,\n  1.2,\n]\n")
    read = Recipe.from_file(spread)
    ran = read.with_train(augment=dataclasses.replace(read.train.augment, scale=(0.9, 1.1)))
    bare = tmp_path / "bare.toml"
    bare.write_text("max_epochs = 3\n")
    warm = dataclasses.replace(Recipe.from_file(bare), init=tmp_path / "first")
    gone = tmp_path / "gone.toml"  # deleted (or moved) while the run trained
    gone.write_text("[train]\nmax_epochs = 3\n")
    vanished = Recipe.from_file(gone).with_train(lr=0.03)
    gone.unlink()
    cases = ((ran, tmp_path / "a"), (warm, tmp_path / "b"), (vanished, tmp_path / "c"))
    for recipe, folder in cases:
        saved_file = recipe.save(folder)
        assert saved_file.name == "recipe.json"
        saved = Recipe.from_file(saved_file)
        assert _same_training(saved, recipe) and saved.init == recipe.init


def test_save_of_a_recipe_without_a_file_writes_json(tmp_path: Path) -> None:
    recipe = Recipe.from_mapping(
        {"model": {"stem": "small"}, "train": {"lr": 0.05}, "release": {"tta": ["flip"]}}
    )
    (tmp_path / "recipe.toml").write_text("[train]\nlr = 0.1\n")  # an earlier run's
    saved = Recipe.from_file(recipe.save(tmp_path))
    assert not (tmp_path / "recipe.toml").exists()  # one recipe per folder, the one that ran
    assert saved.model == recipe.model and saved.tta == ("flip",) and saved.train.lr == 0.05
    assert _same_training(saved, recipe)


@settings(max_examples=40, deadline=None)
@given(
    epochs=st.integers(1, 500),
    lr=st.floats(1e-6, 10.0, allow_nan=False),
    amp=st.sampled_from(["auto", "bf16", "fp16", "off"]),
    hflip=st.floats(0.0, 1.0),
    tta=st.lists(st.sampled_from(["none", "flip", "ten_crop", "flip_crop"]), min_size=1),
)
def test_a_saved_recipe_reads_back_as_the_recipe_that_ran(
    epochs: int, lr: float, amp: str, hflip: float, tta: list[str]
) -> None:
    committed = Recipe.from_file(ROOT / "configs" / "fer2013_resnet18.toml")
    augment = dataclasses.replace(committed.train.augment, hflip=hflip)
    ran = dataclasses.replace(
        committed.with_train(max_epochs=epochs, lr=lr, amp=amp, augment=augment), tta=tuple(tta)
    )
    with tempfile.TemporaryDirectory() as folder:
        saved_file = ran.save(folder)
        assert saved_file.suffix == ".toml"  # every one of these fits in the file's text
        saved = Recipe.from_file(saved_file)
    assert _same_training(saved, ran) and saved.tta == ran.tta and saved.model == ran.model
