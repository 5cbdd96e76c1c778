"""Train emotion classifiers: :class:`TrainConfig`, :class:`Trainer`, :class:`History`.

The trainer takes a model and two data sets (anything :func:`emotionnet.data.as_tensors`
reads), and runs a plain PyTorch loop with everything a FER2013 recipe needs: SGD (Nesterov)
or AdamW, warm-up + cosine, one-cycle or plateau schedules, label smoothing, class weights,
mixup/cutmix, gradient clipping, bf16 autocast wherever the hardware computes bf16 natively
(CUDA GPUs, CPUs with AVX512-BF16 or AMX), ``channels_last``, validation every epoch,
best-checkpoint selection, early stopping and exact resume. The defaults are the fast
settings on both CPU and GPU (see ``benchmarks/bench_train_step.py``).

Data path:
    Images stay ``uint8`` until a batch is built. A batch is built the same way everywhere:
    the epoch's permutation is sliced, the images are augmented by
    :func:`~emotionnet.augmentation.augment_batch`, normalised, and optionally mixed by
    :func:`~emotionnet.augmentation.mix_batch`. By default the whole training set lives on
    the training device and batches are built there, in the training process (a DataLoader
    feeding 48x48 images would be the bottleneck on a GPU, and on the CPU augmenting a batch
    costs about 2% of its training step); the same batch builder can also run in DataLoader
    worker processes (``data_on_device=False``, ``num_workers > 0``). Every random choice of
    batch ``b`` in epoch ``e`` on rank ``r`` comes from a generator seeded with
    ``(seed, e, r, b)``, so the result does not depend on the number of workers or on where
    the batch was built.

Layout:
    :mod:`~emotionnet.training.config` (:class:`TrainConfig`, config files),
    :mod:`~emotionnet.training.trainer` (the loop), :mod:`~emotionnet.training.batches` (one
    batch builder), :mod:`~emotionnet.training.callbacks` (:class:`Callback`,
    :class:`BestWeights`, :class:`EarlyStopping`), :mod:`~emotionnet.training.checkpoint`
    (``last.ckpt``, ``best.safetensors``, RNG states), :mod:`~emotionnet.training.distill`
    (knowledge distillation from a teacher), :mod:`~emotionnet.training.lock` (one run per
    checkpoint folder), :mod:`~emotionnet.training.history` and
    :mod:`~emotionnet.training.distributed`. Everything public is importable from
    ``emotionnet.training``.

Checkpoints (``checkpoint_dir``):
    ``last.ckpt`` (resume state, see :func:`load_checkpoint`), ``best.safetensors`` (the
    weights with the best monitored metric), ``config.json`` (the
    :class:`~emotionnet.models.ModelConfig`, when given), ``train_config.json``,
    ``history.json``, ``history.csv``, ``teacher_targets.safetensors`` (precomputed
    distillation targets, see :mod:`~emotionnet.training.distill`) and, while
    :meth:`Trainer.fit` runs, ``train.lock`` (see :mod:`~emotionnet.training.lock`). Every
    file is written to a temporary file in the same folder, flushed to disk and renamed over
    the old one, so a kill at any moment leaves the previous version intact (the next write
    removes a killed write's temporary file).
    ``last.ckpt`` and ``best.safetensors`` carry a SHA-256 digest of their content, written
    with them; a file that no longer matches it (a flipped bit, a truncated copy) is refused
    with :class:`~emotionnet.errors.CheckpointError` instead of being resumed from or loaded.

Non-finite losses:
    A step whose loss is NaN or infinite (or, with ``grad_clip``, whose gradient norm is) is
    skipped: neither the weights, the optimizer, the batch-norm statistics nor the weight
    average see it. More than :attr:`TrainConfig.max_nonfinite_steps` such steps in a row stop
    the run with :class:`~emotionnet.errors.NonFiniteLossError`; the last checkpoint is the
    one written before them.

Distributed training:
    Started with ``torchrun``, the trainer reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``,
    initialises the process group (NCCL on CUDA, Gloo on the CPU), wraps the model in
    :class:`~torch.nn.parallel.DistributedDataParallel` and gives each rank its share of the
    epoch's permutation (padded to equal length, as ``DistributedSampler`` does).
    ``batch_size`` is per process. Validation runs on rank 0 and its metrics are broadcast;
    only rank 0 writes files, logs and shows progress bars.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from emotionnet.training import TrainConfig, Trainer
    >>> images = torch.randint(0, 256, (32, 48, 48), dtype=torch.uint8)
    >>> targets = torch.arange(32) % 7
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
    >>> config = TrainConfig(max_epochs=2, batch_size=16, lr=0.01, progress=False)
    >>> history = Trainer(model, (images, targets), (images, targets), config).fit()
    >>> len(history), sorted(history[-1])[:3]
    (2, ['epoch', 'images_per_sec', 'lr'])
"""

from __future__ import annotations

from .callbacks import BestWeights, Callback, EarlyStopping
from .checkpoint import BEST_WEIGHTS, LAST_CHECKPOINT, load_checkpoint
from .config import (
    AMP_MODES,
    MONITORS,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    bf16_supported,
    read_config_file,
)
from .distill import (
    DISTILL_MODES,
    TEACHER_TARGETS,
    distillation_loss,
    precompute_teacher_targets,
)
from .finetune import FinetuneResult, finetune, free_cores
from .history import HISTORY_COLUMNS, History
from .lock import LOCK_FILE
from .trainer import ONE_CLASS_WARNING_SHARE, Trainer

__all__ = [
    "AMP_MODES",
    "BEST_WEIGHTS",
    "DISTILL_MODES",
    "HISTORY_COLUMNS",
    "LAST_CHECKPOINT",
    "LOCK_FILE",
    "MONITORS",
    "ONE_CLASS_WARNING_SHARE",
    "OPTIMIZERS",
    "SCHEDULES",
    "TEACHER_TARGETS",
    "BestWeights",
    "Callback",
    "EarlyStopping",
    "FinetuneResult",
    "History",
    "TrainConfig",
    "Trainer",
    "bf16_supported",
    "distillation_loss",
    "finetune",
    "free_cores",
    "load_checkpoint",
    "precompute_teacher_targets",
    "read_config_file",
]
