"""The one weight loader, :func:`load_weights`: a file or a state dict, strictly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from .._io import file_kind, open_regular_file
from ..errors import ModelLoadError, UnsupportedInputError, WeightsNotFoundError

__all__ = ["load_weights", "read_state_dict"]

_STRIP_PREFIXES: Final[tuple[str, ...]] = ("module.", "_orig_mod.")
_STATE_DICT_KEYS: Final[tuple[str, ...]] = ("state_dict", "model_state_dict", "model")
_PROBLEMS_SHOWN: Final[int] = 8


def _clean_state_dict(loaded: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Unwrap and unprefix a loaded state dict: the one reading of legacy weight files.

    A checkpoint that holds the weights under ``"state_dict"``, ``"model_state_dict"`` or
    ``"model"`` (emotionnet's own ``last.ckpt``) is unwrapped, and the ``module.`` (DataParallel,
    DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are removed when every key has them.
    Raises :class:`~emotionnet.errors.ModelLoadError` if it holds no tensors or entries that
    are not tensors.

    Example:
        >>> _clean_state_dict({"state_dict": {"module.fc.bias": torch.zeros(2)}}, "x")
        {'fc.bias': tensor([0., 0.])}
    """
    if not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in _STATE_DICT_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad or not loaded:
        raise ModelLoadError(
            f"{source} is not a state dict of tensors"
            + (f" (non-tensor entries: {', '.join(bad[:5])})" if bad else " (it is empty)")
            + "; pass model.state_dict() or a checkpoint holding it under 'state_dict'."
        )
    state: dict[str, torch.Tensor] = dict(loaded)
    for prefix in _STRIP_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pt``/``.pth`` state dict file, never running its code.

    ``.pt`` files go through ``torch.load(weights_only=True)``: tensors and plain containers
    are rebuilt, any other pickled object is refused. A checkpoint holding the weights under
    ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` is unwrapped, and the ``module.``
    (DataParallel, DDP) and ``_orig_mod.`` (``torch.compile``) prefixes are removed.

    Args:
        path: The file (a regular file; a pipe or device is refused without blocking).

    Returns:
        Names to tensors.

    Raises:
        WeightsNotFoundError: If there is no such file.
        ModelLoadError: If it is not a regular file or not a state dict of tensors.

    Example:
        >>> read_state_dict("missing.pt")
        Traceback (most recent call last):
        ...
        emotionnet.errors.WeightsNotFoundError: No weights file at 'missing.pt'; check the path (a .safetensors or .pt state dict).
    """  # noqa: E501
    where = repr(os.fspath(path))
    try:
        kind = file_kind(path)
    except FileNotFoundError:
        raise WeightsNotFoundError(
            f"No weights file at {where}; check the path (a .safetensors or .pt state dict)."
        ) from None
    except OSError as error:
        raise ModelLoadError(f"Could not read weights from {where}: {error}.") from None
    if kind is not None:
        raise ModelLoadError(
            f"Could not read weights from {where}: it is {kind}, not a regular file."
        )
    try:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(os.fspath(path), device="cpu")
        else:
            with open_regular_file(path) as handle:
                loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors errors share no base class
        raise ModelLoadError(
            f"Could not read weights from {where} ({type(error).__name__}: {error}). Only "
            "tensors (and dicts/lists of them) are loaded, never arbitrary pickled objects: "
            "re-save the file with torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(loaded, Mapping):
        raise ModelLoadError(
            f"{where} holds a {type(loaded).__name__}, not a state dict; save it with "
            "torch.save(model.state_dict(), path)."
        )
    return _clean_state_dict(loaded, where)


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike[str] | Mapping[str, Any],
    *,
    strict: bool = True,
    source: str | None = None,
) -> None:
    """Load weights into a model: the one loader of every emotionnet model.

    A file is read with :func:`read_state_dict` (``.safetensors``, or ``.pt``/``.pth``
    without unpickling objects); a mapping is used as it is. Either way a checkpoint holding
    the weights under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` is unwrapped,
    and the ``module.`` and ``_orig_mod.`` key prefixes are removed when every key has them.
    Half-precision tensors are cast to the model's dtype (float32).

    Args:
        model: The model whose state dict the weights must match.
        weights: A state dict file, or a mapping of tensor names to tensors.
        strict: Refuse any missing, unexpected or mis-shaped tensor, and tensors that would
            make the model answer NaN; ``False`` loads what fits, as
            ``load_state_dict(strict=False)``.
        source: Where the weights came from, for messages (default: the path, or "the
            given state dict").

    Raises:
        WeightsNotFoundError: If there is no such file.
        ModelLoadError: If the file is not a regular file or not a state dict of tensors,
            or (strict) the names or shapes do not match the model exactly, or a tensor is
            unusable: integer or bool where the model has floats, NaN or infinite values, a
            negative batch-norm ``running_var`` (the message names each tensor).
        UnsupportedInputError: If ``weights`` is neither a path nor a mapping.

    Example:
        >>> from torch import nn
        >>> load_weights(nn.Linear(2, 1), {"weight": torch.zeros(1, 2)}, source="x")
        Traceback (most recent call last):
        ...
        emotionnet.errors.ModelLoadError: The weights of x do not fit the model: missing: bias. ...
    """
    if isinstance(weights, Mapping):
        source = source or "the given state dict"
        state = _clean_state_dict(weights, source)
    elif isinstance(weights, (str, os.PathLike)):
        source = source or repr(os.fspath(weights))
        state = read_state_dict(weights)
    else:
        raise UnsupportedInputError(
            f"weights must be a state dict file or a mapping of names to tensors, got "
            f"{type(weights).__name__}."
        )
    if not strict:
        model.load_state_dict(state, strict=False)
        return
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} (model: {tuple(expected[key].shape)})"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    problems = [
        f"{label}: {', '.join(items[:8])}{f' and {len(items) - 8} more' if len(items) > 8 else ''}"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        )
        if items
    ]
    if problems:
        raise ModelLoadError(
            f"The weights of {source} do not fit the model: {'; '.join(problems)}. Build the "
            "model with the stem, num_classes and in_chans the weights were trained with (the "
            "config.json saved next to them records them)."
        )
    unusable = _unusable_tensors(expected, state)
    if unusable:
        shown = "; ".join(unusable[:_PROBLEMS_SHOWN])
        more = len(unusable) - _PROBLEMS_SHOWN
        raise ModelLoadError(
            f"The weights of {source} are unusable: {shown}"
            f"{f' and {more} more' if more > 0 else ''}. The file is corrupt or comes from a "
            "training run that diverged; load weights saved from a healthy model."
        )
    model.load_state_dict(state, strict=True)


def _unusable_tensors(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> list[str]:
    """Describe the tensors of ``state`` whose kind or values would make the model answer NaN.

    Floating-point tensors of the model must come as finite floating-point values (checked
    after the cast ``load_state_dict`` does, so a float64 value that overflows float32 counts
    as infinite), and batch-norm variances must not be negative. Integer buffers (batch-norm
    ``num_batches_tracked``) are cast as ``load_state_dict`` does; only complex, NaN or
    infinite values are refused there.
    """
    problems = []
    for key, reference in expected.items():
        tensor = state[key].detach()
        if reference.is_floating_point():
            if not tensor.is_floating_point():
                problems.append(f"{key} is {tensor.dtype}, expected a floating-point tensor")
                continue
            values = tensor if tensor.dtype == reference.dtype else tensor.to(reference.dtype)
            if not bool(torch.isfinite(values).all()):
                problems.append(f"{key} has NaN or infinite values")
            elif key.rsplit(".", 1)[-1] == "running_var" and bool((values < 0).any()):
                problems.append(f"{key} has negative values (a variance is never negative)")
        elif tensor.is_complex() or (
            tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ):
            problems.append(f"{key} is {tensor.dtype} with values that are not integers")
    return problems
