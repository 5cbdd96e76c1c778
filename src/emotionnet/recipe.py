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
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._atomic import atomic_write_text
from ._checks import check_choice
from ._io import read_text_file
from .errors import InvalidArgumentError
from .models import ModelConfig
from .training import History, TrainConfig, read_config_file
from .training.config import _RUN_ONLY_SETTINGS

if TYPE_CHECKING:
    from .metrics import EvaluationReport

__all__ = ["RELEASE_DTYPES", "Recipe", "train_recipe"]

RELEASE_DTYPES: Final[tuple[str, ...]] = ("float16", "bfloat16", "float32")
"""Weight dtypes a recipe's ``[release] dtype`` may name; ``float16`` is the default."""

_TABLES: Final[frozenset[str]] = frozenset({"data", "model", "train", "release"})

# Where and how a run reports, not what it trains: never written into a saved recipe.
_RUN_ONLY: Final[frozenset[tuple[str, ...]]] = frozenset(
    ("train", name) for name in _RUN_ONLY_SETTINGS
)
# [train] settings that name files: a relative path in a recipe file is relative to the file.
_TRAIN_PATHS: Final[tuple[str, ...]] = ("distill_teacher", "distill_targets")
_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


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

    Knowledge distillation is set in ``[train]`` (``distill_teacher``, ``distill_mode``,
    ``distill_targets``, ``distill_temperature``, ``distill_weight``, ``distill_tta``: see
    :class:`~emotionnet.training.TrainConfig`); a relative ``distill_teacher`` or
    ``distill_targets`` in a recipe file is relative to that file, as ``init`` is. See
    ``configs/fer2013_resnet18_distilled.toml``.
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
        from .tta import TTA_MODES

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
        train = dict(tables["train"])
        for name in _TRAIN_PATHS:  # relative to the recipe file, like [model] init
            value = train.get(name)
            if path is not None and isinstance(value, str) and value and not os.path.isabs(value):
                train[name] = os.fspath(path.parent / value)
        return cls(
            model=ModelConfig.from_dict(model),
            train=TrainConfig.from_dict(train),
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

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the recipe as it runs into ``folder``: ``recipe.toml`` or ``recipe.json``.

        A recipe read from a file and unchanged since is copied as it is, comments included.
        Settings changed after reading (command-line overrides through :meth:`with_train`,
        another ``init``) are written into that file's text, each marked ``# run:`` with the
        value the file had, so the saved recipe trains exactly what ran. Where a TOML file
        cannot be edited that way (a value TOML cannot hold, a multi-line value), and for a
        recipe built from a mapping, the whole recipe is written as ``recipe.json``. Either
        file is read back and checked to give this recipe before it is written. Where and how
        often a run writes its checkpoints and whether it shows progress bars are not part of
        a recipe: an edited file keeps the file's, a JSON recipe leaves them out. A recipe of
        the other format left in ``folder`` by an earlier run is removed, so the folder holds
        one.

        Args:
            folder: The folder to write into (created if missing).

        Returns:
            The file written.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     recipe = Recipe.from_mapping({"train": {"lr": 0.1}}).with_train(lr=0.02)
            ...     saved = recipe.save(folder)
            ...     print(saved.name, Recipe.from_file(saved).train.lr)
            recipe.json 0.02
        """
        target = Path(folder)
        text = self._edited_file()
        if text is not None and self.path is not None:
            name = f"recipe{self.path.suffix.lower()}"
        else:
            name, text = "recipe.json", json.dumps(self._tables(), indent=2) + "\n"
        target.mkdir(parents=True, exist_ok=True)
        written = atomic_write_text(target / name, text)
        for stale in {"recipe.toml", "recipe.json"} - {name}:
            (target / stale).unlink(missing_ok=True)
        return written

    def _edited_file(self) -> str | None:
        """The recipe file's text with the changes since it was read, if that reads back."""
        if self.path is None:
            return None
        try:  # the file may have gone or changed during a run of hours: then JSON
            source = read_text_file(self.path, "recipe file")
            before = _flat(Recipe.from_file(self.path))
        except (OSError, InvalidArgumentError):
            return None
        changes = {key: value for key, value in _flat(self).items() if value != before.get(key)}
        text: str | None = source
        if changes:
            edit = self.path.suffix.lower() == ".toml"
            text = _edited_toml(source, changes, before, self.path.name) if edit else None
        if text is None or not self._reads_back(text, self.path.suffix.lower()):
            return None
        return text

    def _tables(self) -> dict[str, Any]:
        """The recipe's tables with every setting spelled out (but the run-only ones)."""
        tables: dict[str, Any] = {}
        for key, value in _flat(self).items():
            if value is None:
                continue
            table = tables
            for part in key[:-1]:
                table = table.setdefault(part, {})
            table[key[-1]] = value
        return tables

    def _reads_back(self, text: str, suffix: str) -> bool:
        """Whether ``text`` (a recipe file's content) reads as this recipe."""
        from .training.config import _toml_loads

        assert self.path is not None
        try:
            tables = json.loads(text) if suffix == ".json" else _toml_loads(text, self.path)
            if not isinstance(tables, dict):
                return False
            again = Recipe.from_mapping(tables, path=self.path)
        except (ValueError, InvalidArgumentError, TypeError):
            return False
        return _flat(again) == _flat(self)

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
    ``README.md``, ``evaluation_<split>[_<tta>].json``, the recipe as it ran
    (:meth:`Recipe.save`),
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
    metadata = _with_teacher(recipe.train, metadata)
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
    recipe.save(folder)
    recipe.train.save(folder / "train_config.json")
    history.to_json(folder / "history.json")
    history.to_csv(folder / "history.csv")
    return history, reports


def _with_teacher(train: TrainConfig, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` with, for a distilled run, what its teacher was (for the model card)."""
    result = dict(metadata or {})
    if not train.distilling:
        return result
    from .training.distill import file_sha256

    teacher = train.distill_teacher
    weights = None if teacher is None else Path(teacher) / "model.safetensors"
    source = "precomputed targets only" if teacher is None else str(teacher)
    if weights is not None and weights.is_file():
        source += f" (model.safetensors sha256 {file_sha256(weights)})"
    views = "" if train.distill_mode == "online" else f", teacher views {train.distill_tta}"
    training = dict(result.get("training") or {})
    training["distillation"] = (
        f"{train.distill_mode} soft targets of {source}{views}, temperature "
        f"{train.distill_temperature:g}, soft-loss weight {train.distill_weight:g}"
    )
    result["training"] = training
    return result


def _flat(recipe: Recipe) -> dict[tuple[str, ...], Any]:
    """The settings of ``recipe`` by table path (``("train", "lr")``), run-only ones left out."""
    flat: dict[tuple[str, ...], Any] = {
        ("data", "train_split"): recipe.train_split,
        ("data", "val_split"): recipe.val_split,
    }
    flat.update({("model", name): value for name, value in recipe.model.to_dict().items()})
    flat[("model", "init")] = None if recipe.init is None else str(recipe.init.absolute())
    train = recipe.train.to_dict()
    augment = train.pop("augment")
    flat.update({("train", name): value for name, value in train.items()})
    for key in _RUN_ONLY:
        del flat[key]
    flat.update({("train", "augment", name): value for name, value in augment.items()})
    flat[("release", "dtype")] = recipe.dtype
    flat[("release", "tta")] = list(recipe.tta)
    return flat


class _NotToml(Exception):
    """A value TOML cannot hold (``None``) or that this writer does not write."""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise _NotToml(value)


def _edited_toml(
    text: str,
    changes: Mapping[tuple[str, ...], Any],
    before: Mapping[tuple[str, ...], Any],
    name: str,
) -> str | None:
    """``text`` with each changed setting's line rewritten (or added); ``None`` if it cannot."""
    tables = _toml_loads_or_none(text)
    if tables is None:
        return None
    bare = not isinstance(tables.get("train"), Mapping)  # a bare [train] table
    if bare and any(key[0] != "train" for key in changes):
        return None  # a bare table holds training settings only
    pending = dict(changes)
    section: tuple[str, ...] = ()
    edited: list[str] = []
    try:
        for line in text.splitlines():
            header = _SECTION.match(line)
            if header:
                _add_new_keys(edited, _full_key(section, bare), pending, name)
                section = tuple(part.strip().strip("\"'") for part in header[1].split("."))
                edited.append(line)
                continue
            match = _KEY.match(line)
            key = (*_full_key(section, bare), match[1]) if match else None
            if match is None or key not in pending:
                edited.append(line)
                continue
            value = pending.pop(key)
            if value is not None:  # None: the line goes, the setting's default applies
                was = "unset" if before.get(key) is None else _toml_value(before[key])
                edited.append(f"{match[1]} = {_toml_value(value)}  # run: {was} in {name}")
        _add_new_keys(edited, _full_key(section, bare), pending, name)
        new_tables = sorted({key[:-1] for key, value in pending.items() if value is not None})
        for table in new_tables:  # tables the file does not have
            edited += ["", f"[{'.'.join(table[1:] if bare else table)}]"]
            _add_new_keys(edited, table, pending, name)
    except _NotToml:
        return None
    intro = [line.format(name=name) for line in _EDITED_HEADER]
    return "\n".join([*intro, *edited]).rstrip() + "\n"


_EDITED_HEADER: Final[tuple[str, ...]] = (
    "# THE RECIPE AS IT RAN: {name} with the settings marked `# run:` changed for this run",
    "# (command-line overrides or other starting weights); the rest is the file as it was.",
)


def _full_key(section: tuple[str, ...], bare: bool) -> tuple[str, ...]:
    """The table path of a TOML section (a bare recipe's sections are inside ``train``)."""
    return ("train", *section) if bare else section


def _add_new_keys(
    edited: list[str], table: tuple[str, ...], pending: dict[tuple[str, ...], Any], name: str
) -> None:
    """Add the pending settings of ``table`` (which the file does not set) at its end."""
    mine = sorted(key for key in pending if key[:-1] == table)
    if not mine:
        return
    trailer: list[str] = []  # blank lines and the next section's comments stay after them
    while edited and (not edited[-1].strip() or edited[-1].lstrip().startswith("#")):
        trailer.insert(0, edited.pop())
    for key in mine:
        value = pending.pop(key)
        if value is not None:
            edited.append(f"{key[-1]} = {_toml_value(value)}  # run: unset in {name}")
    edited += trailer


def _toml_loads_or_none(text: str) -> dict[str, Any] | None:
    from .training.config import _toml_loads

    try:
        tables = _toml_loads(text, Path("recipe.toml"))
    except ValueError:
        return None
    return tables if isinstance(tables, dict) else None
