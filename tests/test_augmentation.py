"""Tests of emotionnet.augmentation: batched transforms and mixing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from emotionnet.augmentation import AugmentConfig, augment_batch, mix_batch
from emotionnet.errors import InvalidArgumentError, UnsupportedInputError

ROOT = Path(__file__).resolve().parent.parent

FLIP_ONLY = AugmentConfig(hflip=1.0, rotation=0, translate=0, scale=(1, 1), erasing=0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def faces(n: int = 8, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=gen(seed))


@given(
    n=st.integers(0, 3),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    as_float=st.booleans(),
    with_channel=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_shape_and_dtype_are_preserved(
    n: int, height: int, width: int, as_float: bool, with_channel: bool, seed: int
) -> None:
    images = torch.randint(0, 256, (n, 1, height, width), dtype=torch.uint8)
    if as_float:
        images = images.float() / 255
    if not with_channel:
        images = images[:, 0]
    out = augment_batch(images, AugmentConfig(erasing=1.0), generator=gen(seed))
    assert out.shape == images.shape and out.dtype == images.dtype
    if as_float and n:
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert out.data_ptr() != images.data_ptr() or n == 0


def test_flip_is_an_exact_mirror() -> None:
    images = faces()
    assert torch.equal(augment_batch(images, FLIP_ONLY, generator=gen()), images.flip(-1))
    half = AugmentConfig(hflip=0.5, rotation=0, translate=0, scale=(1, 1), erasing=0)
    out = augment_batch(faces(64), half, generator=gen())
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, faces(64), strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, faces(64), strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48


def test_disabled_config_returns_an_unchanged_copy() -> None:
    images = faces()
    out = augment_batch(images, AugmentConfig.disabled(), generator=gen())
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()


def test_same_seed_same_result_other_seed_other_result() -> None:
    images = faces()
    first = augment_batch(images, generator=gen(3))
    assert torch.equal(first, augment_batch(images, generator=gen(3)))
    assert not torch.equal(first, augment_batch(images, generator=gen(4)))


def test_switching_one_transform_off_keeps_the_others_randomness() -> None:
    images = faces()
    no_erasing = AugmentConfig(erasing=0.0, hflip=0.0)
    with_flip = AugmentConfig(erasing=0.0, hflip=1.0)
    out = augment_batch(images, no_erasing, generator=gen(5))
    assert torch.equal(augment_batch(images, with_flip, generator=gen(5)), out.flip(-1))


def test_uint8_and_float_batches_get_the_same_transform() -> None:
    # Same semantics whatever the dtype: the same affine, flip and box; rounding differs.
    config = AugmentConfig(erasing=0.7, erasing_value=0.25)
    images = faces(16)
    as_uint8 = augment_batch(images, config, generator=gen(1)).float()
    as_float = augment_batch(images.float() / 255, config, generator=gen(1)) * 255
    assert (as_uint8 - as_float).abs().max() <= 0.5 + 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_and_cpu_apply_the_same_augmentation() -> None:
    config = AugmentConfig(erasing=0.7, erasing_value=0.5)
    images = faces(32)
    on_cpu = augment_batch(images, config, generator=gen(2))
    on_gpu = augment_batch(images.cuda(), config, generator=gen(2))
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1


def test_rotation_turns_about_the_centre() -> None:
    size = 33
    coords = torch.arange(size) - size // 2
    radius = (coords[:, None] ** 2 + coords[None, :] ** 2).float().sqrt()
    disc = ((radius < 10).to(torch.uint8) * 255).expand(4, 1, size, size).contiguous()
    config = AugmentConfig(hflip=0, rotation=45, translate=0, scale=(1, 1), erasing=0)
    out = augment_batch(disc, config, generator=gen()).float()
    ys, xs = torch.meshgrid(coords.float(), coords.float(), indexing="ij")
    mass = out.sum((1, 2, 3))
    assert torch.allclose(mass, disc.float().sum((1, 2, 3)), rtol=0.02)
    assert float((out[:, 0] * xs).sum((1, 2)).div(mass).abs().max()) < 0.05
    assert float((out[:, 0] * ys).sum((1, 2)).div(mass).abs().max()) < 0.05
    bar = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    bar[..., size // 2, 4:-4] = 255
    assert not torch.equal(augment_batch(bar, config, generator=gen()), bar)


def test_translation_moves_content_by_up_to_the_configured_fraction() -> None:
    size = 40
    dot = torch.zeros(64, 1, size, size)
    dot[..., 20, 20] = 1.0
    config = AugmentConfig(hflip=0, rotation=0, translate=0.1, scale=(1, 1), erasing=0)
    out = augment_batch(dot, config, generator=gen())
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mass = out.sum((1, 2, 3))
    centre_x = (out[:, 0] * xs).sum((1, 2)) / mass
    centre_y = (out[:, 0] * ys).sum((1, 2)) / mass
    assert torch.allclose(mass, torch.ones(64), atol=1e-4)  # bilinear keeps a dot's mass
    shift = torch.stack([centre_x - 20, centre_y - 20])
    assert shift.abs().max() <= 0.1 * size + 1e-4
    assert shift.abs().max() > 0.05 * size


def test_erasing_blanks_one_box_within_the_area_range() -> None:
    images = torch.full((32, 1, 20, 20), 255, dtype=torch.uint8)
    config = AugmentConfig(hflip=0, rotation=0, translate=0, scale=(1, 1), erasing=1.0)
    config = AugmentConfig(**{**config.__dict__, "erasing_value": 0.0})
    out = augment_batch(images, config, generator=gen())
    for image in out[:, 0]:
        erased = image == 0
        rows, cols = erased.any(1), erased.any(0)
        assert torch.equal(erased, rows[:, None] & cols[None, :])  # one rectangle
        area = int(erased.sum()) / 400
        assert 0.01 <= area <= 0.40


def test_random_erasing_fills_with_noise() -> None:
    images = torch.full((8, 1, 20, 20), 7, dtype=torch.uint8)
    config = AugmentConfig(hflip=0, rotation=0, translate=0, scale=(1, 1), erasing=1.0)
    out = augment_batch(images, config, generator=gen())
    assert (out != 7).float().mean() > 0.05 and len(torch.unique(out)) > 20


@pytest.mark.parametrize("side", [24, 40, 44])
def test_random_crop_zooms_a_window_that_lies_inside_the_image(side: int) -> None:
    # A horizontal ramp (value = column): bilinear resampling of a window of `side` pixels
    # zoomed to 48 steps by exactly side / 48 per output pixel and never leaves 0..47.
    ramp = torch.arange(48, dtype=torch.float32).expand(6, 1, 48, 48).contiguous()
    crop_only = AugmentConfig(
        hflip=0, rotation=0, translate=0, scale=(1, 1), erasing=0, crop=(side, side)
    )
    out = augment_batch(ramp, crop_only, generator=torch.Generator().manual_seed(side))
    assert out.shape == ramp.shape
    steps = out[..., 1:] - out[..., :-1]
    torch.testing.assert_close(steps, torch.full_like(steps, side / 48), rtol=0, atol=1e-4)
    assert float(out.min()) >= -1e-4 and float(out.max()) <= 47 + 1e-4
    starts = out[:, 0, 0, 0]
    assert len(set(starts.round(decimals=3).tolist())) > 1  # each image its own position


def test_crop_draws_come_last_and_a_full_crop_is_the_identity() -> None:
    images = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8)
    full = AugmentConfig(hflip=0, rotation=0, translate=0, scale=(1, 1), erasing=0, crop=(48, 48))
    assert full.is_identity
    assert torch.equal(augment_batch(images, full), images)
    # Turning cropping on leaves the flips and erasing boxes drawn for the others unchanged.
    no_affine = {"rotation": 0.0, "translate": 0.0, "scale": (1.0, 1.0), "erasing": 0.0}
    plain = augment_batch(
        images, AugmentConfig(**no_affine), generator=torch.Generator().manual_seed(1)
    )
    flips = [
        bool(torch.equal(a, b.flip(-1))) and not torch.equal(a, b)
        for a, b in zip(plain, images, strict=True)
    ]
    cropped = augment_batch(
        torch.arange(48, dtype=torch.float32).expand(8, 1, 48, 48).contiguous(),
        AugmentConfig(**no_affine, crop=(40, 40)),
        generator=torch.Generator().manual_seed(1),
    )
    mirrored = [bool(row[0, 0, 0] > row[0, 0, -1]) for row in cropped]
    assert mirrored == flips


def test_recipe_crop_range_holds_the_ten_crop_test_view() -> None:
    from emotionnet.training import read_config_file
    from emotionnet.tta import TEN_CROP_SIZE

    recipe = read_config_file(ROOT / "configs" / "fer2013_resnet18.toml")
    crop = AugmentConfig.from_dict(recipe["train"]["augment"]).crop
    if crop is None:
        pytest.skip("the recipe trains without random crops")
    assert crop[0] <= TEN_CROP_SIZE <= crop[1]


def test_augment_config_round_trips_and_validates() -> None:
    config = AugmentConfig(rotation=15, scale=(0.8, 1.2), erasing_value=0.5)
    assert AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InvalidArgumentError, match=r"Unknown augment config keys \['flip'\]"):
        AugmentConfig.from_dict({"flip": 0.5})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hflip": 1.5}, r"hflip must be a probability in \[0, 1\], got 1.5"),
        ({"rotation": -1}, r"rotation must be a number in \[0, 180\], got -1; in degrees"),
        ({"translate": 1.0}, r"translate must be a number in \[0, 1\), got 1.0; of the"),
        ({"scale": (1.2, 0.8)}, "scale must be a"),
        ({"padding_mode": "wrap"}, "'wrap' for argument padding_mode"),
        ({"erasing_scale": (0.0, 0.5)}, "erasing_scale must be"),
        ({"erasing_value": "noise"}, "erasing_value must be 'random'"),
    ],
)
def test_bad_config_values_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        AugmentConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(UnsupportedInputError, match=r"must be a torch\.Tensor batch"):
        augment_batch([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(UnsupportedInputError, match="uint8"):
        augment_batch(torch.zeros(1, 1, 4, 4, dtype=torch.int32))
    with pytest.raises(InvalidArgumentError, match="N x C x H x W"):
        augment_batch(torch.zeros(4, 4, dtype=torch.uint8))
    with pytest.raises(UnsupportedInputError, match=r"CPU torch\.Generator"):
        augment_batch(faces(), generator=0)  # type: ignore[arg-type]


# ---- mixing --------------------------------------------------------------------------------


def test_mixup_blends_images_and_targets_with_one_coefficient() -> None:
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    mixed, soft = mix_batch(x, y, num_classes=7, mixup_alpha=0.4, generator=gen(1))
    assert soft.shape == (6, 7) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(6))
    lam = float(soft[0, 0])
    assert 0 < lam < 1 and math.isclose(float(soft[0, 5]), 1 - lam, rel_tol=1e-5)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-6)


def test_cutmix_targets_match_the_pasted_area() -> None:
    x = torch.zeros(2, 1, 16, 16)
    x[1] = 1.0
    mixed, soft = mix_batch(
        x, torch.tensor([0, 1]), num_classes=2, cutmix_alpha=1.0, generator=gen(3)
    )
    pasted = float(mixed[0].mean())  # image 0 (all zeros) received a box of ones
    assert math.isclose(float(soft[0, 1]), pasted, abs_tol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(2))


@given(seed=st.integers(0, 2**31), use_soft=st.booleans())
def test_mixed_targets_are_distributions(seed: int, use_soft: bool) -> None:
    x = torch.rand(5, 1, 6, 6)
    y: torch.Tensor = torch.tensor([0, 1, 2, 0, 1])
    if use_soft:
        y = torch.softmax(torch.randn(5, 3), dim=1)
    _, soft = mix_batch(
        x, y, num_classes=3, mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.7, generator=gen(seed)
    )
    assert torch.allclose(soft.sum(1), torch.ones(5), atol=1e-5)
    assert float(soft.min()) >= 0


def test_no_mixing_gives_one_hot_targets_and_the_same_images() -> None:
    x = torch.rand(3, 1, 4, 4)
    mixed, soft = mix_batch(x, torch.tensor([2, 0, 1]), num_classes=3, mixup_alpha=1.0, prob=0.0)
    assert torch.equal(mixed, x)
    assert torch.equal(soft, torch.eye(3)[[2, 0, 1]])


def test_mix_batch_rejects_bad_input() -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(InvalidArgumentError, match=r"class indices in \[0, 3\)"):
        mix_batch(x, torch.tensor([0, 3]), num_classes=3, mixup_alpha=1.0)
    with pytest.raises(InvalidArgumentError, match="soft targets shaped"):
        mix_batch(x, torch.zeros(2, 4), num_classes=3, mixup_alpha=1.0)
    with pytest.raises(UnsupportedInputError, match="floating point batch"):
        mix_batch(faces(2), torch.tensor([0, 1]), num_classes=3, mixup_alpha=1.0)
    with pytest.raises(InvalidArgumentError, match="mixup_alpha must be a number >= 0"):
        mix_batch(x, torch.tensor([0, 1]), num_classes=3, mixup_alpha=-1.0)
