"""EmotionNet through huggingface_hub's PyTorchModelHubMixin: save, load, strictness, cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from emotionnet import EmotionNet, ModelConfig, build_model
from emotionnet.errors import InvalidArgumentError, ModelLoadError
from emotionnet.models.card import CARD_TEMPLATE, LIBRARY_NAME, PIPELINE_TAG

INPUT = torch.linspace(-2, 2, 2 * 48 * 48).reshape(2, 1, 48, 48)


def saved(tmp_path: Path, **fields: object) -> tuple[EmotionNet, Path]:
    torch.manual_seed(0)
    model = EmotionNet(**fields).eval()  # type: ignore[arg-type]
    folder = tmp_path / "model"
    model.save_pretrained(
        folder,
        model_card_kwargs={"evaluation": {"public_test": {"accuracy": 0.6789, "macro_f1": 0.5}}},
    )
    return model, folder


def test_round_trip_gives_the_same_model_config_and_outputs(tmp_path: Path) -> None:
    model, folder = saved(tmp_path, stem="small", labels=[f"c{i}" for i in range(7)])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.onnx",
        "model.safetensors",
    ]
    # config.json holds every ModelConfig field, so the recognizer's reader takes it too.
    assert json.loads((folder / "config.json").read_text()) == model.config.to_dict()
    assert ModelConfig.load(folder) == model.config
    loaded = EmotionNet.from_pretrained(folder)
    assert isinstance(loaded, EmotionNet) and not loaded.training
    assert loaded.config == model.config and loaded.config.labels[0] == "c0"
    assert torch.equal(loaded(INPUT), model(INPUT))
    # The weights are plain torchvision keys, loadable without emotionnet.
    assert set(load_file(folder / "model.safetensors")) == set(model.state_dict())


def test_the_card_is_the_template_filled_with_hub_metadata_and_numbers(tmp_path: Path) -> None:
    _, folder = saved(tmp_path)
    card = (folder / "README.md").read_text()
    header = card.split("---")[1]
    assert f"library_name: {LIBRARY_NAME}" in header and f"pipeline_tag: {PIPELINE_TAG}" in header
    assert "- fer2013" in header and "license: mit" in header
    assert "| public_test | - | 67.89% | - | 0.5000 | - | - |" in card
    assert CARD_TEMPLATE.startswith("---\n{{ card_data }}\n---")


def test_loading_is_strict_about_a_missing_tensor(tmp_path: Path) -> None:
    _, folder = saved(tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["layer3.0.bn1.running_var"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"layer3\.0\.bn1\.running_var"):
        EmotionNet.from_pretrained(folder)
    # The mixin's lenient mode stays available on request.
    lenient = EmotionNet.from_pretrained(folder, strict=False)
    assert torch.equal(lenient.layer3[0].bn1.running_var, torch.ones(256))


def test_loading_refuses_non_finite_weights_and_a_config_that_does_not_fit(tmp_path: Path) -> None:
    _, folder = saved(tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["fc.bias"][0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"fc\.bias"):
        EmotionNet.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "stem": "giant"}))
    with pytest.raises(InvalidArgumentError, match="stem"):
        EmotionNet.from_pretrained(folder)


def test_loads_a_repository_from_a_hand_built_offline_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, folder = saved(tmp_path, stem="imagenet")
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--emotion"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name in ("config.json", "model.safetensors"):
        data = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (repo / "snapshots" / commit / name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    loaded = EmotionNet.from_pretrained("org/emotion", cache_dir=cache)
    assert loaded.config.stem == "imagenet" and torch.equal(loaded(INPUT), model(INPUT))


def test_the_builder_builds_the_hub_model_class() -> None:
    config = ModelConfig(stem="imagenet", num_classes=3, labels=("a", "b", "c"), dropout=0.2)
    model = build_model(config)
    assert isinstance(model, EmotionNet) and model.config == config
    # Defaults follow the number of classes and channels.
    assert EmotionNet(num_classes=3).config.labels == ("class_0", "class_1", "class_2")
    assert EmotionNet(in_chans=3).config.mean == (ModelConfig().mean[0],) * 3


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"num_classes": 0}, "num_classes"), ({"stem": "big"}, "stem"), ({"dropout": 1.0}, "dropout")],
)
def test_bad_fields_are_refused_in_one_place(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        EmotionNet(**fields)  # type: ignore[arg-type]


def test_config_json_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The mixin removes config.json and would write it with a plain write_text, which a crash
    # leaves half written; EmotionNet writes it itself, through the atomic writer, first.
    import emotionnet.models.resnet as resnet

    written: list[str] = []
    real = resnet.atomic_write_bytes

    def recording(path: Path, data: bytes) -> None:
        written.append(Path(path).name)
        real(path, data)

    monkeypatch.setattr(resnet, "atomic_write_bytes", recording)
    model = build_model(ModelConfig(stem="small", labels=("a", "b"), num_classes=2))
    (tmp_path / "config.json").write_text("{stale")
    model.save_pretrained(
        tmp_path, config={**model.config.to_dict(), "metadata": {"k": 1}}, onnx=False
    )
    assert written[0] == "config.json" and "model.safetensors" in written
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["metadata"] == {"k": 1} and saved["labels"] == ["a", "b"]
    assert EmotionNet.from_pretrained(tmp_path).config == model.config
