"""The numpy views of test-time augmentation equal the torch ones (emotionnet.tta)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from emotionnet.errors import InvalidArgumentError
from emotionnet.inference import _tta_views
from emotionnet.tta import TTA_MODES, average_log_softmax, resolve_tta, tta_views


@given(
    side=st.integers(min_value=8, max_value=96),
    count=st.integers(min_value=1, max_value=3),
    mode=st.sampled_from(TTA_MODES),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_numpy_views_equal_torch_views(side: int, count: int, mode: str, seed: int) -> None:
    batch = np.random.default_rng(seed).standard_normal((count, 1, side, side)).astype(np.float32)
    ours = tta_views(batch, mode)
    theirs = [view.numpy() for view in _tta_views(torch.from_numpy(batch), mode)]
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.shape == reference.shape
        # Bilinear weights computed as PyTorch does (one rounding): at most an ulp apart.
        np.testing.assert_allclose(mine, reference, rtol=0, atol=2e-6)


def test_ten_crop_order_is_torchvisions() -> None:
    batch = np.arange(48 * 48, dtype=np.float32).reshape(1, 1, 48, 48)
    views = tta_views(batch, "ten_crop")
    # Corners of the resized crops keep their corner pixel: top-left, top-right, ...
    assert views[0][0, 0, 0, 0] == 0.0
    assert views[1][0, 0, 0, -1] == 47.0
    assert views[2][0, 0, -1, 0] == 47.0 * 48
    assert views[5][0, 0, 0, 0] == 47.0  # the mirror's top-left is the original's top-right


def test_average_log_softmax_is_the_log_of_the_mean() -> None:
    rng = np.random.default_rng(0)
    outputs = [rng.standard_normal((4, 7)).astype(np.float32) for _ in range(3)]
    probabilities = [np.exp(o) / np.exp(o).sum(axis=1, keepdims=True) for o in outputs]
    expected = np.log(np.mean(probabilities, axis=0))
    np.testing.assert_allclose(average_log_softmax(outputs), expected, atol=1e-6)


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="Valid values"):
        resolve_tta("sideways")
    with pytest.raises(InvalidArgumentError, match="Unknown TTA mode"):
        tta_views(np.zeros((1, 1, 8, 8), np.float32), "sideways")
