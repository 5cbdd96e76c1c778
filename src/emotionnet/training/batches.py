"""Training batches: one builder (:class:`BatchSource`) for every device and worker count.

Batch ``b`` of epoch ``e`` on rank ``r`` is sliced from the epoch's permutation, augmented,
normalised and optionally mixed with a generator seeded from ``(seed, e, r, b)``: the same
batch whether it is built in the training process or in a DataLoader worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..augmentation import AugmentConfig, augment_batch, mix_batch
from ..preprocessing import normalize

__all__: list[str] = []  # internal: used by the Trainer


def derive_seed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0] >> 1)


class BatchSource(Dataset[tuple[torch.Tensor, ...]]):
    """Builds training batch ``(epoch, index)``; the one batch path of every device.

    Used directly in the loop (data on the device, or no workers) and as a map-style data
    set of whole batches in DataLoader workers.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        augment: AugmentConfig,
        mean: float,
        std: float,
        num_classes: int,
        mixup_alpha: float,
        cutmix_alpha: float,
        mix_prob: float,
        mix_switch_prob: float,
        mix_until: int,
        soft_targets: torch.Tensor | None = None,
    ) -> None:
        self.images = images
        self.targets = targets
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.mean = mean
        self.std = std
        self.num_classes = num_classes
        # Precomputed teacher probabilities, one row per image (on the images' device).
        self.soft_targets = soft_targets
        self.mix = dict(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=mix_prob,
            switch_prob=mix_switch_prob,
        )
        self.mixing = (mixup_alpha > 0 or cutmix_alpha > 0) and mix_prob > 0
        self.mix_until = mix_until  # epochs from this index on are not mixed
        self.shard_size = math.ceil(images.shape[0] / world_size)
        self.num_batches = max(1, self.shard_size // batch_size)
        self._order: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's shard of the epoch's permutation, as ``DistributedSampler`` shards."""
        if self._order is None or self._order[0] != epoch:
            count = self.images.shape[0]
            generator = torch.Generator().manual_seed(derive_seed(self.seed, 0, epoch))
            order = torch.randperm(count, generator=generator)
            total = self.shard_size * self.world_size
            if total > count:
                order = torch.cat([order, order[: total - count]])
            shard = order[self.rank : total : self.world_size]
            self._order = (epoch, shard.to(self.images.device))
        return self._order[1]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """``(images, targets)``, and the teacher's probabilities when the source has them."""
        epoch, index = key
        order = self.epoch_order(epoch)
        chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
        seed = derive_seed(self.seed, 1, epoch, self.rank, index)
        generator = torch.Generator().manual_seed(seed)
        images = augment_batch(self.images[chosen], self.augment, generator=generator)
        batch = normalize(images, self.mean, self.std)
        targets = self.targets[chosen]
        soft = None if self.soft_targets is None else self.soft_targets[chosen]
        if self.mixing and epoch < self.mix_until:
            if soft is None:
                batch, targets = mix_batch(
                    batch, targets, num_classes=self.num_classes, generator=generator, **self.mix
                )
            else:
                # One call mixes the labels and the teacher's probabilities side by side: the
                # same coefficient and partner as the images, from the same random draws.
                classes = self.num_classes
                both = torch.cat([F.one_hot(targets, classes).to(soft.dtype), soft], dim=1)
                batch, both = mix_batch(
                    batch, both, num_classes=2 * classes, generator=generator, **self.mix
                )
                targets, soft = both[:, :classes], both[:, classes:]
        return (batch, targets) if soft is None else (batch, targets, soft)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, batch index)`` keys; the trainer sets :attr:`epoch` each epoch."""

    def __init__(self, num_batches: int) -> None:
        self.num_batches = num_batches
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, index) for index in range(self.num_batches)])

    def __len__(self) -> int:
        return self.num_batches
