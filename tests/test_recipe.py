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
