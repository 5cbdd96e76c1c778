"""ONNX export with a dynamic batch axis; onnxruntime probabilities match PyTorch's to 1e-4."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotionnet import EmotionRecognizer, OnnxClassifier, export_onnx
from emotionnet.errors import (
    InvalidArgumentError,
    MissingDependencyError,
    ModelLoadError,
    UnsupportedInputError,
    WeightsNotFoundError,
)
from emotionnet.models import ModelConfig, build_model
from emotionnet.models.onnx import METADATA_KEY, onnx_bytes

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def torch_recognizer() -> EmotionRecognizer:
    torch.manual_seed(0)
    config = ModelConfig(stem="middle")
    model = build_model(config)
    # Non-trivial batch-norm statistics, as a trained model has.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return EmotionRecognizer(model, config, device="cpu")


@pytest.fixture(scope="module")
def onnx_file(
    torch_recognizer: EmotionRecognizer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return export_onnx(
        torch_recognizer.model,
        tmp_path_factory.mktemp("onnx") / "model.onnx",
        config=torch_recognizer.config,
    )


def proba(predictions: list) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([list(p.probabilities.values()) for p in predictions])


def test_graph_has_a_dynamic_batch_axis_and_the_config(
    onnx_file: Path, torch_recognizer: EmotionRecognizer
) -> None:
    graph = onnx.load(onnx_file)
    onnx.checker.check_model(graph)
    (graph_input,) = graph.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [1, 48, 48]
    assert graph.graph.output[0].name == "logits"
    classifier = OnnxClassifier(onnx_file)
    assert classifier.config == torch_recognizer.config
    assert {p.key for p in graph.metadata_props} == {METADATA_KEY}


@pytest.mark.parametrize("batch", [1, 7])
def test_logits_match_pytorch_for_any_batch(
    onnx_file: Path, torch_recognizer: EmotionRecognizer, batch: int
) -> None:
    x = torch.randn(batch, 1, 48, 48)
    with torch.no_grad():
        expected = torch_recognizer.model(x)
    got = OnnxClassifier(onnx_file)(x)
    assert got.shape == (batch, 7) and got.dtype == torch.float32
    torch.testing.assert_close(got.softmax(1), expected.softmax(1), atol=1e-4, rtol=0)


def test_onnx_backend_matches_torch_backend(
    torch_recognizer: EmotionRecognizer, faces: np.ndarray
) -> None:
    onnx_recognizer = EmotionRecognizer(
        torch_recognizer.model, torch_recognizer.config, device="cpu", backend="onnx"
    )
    assert onnx_recognizer.backend == "onnx"
    for tta in (False, "flip"):
        np.testing.assert_allclose(
            proba(onnx_recognizer.predict(list(faces), tta=tta)),
            proba(torch_recognizer.predict(list(faces), tta=tta)),
            atol=1e-4,
        )


def test_from_pretrained_with_the_onnx_backend(model_dir: Path, faces: np.ndarray) -> None:
    eager = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch")
    fast = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="onnx")
    np.testing.assert_allclose(
        proba(fast.predict(list(faces))), proba(eager.predict(list(faces))), atol=1e-4
    )
    report = fast.evaluate((torch.from_numpy(faces), torch.arange(5)))
    assert report.num_samples == 5


def test_recognizer_around_an_exported_file(onnx_file: Path, faces: np.ndarray) -> None:
    recognizer = EmotionRecognizer(OnnxClassifier(onnx_file), device="cpu")
    assert recognizer.backend == "onnx" and recognizer.config.stem == "middle"
    assert len(recognizer.predict(list(faces))) == len(faces)
    with pytest.raises(InvalidArgumentError, match="no PyTorch weights"):
        recognizer.save_pretrained("unused")
    with pytest.raises(InvalidArgumentError, match="no PyTorch weights"):
        export_onnx(recognizer.model, "unused.onnx", config=recognizer.config)


def _bare_model() -> torch.nn.Module:
    """A model from elsewhere: no emotionnet config."""
    torch.manual_seed(0)
    layers = (torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    return torch.nn.Sequential(*layers, torch.nn.Linear(16, 7)).eval()


def test_bare_model_without_config() -> None:
    model = _bare_model()
    classifier = OnnxClassifier(onnx_bytes(model))
    assert classifier.config is None
    x = torch.randn(2, 1, 48, 48)
    torch.testing.assert_close(classifier(x), model(x), atol=1e-4, rtol=1e-4)


def test_an_emotionnet_carries_its_own_config_by_default() -> None:
    config = ModelConfig(stem="imagenet", num_classes=3, labels=("neg", "neu", "pos"))
    assert OnnxClassifier(onnx_bytes(build_model(config))).config == config


def test_export_leaves_the_model_alone(torch_recognizer: EmotionRecognizer) -> None:
    model = torch_recognizer.model.train()
    try:
        onnx_bytes(model, config=torch_recognizer.config)
        assert model.training
    finally:
        model.eval()


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="export"):
        OnnxClassifier(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        OnnxClassifier(b"not an onnx model")
    with pytest.raises(UnsupportedInputError):
        OnnxClassifier(42)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedInputError):
        export_onnx("model", tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedInputError, match=r"pass recognizer\.model, config="):
        export_onnx(EmotionRecognizer.from_pretrained(), tmp_path / "m.onnx")  # type: ignore[arg-type]
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(InvalidArgumentError, match="opset"):
        onnx_bytes(torch.nn.Linear(2, 2), opset=3)


def test_missing_onnxruntime_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
        OnnxClassifier(onnx_file)


# --- backend="auto" ----------------------------------------------------------------------------


def test_from_pretrained_picks_onnxruntime_on_the_cpu(model_dir: Path) -> None:
    assert EmotionRecognizer.from_pretrained(model_dir, device="cpu").backend == "onnx"
    assert EmotionRecognizer.from_pretrained(model_dir, backend="torch").backend == "torch"
    # A model passed in directly may be any module: eager PyTorch unless asked.
    recognizer = EmotionRecognizer.from_pretrained(model_dir, backend="torch")
    assert EmotionRecognizer(recognizer.model, device="cpu").backend == "torch"


def test_auto_without_onnxruntime_is_pytorch(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert EmotionRecognizer.from_pretrained(model_dir, device="cpu").backend == "torch"
    with pytest.raises(MissingDependencyError, match="onnx"):
        EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="onnx")


def test_auto_falls_back_to_pytorch_when_export_fails(
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    faces: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr("emotionnet.models.onnx.onnx_bytes", broken)
    bare = tmp_path / "bare"  # a folder saved without its graph: exported on load
    shutil.copytree(model_dir, bare)
    (bare / "model.onnx").unlink()
    model_dir = bare
    recognizer = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    assert recognizer.backend == "onnx"  # decided now, exported at the first prediction
    with caplog.at_level("WARNING"):
        (prediction,) = recognizer.predict(faces[0])
    assert recognizer.backend == "torch" and "unsupported operator" in caplog.text
    eager = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch")
    assert prediction.probabilities == eager.predict(faces[0])[0].probabilities
    explicit = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="onnx")
    with pytest.raises(RuntimeError, match="unsupported operator"):
        explicit.predict(faces[0])


# --- an exported file, loaded back ------------------------------------------------------------


def test_an_exported_file_loads_with_from_pretrained(
    onnx_file: Path, torch_recognizer: EmotionRecognizer, faces: np.ndarray
) -> None:
    loaded = EmotionRecognizer.from_pretrained(onnx_file, device="cpu")
    assert loaded.backend == "onnx"
    with pytest.raises(InvalidArgumentError, match="no PyTorch weights"):
        loaded.model  # noqa: B018
    assert loaded.config == torch_recognizer.config and loaded.source == str(onnx_file)
    np.testing.assert_allclose(
        proba(loaded.predict(list(faces))), proba(torch_recognizer.predict(list(faces))), atol=1e-4
    )
    # The same through a str, a capitalised suffix and backend="onnx"; evaluate works.
    upper = onnx_file.with_name("MODEL.ONNX")
    upper.write_bytes(onnx_file.read_bytes())
    again = EmotionRecognizer.from_pretrained(str(upper), device="cpu", backend="onnx", tta="none")
    report = again.evaluate((torch.from_numpy(faces), torch.arange(len(faces))))
    assert report.num_samples == len(faces) and report.tta == "none"


def test_an_onnx_recognizer_refuses_what_needs_pytorch_weights(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = EmotionRecognizer.from_pretrained(onnx_file, device="cpu")
    for attempt in (
        lambda: loaded.save_pretrained(tmp_path / "saved"),
        lambda: export_onnx(loaded.model, tmp_path / "again.onnx", config=loaded.config),
    ):
        with pytest.raises(InvalidArgumentError, match="no PyTorch weights") as info:
            attempt()
        assert str(onnx_file) in str(info.value) and "exported from" in str(info.value)
    assert not (tmp_path / "saved").exists() and not (tmp_path / "again.onnx").exists()
    # push_to_hub fails before it creates a repository on the Hub.
    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", lambda *a, **k: pytest.fail("hub"))
    with pytest.raises(InvalidArgumentError, match="no PyTorch weights to upload"):
        loaded.push_to_hub("org/name")
    with pytest.raises(InvalidArgumentError, match="'torch' backend"):
        EmotionRecognizer.from_pretrained(onnx_file, backend="torch")


def test_onnx_files_that_cannot_be_loaded(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="No ONNX model at"):
        EmotionRecognizer.from_pretrained(tmp_path / "missing.onnx")
    bare = tmp_path / "bare.onnx"  # a graph from elsewhere: no emotionnet config in it
    export_onnx(_bare_model(), bare)
    with pytest.raises(ModelLoadError, match="no emotionnet model config"):
        EmotionRecognizer.from_pretrained(bare)
    graph = onnx.load(bare)
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, '{"stem": "huge"}'
    onnx.save(graph, tmp_path / "broken.onnx")
    with pytest.raises(ModelLoadError, match=r"unusable 'emotionnet\.config'"):
        EmotionRecognizer.from_pretrained(tmp_path / "broken.onnx")


def test_the_command_line_takes_an_onnx_file(
    onnx_file: Path, torch_recognizer: EmotionRecognizer, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from emotionnet.cli import main

    face = str(Path(__file__).resolve().parents[2] / "examples" / "images" / "astronaut_face.jpg")
    assert main(["predict", face, "--json", "--model", str(onnx_file), "--device", "cpu"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    (expected,) = torch_recognizer.predict(face)
    assert record["label"] == expected.label
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-4)
    assert main(["export", "--onnx", "again.onnx", "--model", str(onnx_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --model {onnx_file} is already an ONNX graph")
