"""Distributed training under ``torchrun``: the environment and the process group."""

from __future__ import annotations

import os

from ..errors import InvalidArgumentError

__all__: list[str] = []  # internal: used by the Trainer


def dist_env() -> tuple[int, int, int]:
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers (as torchrun sets them): {exc}."
        ) from exc
    if world > 1 and not 0 <= rank < world:
        raise InvalidArgumentError(f"RANK={rank} is outside 0..WORLD_SIZE-1 ({world - 1}).")
    return max(world, 1), rank if world > 1 else 0, local_rank if world > 1 else 0
