"""Optional dependencies: import one, or say which extra installs it.

``pip install emotionnet`` is the inference install (numpy, Pillow, onnxruntime,
huggingface_hub). Everything else comes with an extra, and :func:`require` is the one place
that imports such a package and, when it is missing, raises
:class:`~emotionnet.errors.MissingDependencyError` naming the extra to install;
:func:`is_installed` asks without importing.

Example:
    >>> require("json", "reading JSON").__name__
    'json'
    >>> is_installed("json"), is_installed("no_such_package_xyz")
    (True, False)
    >>> require("no_such_package_xyz", "Nothing")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emotionnet.errors.MissingDependencyError: Nothing needs the 'no_such_package_xyz' package...
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Final

from .errors import MissingDependencyError

__all__ = ["EXTRAS", "is_installed", "require"]

EXTRAS: Final[dict[str, str]] = {
    "torch": "torch",
    "torchvision": "torch",
    "safetensors": "torch",
    "sklearn": "torch",
    "onnx": "torch",
    "cv2": "face",
    "dlib": "dlib",
    "matplotlib": "plot",
    "streamlit": "app",
    "pandas": "ray",
    "ray": "ray",
}
"""The extra that installs each optional top-level package."""

_TORCH_HINT: Final[str] = (
    " On a machine without an NVIDIA GPU, install PyTorch's CPU build first: "
    "pip install torch==2.14.1 torchvision==0.29.1 --index-url "
    "https://download.pytorch.org/whl/cpu (matching torch and torchvision builds)."
)


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    ``sys.modules[name] = None`` blocks it, as the tests of a missing package do.
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str, *, alternative: str = "") -> ModuleType:
    """Import ``module``, or raise an error that names the extra installing it.

    Args:
        module: The module's import name (``"torch"``, ``"cv2"``, ``"torchvision.ops"``...).
        purpose: What needs it, for the message (``"Training"``, ``"ONNX export"``).
        alternative: What to do instead of installing it, for the message (``"or pass your
            own detector"``).

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: If it cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        install = f'pip install "emotionnet[{extra}]"' if extra else f"pip install {top}"
        hint = _TORCH_HINT if extra == "torch" else ""
        other = f" ({alternative})" if alternative else ""
        raise MissingDependencyError(
            f"{purpose} needs the {top!r} package, which is not installed ({error}); install "
            f"it with `{install}`{other}.{hint}"
        ) from error
