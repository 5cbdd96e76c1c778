"""Tests of emotionnet.models: stems, state-dict compatibility, configs and weight loading."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18

from emotionnet.errors import InvalidArgumentError, ModelLoadError, WeightsNotFoundError
from emotionnet.labels import EMOTIONS
from emotionnet.models import STEMS, EmotionNet, ModelConfig, build_model, load_weights

IMAGENET_FILE = "resnet18-f37072fd.pth"


def final_map(model: Any, size: int = 48) -> tuple[int, ...]:
    shapes: list[tuple[int, ...]] = []
    handle = model.layer4.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        logits = model.eval()(torch.zeros(2, 1, size, size))
    handle.remove()
    assert logits.shape == (2, 7)
    return shapes[0]


@pytest.mark.parametrize(("stem", "side"), [("imagenet", 2), ("middle", 3), ("small", 6)])
def test_each_stem_gives_logits_and_the_documented_final_map(stem: str, side: int) -> None:
    model = build_model(ModelConfig(stem=stem))
    assert final_map(model) == (2, 512, side, side)


def test_stems_match_the_contract() -> None:
    small, middle, imagenet = (
        build_model(ModelConfig(stem=s)) for s in ("small", "middle", "imagenet")
    )
    assert (small.conv1.kernel_size, small.conv1.stride, small.conv1.padding) == (
        (3, 3),
        (1, 1),
        (1, 1),
    )
    assert (middle.conv1.kernel_size, middle.conv1.stride) == ((3, 3), (2, 2))
    assert isinstance(small.maxpool, torch.nn.Identity)
    assert isinstance(middle.maxpool, torch.nn.Identity)
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    assert imagenet.conv1.kernel_size == (7, 7)
    for model in (small, middle, imagenet):
        assert model.conv1.in_channels == 1 and model.conv1.bias is None


@pytest.mark.parametrize("stem", STEMS)
def test_state_dict_keys_are_torchvisions_even_with_dropout(stem: str) -> None:
    model = build_model(ModelConfig(stem=stem, dropout=0.3))
    reference = resnet18(num_classes=7).state_dict()
    assert list(model.state_dict()) == list(reference)
    for key, value in model.state_dict().items():
        if key != "conv1.weight":
            assert value.shape == reference[key].shape, key


def test_lead_built_middle_model_loads_strictly(tmp_path: Path) -> None:
    # The lead's weights: torchvision resnet18 with conv1 and maxpool replaced by hand.
    reference = resnet18(num_classes=7)
    reference.conv1 = torch.nn.Conv2d(1, 64, 3, stride=2, padding=1, bias=False)
    reference.maxpool = torch.nn.Identity()
    path = tmp_path / "lead.safetensors"
    save_file(reference.state_dict(), str(path))
    model = build_model(ModelConfig(stem="middle"), weights=path).eval()
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(model(x), reference.eval()(x))


def test_dropout_is_active_only_in_training_and_keeps_model_copyable() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(stem="imagenet", dropout=0.5))
    x = torch.randn(2, 1, 48, 48)
    assert not torch.equal(model.train()(x), model(x))
    expected = model.eval()(x)
    assert torch.equal(model(x), expected)
    assert torch.equal(pickle.loads(pickle.dumps(model)).eval()(x), expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stem": "tiny"}, "'tiny' for argument stem. Valid values are"),
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"num_classes": True}, "num_classes must be a positive integer"),
        ({"in_chans": "1"}, "in_chans must be a positive integer, got '1'"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\), got 1.0"),
        ({"weights": 3}, "weights must be None, 'imagenet' or a path"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict[str, object], match: str) -> None:
    weights = kwargs.pop("weights", None)
    with pytest.raises(InvalidArgumentError, match=match):
        build_model(ModelConfig(**kwargs), weights=weights)  # type: ignore[arg-type]


def test_other_channel_and_class_counts() -> None:
    model = EmotionNet(in_chans=3, num_classes=5, stem="small").eval()
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 5)


# ---- configs -------------------------------------------------------------------------------


def test_model_config_round_trips_through_dict_and_json(tmp_path: Path) -> None:
    config = ModelConfig(stem="small", dropout=0.2)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    written = config.save(tmp_path / "model")
    assert written == tmp_path / "model" / "config.json"
    assert ModelConfig.load(tmp_path / "model") == config
    assert ModelConfig.load(written) == config
    assert config.save(tmp_path / "other.json").name == "other.json"
    assert config.labels == EMOTIONS and isinstance(config.mean, tuple)


def test_model_config_rebuilds_the_same_architecture() -> None:
    config = ModelConfig(stem="imagenet", num_classes=3, labels=("a", "b", "c"))
    model: Any = build_model(config).eval()
    assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 3)
    assert model.conv1.kernel_size == (7, 7)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"stem": "small", "depth": 18}, r"Unknown model config keys \['depth'\]"),
        ({"architecture": "resnet50"}, "'resnet50' for architecture"),
        ({"stem": "huge"}, "'huge' for argument stem"),
        ({"num_classes": 3}, "labels has 7 names but num_classes is 3"),
        ({"mean": [0.5, 0.5]}, "one value per input channel"),
        ({"std": [0.0]}, "std values must be positive"),
        ({"input_size": 0}, "input_size must be a positive integer"),
        ({"labels": "angry"}, "labels must be a sequence of class names"),
    ],
)
def test_model_config_rejects_bad_values(data: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ModelConfig.from_dict(data)


def test_model_config_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ModelConfig.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        ModelConfig.load(tmp_path)
    with pytest.raises(InvalidArgumentError, match="expects a ModelConfig"):
        build_model({"stem": "small"})  # type: ignore[arg-type]


# ---- weights from files --------------------------------------------------------------------


def test_weights_from_safetensors_and_pt_files(tmp_path: Path) -> None:
    source = build_model(ModelConfig(stem="middle")).eval()
    state = source.state_dict()
    save_file(state, str(tmp_path / "w.safetensors"))
    # A DDP-prefixed state dict inside a training checkpoint: both wrappers are undone.
    torch.save(
        {"format": "x", "model": {"module." + k: v for k, v in state.items()}}, tmp_path / "w.pt"
    )
    x = torch.randn(2, 1, 48, 48)
    expected = source(x)
    for name in ("w.safetensors", "w.pt"):
        model = build_model(ModelConfig(stem="middle"), weights=tmp_path / name).eval()
        assert torch.equal(model(x), expected), name


def test_weights_that_do_not_fit_name_the_problem(tmp_path: Path) -> None:
    save_file(
        build_model(ModelConfig(stem="small")).state_dict(), str(tmp_path / "small.safetensors")
    )
    with pytest.raises(ModelLoadError, match=r"conv1.weight.*stem, num_classes and in_chans"):
        build_model(ModelConfig(stem="imagenet"), weights=tmp_path / "small.safetensors")
    with pytest.raises(WeightsNotFoundError, match="No weights file at"):
        build_model(ModelConfig(), weights=tmp_path / "missing.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="Could not read weights"):
        build_model(ModelConfig(), weights=tmp_path / "junk.pt")


# ---- ImageNet weights, offline ---------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every download fail at once, recording the URLs asked for."""
    asked: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        asked.append(url)
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return asked


@pytest.fixture
def fake_imagenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = {k: torch.randn_like(v.float()) for k, v in resnet18().state_dict().items()}
    # As in the real file: variances are positive and batch counters integers.
    state = {
        k: v.abs() if k.endswith("running_var") else v.long() if "num_batches" in k else v
        for k, v in state.items()
    }
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / IMAGENET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return state


def test_imagenet_weights_load_from_the_torch_home_cache(
    fake_imagenet: dict[str, torch.Tensor], offline: list[str]
) -> None:
    model = build_model(ModelConfig(stem="imagenet"), weights="imagenet", progress=False)
    state = model.state_dict()
    assert torch.allclose(state["conv1.weight"], fake_imagenet["conv1.weight"].sum(1, keepdim=True))
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "bn1.weight"):
        assert torch.equal(state[key], fake_imagenet[key]), key
    assert state["fc.weight"].shape == (7, 512)
    assert offline == []  # served from the cache, no download attempted


def test_imagenet_weights_for_rgb_keep_conv1(
    fake_imagenet: dict[str, torch.Tensor], offline: list[str]
) -> None:
    config = EmotionNet(stem="imagenet", in_chans=3, num_classes=1000).config
    model = build_model(config, weights="imagenet")
    assert torch.equal(model.state_dict()["conv1.weight"], fake_imagenet["conv1.weight"])
    assert torch.equal(model.state_dict()["fc.weight"], fake_imagenet["fc.weight"])


@pytest.mark.parametrize("stem", ["middle", "small"])
def test_imagenet_weights_for_3x3_stems_resize_the_summed_kernel(
    stem: str, fake_imagenet: dict[str, torch.Tensor], offline: list[str]
) -> None:
    model = build_model(ModelConfig(stem=stem), weights="imagenet")
    conv1 = model.state_dict()["conv1.weight"]
    summed = fake_imagenet["conv1.weight"].sum(1, keepdim=True)
    assert conv1.shape == (64, 1, 3, 3)
    # Each filter keeps its response to a flat image, so bn1's statistics still apply.
    assert torch.allclose(conv1.sum((1, 2, 3)), summed.sum((1, 2, 3)), atol=1e-4)
    # Area resampling: the centre tap covers input taps 7/3..14/3 of each axis, so 2/3 of
    # taps 2 and 4 and all of tap 3.
    centre = summed[:, :, 2:5, 2:5].clone()
    centre[:, :, [0, 2], :] *= 2 / 3
    centre[:, :, :, [0, 2]] *= 2 / 3
    assert torch.allclose(conv1[:, 0, 1, 1], centre.sum((1, 2, 3)), atol=1e-4)
    key = "layer2.0.conv1.weight"
    assert torch.equal(model.state_dict()[key], fake_imagenet[key])


def test_imagenet_weights_offline_without_cache_fail_fast_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: list[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    expected = tmp_path / "empty_home" / "hub" / "checkpoints" / IMAGENET_FILE
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        build_model(ModelConfig(), weights="imagenet", progress=False)
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert str(expected) in message and "TORCH_HOME" in message and "copy it" in message
    assert offline == ["https://download.pytorch.org/models/" + IMAGENET_FILE]


def test_corrupt_imagenet_cache_is_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: list[str]
) -> None:
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / IMAGENET_FILE).write_bytes(b"truncated")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="delete the file so it downloads again"):
        build_model(ModelConfig(), weights="imagenet")


# ---- configs and weights that would answer garbage -----------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"mean": [float("nan")]}, "mean values must be finite"),
        ({"std": [float("inf")]}, r"std values must be positive \(greater than 1e-06\) and fin"),
        ({"std": [1e-6]}, r"std values must be positive \(greater than 1e-06\)"),
        ({"input_size": 7}, r"input_size must be an integer in 8\.\.1024, got 7"),
        ({"input_size": 1025}, r"input_size must be an integer in 8\.\.1024, got 1025"),
        (
            {"in_chans": 65, "mean": [0.5] * 65, "std": [0.2] * 65},
            r"in_chans must be an integer in 1\.\.64",
        ),
        ({"num_classes": 10_001, "labels": [str(i) for i in range(10_001)]}, r"1\.\.10000"),
        ({"num_classes": 2, "labels": ["x", "x"]}, r"but \['x'\] appear more than once"),
        ({"num_classes": 2, "labels": ["x", ""]}, "labels must not be empty names"),
    ],
)
def test_model_config_refuses_values_that_give_garbage(data: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("size", [8, 1024])
def test_model_config_accepts_the_input_size_limits(size: int) -> None:
    config = ModelConfig(stem="imagenet", input_size=size, std=(1e-5,))
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_model_config_load_refuses_deep_nesting(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        ModelConfig.load(tmp_path)


def test_load_weights_refuses_unusable_values_and_leaves_the_model_alone() -> None:
    model = build_model(ModelConfig(stem="imagenet"))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state = {key: value.clone() for key, value in before.items()}
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    state["bn1.running_var"][3] = -1.0
    state["fc.bias"] = state["fc.bias"].to(torch.int32)
    with pytest.raises(ModelLoadError) as info:
        load_weights(model, state, source="x")
    message = str(info.value)
    assert "conv1.weight has NaN or infinite values" in message
    assert "bn1.running_var has negative values" in message
    assert "fc.bias is torch.int32, expected a floating-point tensor" in message
    after = model.state_dict()
    assert all(torch.equal(after[key], before[key]) for key in before)


def test_build_model_refuses_a_weights_file_with_nan(tmp_path: Path) -> None:
    state = build_model(ModelConfig(stem="small")).state_dict()
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(ModelLoadError, match=r"fc\.weight has NaN"):
        build_model(ModelConfig(stem="small"), weights=tmp_path / "w.safetensors")


def test_half_and_double_precision_weights_still_load() -> None:
    model = build_model(ModelConfig(stem="imagenet"))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        state = {
            key: value.to(dtype) if value.is_floating_point() else value
            for key, value in model.state_dict().items()
        }
        load_weights(model, state, source="x")
