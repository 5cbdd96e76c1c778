"""ResNet18 for 48x48 grayscale faces, and the config that travels with its weights.

:func:`build_model` returns an :class:`EmotionNet`: a torchvision
:class:`~torchvision.models.ResNet` whose layer names (``conv1``, ``bn1``, ``layer1`` ..
``layer4``, ``fc``) and state-dict keys are exactly torchvision's, so ImageNet weights and
any ``resnet18`` tooling apply. Only the stem changes with the input size in mind (:data:`STEMS`):

=============  ================================  =========  ==================
stem           first layers                      final map  multiply-adds
=============  ================================  =========  ==================
``imagenet``   conv 7x7 stride 2 + max-pool 3x3  2x2        0.09 G (1x)
``middle``     conv 3x3 stride 2, no max-pool    3x3        0.31 G (3.3x)
``small``      conv 3x3 stride 1, no max-pool    6x6        1.25 G (13x)
=============  ================================  =========  ==================

(per 48x48 image). :class:`ModelConfig` holds what is needed to rebuild the
model and feed it (stem, classes, input size, mean/std, label names); it is saved as
``config.json`` next to the weights. :class:`EmotionNet` saves, loads and pushes itself
through huggingface_hub's :class:`~huggingface_hub.PyTorchModelHubMixin`.

Layout: :mod:`~emotionnet.models.config` (:class:`ModelConfig`),
:mod:`~emotionnet.models.resnet` (:class:`EmotionNet`, :func:`build_model`, ImageNet
weights), :mod:`~emotionnet.models.weights` (:func:`load_weights`, the one strict loader),
:mod:`~emotionnet.models.card` (the model card), :mod:`~emotionnet.models.head`
(:func:`replace_head`: a new head for a new label set), :mod:`~emotionnet.models.hub` (model
folders, the bundled default, the Hub) and :mod:`~emotionnet.models.onnx` (ONNX export and
the onnxruntime classifier).

Example:
    >>> import torch
    >>> from emotionnet.models import ModelConfig, build_model
    >>> model = build_model(ModelConfig(stem="middle"))
    >>> model.eval()(torch.zeros(2, 1, 48, 48)).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import ARCHITECTURES, STEMS, ModelConfig

if TYPE_CHECKING:
    from .head import replace_head as replace_head
    from .resnet import EmotionNet as EmotionNet
    from .resnet import build_model as build_model
    from .weights import load_weights as load_weights
    from .weights import read_state_dict as read_state_dict

# The torch parts load on first use (PEP 562): ModelConfig, which the inference layer needs,
# comes without importing torch.
_LAZY: dict[str, str] = {
    "replace_head": "head",
    "EmotionNet": "resnet",
    "build_model": "resnet",
    "load_weights": "weights",
    "read_state_dict": "weights",
}

__all__ = [
    "ARCHITECTURES",
    "STEMS",
    "EmotionNet",
    "ModelConfig",
    "build_model",
    "load_weights",
    "read_state_dict",
    "replace_head",
]


def __getattr__(name: str) -> Any:
    """Import the torch submodule that defines ``name`` on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .._optional import require

    require("torch", "emotionnet's PyTorch models")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
