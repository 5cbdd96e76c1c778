"""A recipe file in, a trained, selected, saved and evaluated model folder out.

The one release workflow, shared by ``emotionnet train``, ``examples/train_fer2013.py`` and
what ``scripts/package_default_model.py`` expects to find: read the recipe
(:class:`Recipe`: ``[data]``, ``[model]``, ``[train]`` and ``[release]`` tables, see
``configs/fer2013_resnet18.toml``), train with the :class:`~emotionnet.Trainer`, keep the
best epoch on the validation split, save it in the release dtype, evaluate exactly what was
saved with every test-time augmentation the recipe names, and write the folder: weights,
``config.json``, the model card with the numbers, the reports, the recipe, the training
config and the history.

Example:
    >>> recipe = Recipe.from_mapping({"train": {"max_epochs": 2}, "release": {"tta": ["flip"]}})
    >>> recipe.train.max_epochs, recipe.dtype, recipe.tta, recipe.val_split
    (2, 'float16', ('flip',), 'public_test')
    >>> Recipe.from_mapping({"max_epochs": 3}).train.max_epochs  # a bare [train] table
    3
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._checks import check_choice
from .errors import InvalidArgumentError
from .models import ModelConfig
from .training import History, TrainConfig, read_config_file

if TYPE_CHECKING:
    from .metrics import EvaluationReport

__all__ = ["RELEASE_DTYPES", "Recipe", "train_recipe"]

RELEASE_DTYPES: Final[tuple[str, ...]] = ("float16", "bfloat16", "float32")
"""Weight dtypes a recipe's ``[release] dtype`` may name; ``float16`` is the default."""

_TABLES: Final[frozenset[str]] = frozenset({"data", "model", "train", "release"})


@dataclass(frozen=True)
class Recipe:
    """Everything a training run needs besides the data: model, training and release settings.

    Attributes:
        model: The model to build.
        train: The training settings.
        train_split: FER2013 split to train on (``[data] train_split``).
        val_split: Split to select the best epoch on and to report (``[data] val_split``).
        dtype: Weight dtype of the released folder (``[release] dtype``).
        tta: Test-time augmentations the released model is evaluated with
            (``[release] tta``); ``"none"`` is the plain single view.
        path: The recipe file, copied into the model folder (``None`` for a mapping).
        init: Weights to start from instead of a random initialisation (``[model] init``):
            a model folder or a state-dict file that fits ``model`` exactly, e.g. an earlier
            run's folder for a warm restart. ``None`` (the default) starts from the seed's
            random weights. A relative path in a recipe file is relative to that file.
    """

    model: ModelConfig
    train: TrainConfig
    train_split: str = "train"
    val_split: str = "public_test"
    dtype: str = "float16"
    tta: tuple[str, ...] = ("none",)
    path: Path | None = None
    init: Path | None = None

    @classmethod
    def from_mapping(cls, tables: Mapping[str, Any], *, path: Path | None = None) -> Recipe:
        """Build a recipe from its tables, or from a bare ``[train]`` table.

        Raises:
            InvalidArgumentError: If a table or value is invalid.
        """
        if not isinstance(tables.get("train"), Mapping):  # a bare TrainConfig table
            return cls(model=ModelConfig(), train=TrainConfig.from_dict(dict(tables)), path=path)
        unknown = sorted(set(tables) - _TABLES)
        if unknown:
            raise InvalidArgumentError(
                f"Unknown recipe tables {unknown}; a recipe has {sorted(_TABLES)}."
            )
        data = dict(tables.get("data") or {})
        release = dict(tables.get("release") or {})
        tta = release.get("tta", ["none"])
        if isinstance(tta, str) or not isinstance(tta, Sequence) or not tta:
            raise InvalidArgumentError(
                f"[release] tta must be a non-empty list of test-time augmentations, got {tta!r}."
            )
        from .inference import TTA_MODES

        model = dict(tables.get("model") or {})
        init = model.pop("init", None)
        if init is not None:
            if not isinstance(init, (str, os.PathLike)) or not os.fspath(init):
                raise InvalidArgumentError(
                    f"[model] init must be the path of a model folder or weights file, got "
                    f"{init!r}."
                )
            init = Path(init)
            if path is not None and not init.is_absolute():
                init = path.parent / init
        return cls(
            model=ModelConfig.from_dict(model),
            train=TrainConfig.from_dict(dict(tables["train"])),
            train_split=str(data.get("train_split", "train")),
            val_split=str(data.get("val_split", "public_test")),
            dtype=check_choice("[release] dtype", release.get("dtype", "float16"), RELEASE_DTYPES),
            tta=tuple(check_choice("[release] tta", mode, TTA_MODES) for mode in tta),
            path=path,
            init=init,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Recipe:
        """Read a recipe from a TOML or JSON file.

        Raises:
            FileNotFoundError: If there is no such file.
            InvalidArgumentError: If the file or a value in it is invalid.
        """
        return cls.from_mapping(read_config_file(path), path=Path(path))

    def with_train(self, **changes: Any) -> Recipe:
        """A copy with some training settings replaced (``None`` values are ignored).

        Example:
            >>> Recipe.from_mapping({}).with_train(max_epochs=5, lr=None).train.max_epochs
            5
        """
        kept = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **kept))

    @property
    def init_weights(self) -> Path | None:
        """The weights file :attr:`init` names (its ``model.safetensors`` for a folder).

        Example:
            >>> tables = {"model": {"init": "best.safetensors"}, "train": {}}
            >>> print(Recipe.from_mapping(tables).init_weights)
            best.safetensors
        """
        if self.init is None:
            return None
        return self.init / "model.safetensors" if self.init.is_dir() else self.init


def train_recipe(
    recipe: Recipe,
    train_data: Any,
    val_data: Any,
    output: str | os.PathLike[str],
    *,
    resume: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[History, dict[str, EvaluationReport]]:
    """Train a recipe and write the released model folder.

    The recipe's seed fixes the initial weights too (unless ``recipe.init`` names weights to
    start from), so a run is reproducible from its recipe alone. The best epoch's weights
    are saved in ``recipe.dtype``, loaded back and evaluated on ``val_data`` with eager
    PyTorch for each of ``recipe.tta`` (the reference numbers),
    and the folder gets ``model.safetensors``, ``config.json`` (with ``metadata``),
    ``README.md``, ``evaluation_<split>[_<tta>].json``, ``recipe.<ext>``,
    ``train_config.json``, ``history.json`` and ``history.csv``. Checkpoints go to
    ``recipe.train.checkpoint_dir``.

    Args:
        recipe: What to train.
        train_data: The training images (a FER2013 split or anything
            :func:`~emotionnet.as_tensors` takes).
        val_data: The validation images.
        output: The model folder.
        resume: Continue from the last checkpoint.
        metadata: Facts for ``config.json`` and the model card (``{"training": {...}}``).

    Returns:
        The history and the reports by name (``{}`` on processes other than rank 0 under
        torchrun, which train but do not save).
    """
    import torch

    from .models import build_model
    from .recognizer import EmotionRecognizer
    from .training import Trainer

    folder = Path(output)
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe.model, weights=recipe.init_weights)
    trainer = Trainer(model, train_data, val_data, recipe.train, model_config=recipe.model)
    history = trainer.fit(resume=resume)
    if not trainer.is_main_process:  # under torchrun, rank 0 evaluates and saves
        return history, {}
    trainer.load_best()
    EmotionRecognizer(
        model, recipe.model, device=trainer.device, metadata=dict(metadata or {})
    ).save_pretrained(folder, dtype=recipe.dtype)
    # Evaluate exactly what was saved (after the dtype round trip), with eager PyTorch.
    released = EmotionRecognizer.from_pretrained(folder, device=trainer.device, backend="torch")
    reports: dict[str, EvaluationReport] = {}
    for tta in recipe.tta:
        name = recipe.val_split if tta == "none" else f"{recipe.val_split} + TTA ({tta})"
        reports[name] = released.evaluate(val_data, tta=tta)
        suffix = "" if tta == "none" else f"_{tta}"
        reports[name].save_json(folder / f"evaluation_{recipe.val_split}{suffix}.json")
    released.save_pretrained(folder, evaluation=reports, dtype=recipe.dtype)
    if recipe.path is not None:
        shutil.copyfile(recipe.path, folder / f"recipe{recipe.path.suffix}")
    recipe.train.save(folder / "train_config.json")
    history.to_json(folder / "history.json")
    history.to_csv(folder / "history.csv")
    return history, reports
