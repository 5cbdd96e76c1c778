"""Recipes: tables to settings, one default release dtype, bad tables refused."""

from __future__ import annotations

from pathlib import Path

import pytest

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
