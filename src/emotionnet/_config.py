"""Checks shared by the config dataclasses' ``from_dict`` (model, augmentation, training)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .errors import InvalidArgumentError


def config_values(
    cls: type[Any], data: object, *, what: str, aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return ``data`` as a dict of ``cls``'s field names to values, or raise a clear error.

    Args:
        cls: The dataclass the values are for.
        data: What the user gave; must be a mapping whose keys are field names of ``cls``.
        what: The config's name in messages (``"model config"``).
        aliases: Other accepted names of fields (``{"epochs": "max_epochs"}``).

    Raises:
        InvalidArgumentError: If ``data`` is not a mapping, names a field twice (once through
            an alias) or has keys that are not fields of ``cls``.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(
            f"Expected the {what} as a mapping of field names to values, got {type(data).__name__}."
        )
    values = dict(data)
    for alias, name in (aliases or {}).items():
        if alias in values:
            if name in values:
                raise InvalidArgumentError(
                    f"Give either {alias} or {name} (the same setting), not both."
                )
            values[name] = values.pop(alias)
    names = [item.name for item in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InvalidArgumentError(f"Unknown {what} keys {unknown}; valid keys are {names}.")
    return values
