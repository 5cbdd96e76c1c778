"""A new classifier head for a new label set, on a trained backbone: :func:`replace_head`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..errors import InvalidArgumentError, UnsupportedInputError
from .config import ModelConfig
from .resnet import EmotionNet, build_model

__all__ = ["replace_head"]


def replace_head(model: EmotionNet, labels: Sequence[str]) -> EmotionNet:
    """Return a copy of ``model`` whose final layer (``fc``) predicts ``labels``.

    Every layer but ``fc`` keeps ``model``'s weights (and batch-norm statistics). The new
    ``fc`` has one output per label: a label that ``model`` already predicts (same name, as
    in :attr:`ModelConfig.labels`) keeps its row of weights and its bias, so a 3-label
    ``happy/sad/neutral`` model starts where the 7-emotion model is; the other rows get
    torchvision's default initialisation. The config is ``model``'s with the new
    ``num_classes`` and ``labels`` (input size, stem and normalisation unchanged). ``model``
    itself is not changed.

    Args:
        model: The trained model, e.g. ``EmotionRecognizer.from_pretrained().model``.
        labels: The new label names, position = class index.

    Returns:
        The new model, in training mode, on ``model``'s device.

    Raises:
        UnsupportedInputError: If ``model`` is not an :class:`EmotionNet`.
        InvalidArgumentError: If ``labels`` are not at least two distinct names.

    Example:
        >>> import torch
        >>> from emotionnet.models import ModelConfig, build_model, replace_head
        >>> old = build_model(ModelConfig())
        >>> new = replace_head(old, ["happy", "contempt"])
        >>> new.config.labels, new.fc.weight.shape
        (('happy', 'contempt'), torch.Size([2, 512]))
        >>> torch.equal(new.fc.weight[0], old.fc.weight[3])  # happy is label 3 of the seven
        True
        >>> torch.equal(new.layer4[1].conv2.weight, old.layer4[1].conv2.weight)
        True
    """
    if not isinstance(model, EmotionNet):
        raise UnsupportedInputError(
            f"replace_head needs an EmotionNet (build_model or from_pretrained(...).model), got "
            f"{type(model).__name__}."
        )
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise InvalidArgumentError(f"labels must be a sequence of names, got {labels!r}.")
    names = tuple(labels)
    if len(names) < 2:
        raise InvalidArgumentError(
            f"A classifier needs at least two labels, got {list(names)}; add a label."
        )
    config: ModelConfig = dataclasses.replace(model.config, num_classes=len(names), labels=names)
    parameter = next(model.parameters())
    new = build_model(config)
    new.to(device=parameter.device, dtype=parameter.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    new.load_state_dict({**state, "fc.weight": new.fc.weight, "fc.bias": new.fc.bias})
    old_rows = {label: i for i, label in enumerate(model.config.labels)}
    with torch.no_grad():
        for row, label in enumerate(names):
            if label in old_rows:
                new.fc.weight[row] = model.fc.weight[old_rows[label]]
                new.fc.bias[row] = model.fc.bias[old_rows[label]]
    new.train()
    return new
