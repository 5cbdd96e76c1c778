"""The argument checks every public entry point shares: choices, integers, numbers, devices.

One place for the wording, so that every "Unknown value ..." and "... must be ..." message
reads the same (the choice message is torchvision's ``verify_str_arg`` wording). Checks run
at the boundary (constructors, public functions), not again in the layers below.

Example:
    >>> check_choice("split", "train", ("train", "test"))
    'train'
    >>> check_int("num_workers", 2, minimum=0)
    2
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from ._optional import require
from .errors import InvalidArgumentError

__all__ = ["check_choice", "check_int", "check_number", "check_probability", "resolve_device"]

_T = TypeVar("_T")


def check_choice(name: str, value: object, valid: Iterable[_T]) -> _T:
    """Return ``value`` if it is one of ``valid``, else raise with the valid values listed.

    Raises:
        InvalidArgumentError: ``Unknown value 'x' for argument name. Valid values are
            {'a', 'b'}.``
    """
    options = tuple(valid)
    if not isinstance(value, bool) and value in options:  # True == 1: never a choice
        return value
    choices = ", ".join(repr(option) for option in options)
    raise InvalidArgumentError(
        f"Unknown value {value!r} for argument {name}. Valid values are {{{choices}}}."
    )


def check_int(
    name: str,
    value: object,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    hint: str = "",
) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) within the bounds.

    Raises:
        InvalidArgumentError: ``name must be an integer >= 1, got 0; <hint>.``
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:  # type: ignore[operator]
        ok = False
    if ok and maximum is not None and value > maximum:  # type: ignore[operator]
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            wanted = f"an integer in {minimum}..{maximum}"
        elif minimum == 1:
            wanted = "a positive integer"
        elif minimum is not None:
            wanted = f"an integer >= {minimum}"
        elif maximum is not None:
            wanted = f"an integer <= {maximum}"
        else:
            wanted = "an integer"
        raise InvalidArgumentError(
            f"{name} must be {wanted}, got {value!r}" + (f"; {hint}." if hint else ".")
        )
    return value  # type: ignore[return-value]


def check_number(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Return ``float(value)`` if it is a finite real number (not a ``bool``) in the interval.

    The message names the interval the plainest way: ``a finite number``, ``a positive
    number`` (``low=0, low_open=True``), ``a number >= 0`` or ``a number in [0, 1)``.

    Raises:
        InvalidArgumentError: ``name must be a number in [0, 1), got 2; <hint>.``

    Example:
        >>> check_number("timeout", 0, low=0, low_open=True)
        Traceback (most recent call last):
        ...
        emotionnet.errors.InvalidArgumentError: timeout must be a positive number, got 0.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    ok = ok and math.isfinite(number)
    ok = ok and (number > low if low_open else number >= low)
    ok = ok and (number < high if high_open else number <= high)
    if not ok:
        if math.isinf(high) and math.isinf(low):
            wanted = "a finite number"
        elif math.isinf(high):
            wanted = "a positive number" if low == 0 and low_open else f"a number >= {low:g}"
            wanted = f"a number > {low:g}" if low_open and low != 0 else wanted
        else:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            wanted = f"a number in {left}{low:g}, {high:g}{right}"
        raise InvalidArgumentError(
            f"{name} must be {wanted}, got {value!r}" + (f"; {hint}." if hint else ".")
        )
    return number


def check_probability(name: str, value: object) -> float:
    """Return ``float(value)`` if it is a probability in ``[0, 1]``.

    Raises:
        InvalidArgumentError: ``name must be a probability in [0, 1], got 2.``
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    if not ok:
        raise InvalidArgumentError(f"{name} must be a probability in [0, 1], got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def resolve_device(
    device: object,
    *,
    here: bool = True,
    given: str | None = None,
    fix: str = "pass device='cpu', or None (CUDA when available, else the CPU)",
) -> str:
    """The PyTorch device ``device`` names, as a string (``"cpu"``, ``"cuda:1"``...).

    ``None`` and ``"auto"`` are CUDA when torch sees a GPU, else the CPU. Imports torch (the
    check needs it) only when called.

    Args:
        device: A device, a device string, ``"auto"`` or ``None``.
        here: Refuse a device this machine lacks (CUDA or MPS not available). ``False`` only
            checks the spelling and keeps ``"auto"`` (a training config, written for
            whichever machine runs it).
        given: How the caller's user wrote the value, for the message (``"--device cuda"``);
            default ``device='cuda'``.
        fix: What to pass instead, for the message.

    Raises:
        InvalidArgumentError: ``device='gpu' is not a device (cpu, cuda, cuda:1, mps); <fix>.``
            or ``device='cuda' was given but CUDA is not available here; <fix>.``
        MissingDependencyError: If torch is not installed.

    Example:
        >>> resolve_device("cpu"), resolve_device("auto", here=False)
        ('cpu', 'auto')
    """
    given = f"device={device!r}" if given is None else given
    torch = require("torch", f"{given} (PyTorch runs the model there)")
    if device is None or device == "auto":
        if not here:
            return "auto"
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgumentError(
            f"{given} is not a device (cpu, cuda, cuda:1, mps); {fix}."
        ) from None
    missing = {"cuda": "CUDA", "mps": "MPS"}.get(resolved.type)
    if here and missing is not None:
        backend = torch.cuda if resolved.type == "cuda" else torch.backends.mps
        if not backend.is_available():
            raise InvalidArgumentError(
                f"{given} was given but {missing} is not available here; {fix}."
            )
    return str(resolved)
