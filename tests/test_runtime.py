"""The torch-free runtime: shipped model.onnx files, threads, and which graphs are refused."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from emotionnet import EmotionRecognizer, OnnxModel
from emotionnet.errors import InvalidArgumentError, ModelLoadError, WeightsNotFoundError
from emotionnet.inference import predict_proba
from emotionnet.models import ModelConfig, build_model
from emotionnet.models.hub import bundled_model_dir, weights_sha256
from emotionnet.runtime import WEIGHTS_SHA256_METADATA_KEY, check_threads, default_threads

FACES = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)


def _torch_proba(model: torch.nn.Module, config: ModelConfig, tta: str) -> np.ndarray:
    return predict_proba(model, FACES, tta=tta, mean=config.mean, std=config.std).numpy()


# --- the shipped graph -------------------------------------------------------------------------


def test_the_bundled_model_onnx_is_its_weights() -> None:
    folder = bundled_model_dir()
    shipped = OnnxModel(folder / "model.onnx", num_threads=1)
    assert shipped.weights_sha256 == weights_sha256(folder / "model.safetensors")
    eager = EmotionRecognizer.from_pretrained(backend="torch", device="cpu")
    for tta in ("none", "flip_crop"):
        np.testing.assert_allclose(
            shipped.predict_proba(FACES, tta=tta),
            _torch_proba(eager.model, eager.config, tta),
            rtol=0,
            atol=1e-5,
        )


def test_from_pretrained_runs_the_shipped_graph_without_building_the_torch_model() -> None:
    recognizer = EmotionRecognizer.from_pretrained(num_threads=1)
    assert recognizer.backend == "onnx" and recognizer._module is None
    assert recognizer.predict(FACES[0])[0].label in recognizer.labels
    assert recognizer._module is None  # predicting never needed it
    assert isinstance(recognizer.model, torch.nn.Module)  # loaded on demand, with torch


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_save_pretrained_ships_the_graph_of_the_saved_weights(tmp_path: Path, dtype: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(stem="imagenet", labels=("neg", "neu", "pos"), num_classes=3)
    recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
    folder = recognizer.save_pretrained(tmp_path / "m", dtype=dtype)
    graph = OnnxModel(folder / "model.onnx", num_threads=1)
    assert graph.weights_sha256 == weights_sha256(folder / "model.safetensors")
    assert graph.config == config
    loaded = EmotionRecognizer.from_pretrained(folder, num_threads=1)
    assert loaded.backend == "onnx" and loaded._module is None
    # The graph holds the weights as saved (half precision included), as torch loads them.
    eager = EmotionRecognizer.from_pretrained(folder, backend="torch", device="cpu")
    np.testing.assert_allclose(
        graph.predict_proba(FACES, tta="flip"),
        _torch_proba(eager.model, config, "flip"),
        rtol=0,
        atol=1e-5,
    )
    assert [p.label for p in loaded.predict(list(FACES))] == [
        p.label for p in eager.predict(list(FACES))
    ]


def test_a_stale_graph_is_not_used(
    tmp_path: Path, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "stale"
    shutil.copytree(model_dir, folder)
    torch.manual_seed(5)
    other = build_model(ModelConfig(stem="imagenet"))
    EmotionRecognizer(other, ModelConfig(stem="imagenet"), device="cpu").save_pretrained(
        tmp_path / "other"
    )
    shutil.copy(tmp_path / "other" / "model.onnx", folder / "model.onnx")
    with caplog.at_level(logging.WARNING):
        loaded = EmotionRecognizer.from_pretrained(folder, device="cpu", num_threads=1)
    assert "SHA-256" in caplog.text
    fresh = EmotionRecognizer.from_pretrained(model_dir, device="cpu", num_threads=1)
    assert loaded.predict(FACES[0])[0].probabilities == pytest.approx(
        fresh.predict(FACES[0])[0].probabilities, abs=1e-5
    )


def test_a_folder_without_weights_runs_its_graph(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    for name in ("config.json", "model.onnx"):
        shutil.copy(model_dir / name, folder / name)
    recognizer = EmotionRecognizer.from_pretrained(folder, num_threads=1)
    assert recognizer.backend == "onnx"
    with pytest.raises(InvalidArgumentError, match="no PyTorch weights"):
        recognizer.save_pretrained(tmp_path / "again")
    with pytest.raises(ModelLoadError, match=r"only model\.onnx"):
        EmotionRecognizer.from_pretrained(folder, backend="torch")


def test_a_folder_saved_without_its_graph_still_loads(tmp_path: Path) -> None:
    config = ModelConfig(stem="imagenet")
    recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
    folder = recognizer.save_pretrained(tmp_path / "m")
    assert (folder / "model.onnx").is_file()
    recognizer.model.save_pretrained(folder, onnx=False)
    assert not (folder / "model.onnx").exists()  # a stale graph is removed, not left behind
    loaded = EmotionRecognizer.from_pretrained(folder, device="cpu")
    assert loaded.backend == "onnx" and loaded._module is not None  # exported on load


# --- threads -----------------------------------------------------------------------------------


def test_threads_are_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads() is None
    assert EmotionRecognizer.from_pretrained(num_threads=1).num_threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3 and check_threads(None) == 3
    assert EmotionRecognizer.from_pretrained()._onnx.num_threads == 3  # type: ignore[union-attr]
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(InvalidArgumentError, match="OMP_NUM_THREADS"):
        EmotionRecognizer.from_pretrained()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match="num_threads"):
            check_threads(bad)


# --- graphs that are refused -------------------------------------------------------------------


def _model(nodes: list[onnx.NodeProto], *, initializers: list[onnx.TensorProto] = ()) -> bytes:  # type: ignore[assignment]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_an_endless_loop_is_refused_before_it_runs() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
    )
    nodes = [
        helper.make_node(
            "Constant", [], ["yes"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])
        ),
        helper.make_node("Loop", ["", "yes"], [], body=body),
        helper.make_node("Identity", ["input"], ["logits"]),
    ]
    with pytest.raises(ModelLoadError, match="sub-graph in an attribute of its 'Loop' node"):
        OnnxModel(_model(nodes), config=ModelConfig())


def test_other_operators_domains_and_external_data_are_refused(tmp_path: Path) -> None:
    custom = helper.make_node("Evil", ["input"], ["logits"], domain="com.example")
    with pytest.raises(ModelLoadError, match=r"custom domain 'com\.example'"):
        OnnxModel(_model([custom]), config=ModelConfig())
    unknown = helper.make_node("RandomNormalLike", ["input"], ["logits"])
    with pytest.raises(ModelLoadError, match="'RandomNormalLike'"):
        OnnxModel(_model([unknown]), config=ModelConfig())
    external = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    external.data_location = TensorProto.EXTERNAL
    entry = external.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    nodes = [helper.make_node("Identity", ["input"], ["logits"])]
    with pytest.raises(ModelLoadError, match="external data"):
        OnnxModel(_model(nodes, initializers=[external]), config=ModelConfig())
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        OnnxModel(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", config=ModelConfig())


def test_a_graph_that_disagrees_with_its_config_is_refused(model_dir: Path) -> None:
    graph = model_dir / "model.onnx"
    with pytest.raises(ModelLoadError, match="does not match its config"):
        OnnxModel(graph, config=ModelConfig(input_size=64))
    with pytest.raises(ModelLoadError, match=r"(7|3) labels"):
        OnnxModel(graph, config=ModelConfig(labels=("a", "b", "c"), num_classes=3))


def test_a_recorded_hash_is_kept_in_the_metadata(model_dir: Path) -> None:
    graph = onnx.load(str(model_dir / "model.onnx"))
    meta = {entry.key: entry.value for entry in graph.metadata_props}
    assert meta[WEIGHTS_SHA256_METADATA_KEY] == weights_sha256(model_dir / "model.safetensors")


# --- int8 --------------------------------------------------------------------------------------

FACE = Path(__file__).resolve().parent.parent / "examples" / "images" / "astronaut_face.jpg"


def test_the_bundled_int8_graph_is_its_weights_and_agrees_with_float() -> None:
    folder = bundled_model_dir()
    graph = onnx.load(str(folder / "model.int8.onnx"))
    meta = {entry.key: entry.value for entry in graph.metadata_props}
    assert meta["emotionnet.precision"] == "int8"
    assert meta[WEIGHTS_SHA256_METADATA_KEY] == weights_sha256(folder / "model.safetensors")
    fast = EmotionRecognizer.from_pretrained(precision="int8", num_threads=1)
    exact = EmotionRecognizer.from_pretrained(num_threads=1, precision="float32")
    assert fast.precision == "int8" and exact.precision == "float32"
    # The default runs the int8 graph where the folder ships one made from its weights.
    assert EmotionRecognizer.from_pretrained(num_threads=1).precision == "int8"
    for tta in ("none", "flip_crop"):
        (a,), (b,) = fast.predict(FACE, tta=tta), exact.predict(FACE, tta=tta)
        assert a.label == b.label == "happy"
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) < 0.05


def test_precision_is_checked(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="precision"):
        EmotionRecognizer.from_pretrained(precision="int4")
    with pytest.raises(InvalidArgumentError, match="int8"):
        EmotionRecognizer.from_pretrained(precision="int8", backend="torch")
    with pytest.raises(WeightsNotFoundError, match="quantize_folder"):
        EmotionRecognizer.from_pretrained(model_dir, precision="int8")


@pytest.mark.slow
def test_quantize_folder_writes_a_graph_for_these_weights(tmp_path: Path, model_dir: Path) -> None:
    from emotionnet.models.quantize import quantize_folder

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    with pytest.raises(InvalidArgumentError, match="48x48"):
        quantize_folder(folder, np.zeros((4, 32, 32), np.uint8))
    written = quantize_folder(folder, FACES)
    assert written.name == "model.int8.onnx"
    fast = EmotionRecognizer.from_pretrained(folder, precision="int8", num_threads=1)
    assert fast.backend == "onnx" and len(fast.predict(list(FACES))) == len(FACES)
    # Weights saved anew: the stale int8 graph is removed, and one copied back is refused.
    stale = (folder / "model.int8.onnx").read_bytes()
    torch.manual_seed(9)
    config = ModelConfig(stem="imagenet")
    EmotionRecognizer(build_model(config), config, device="cpu").save_pretrained(folder)
    assert not (folder / "model.int8.onnx").exists()
    (folder / "model.int8.onnx").write_bytes(stale)
    with pytest.raises(ModelLoadError, match="SHA-256"):
        EmotionRecognizer.from_pretrained(folder, precision="int8")
    # By default a stale int8 graph is passed over for the float one, with a warning.
    assert EmotionRecognizer.from_pretrained(folder, num_threads=1).precision == "float32"
