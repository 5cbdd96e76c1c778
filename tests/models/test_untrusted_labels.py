"""Class names from a model file are untrusted text: unprintable, huge or look-alike ones are
refused when the config is built (InvalidArgumentError) or loaded (ModelLoadError)."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emotionnet.errors import InvalidArgumentError, ModelLoadError
from emotionnet.models import ModelConfig
from emotionnet.models.hub import CONFIG_NAME, read_config

GOOD = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

BAD_LABELS = [
    pytest.param("ha\x1b[31mppy", "a control character \\(U\\+001B\\)", id="escape-sequence"),
    pytest.param("happy\n", "a control character \\(U\\+000A\\)", id="newline"),
    pytest.param("sad\r", "a control character", id="carriage-return"),
    pytest.param("\u202eyppah", "an invisible format character \\(U\\+202E\\)", id="bidi"),
    pytest.param("ha\u200bppy", "an invisible format character \\(U\\+200B\\)", id="zero-width"),
    pytest.param("hap\u2028py", "a line separator", id="line-separator"),
    pytest.param("hap\u2029py", "a paragraph separator", id="paragraph-separator"),
    pytest.param("hap\ue000py", "a private-use character", id="private-use"),
    pytest.param("x" * 65, "65 characters long, more than the 64 allowed", id="65-chars"),
    pytest.param("y" * 1_000_000, "1000000 characters long", id="a-megabyte"),
]

LOOK_ALIKES = [
    pytest.param("Happy", id="case"),
    pytest.param("HAPPY", id="upper-case"),
    pytest.param("\uff48\uff41\uff50\uff50\uff59", id="fullwidth"),  # ｈａｐｐｙ
    pytest.param("happy ", id="trailing-space"),
]


def _labels_with(label: str, index: int = 3) -> list[str]:
    labels = list(GOOD)
    labels[index] = label
    return labels


@pytest.mark.parametrize(("label", "why"), BAD_LABELS)
def test_unprintable_and_huge_labels_are_refused_by_the_config(label: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"label 3 .*{why}") as info:
        ModelConfig(labels=tuple(_labels_with(label)))
    message = str(info.value)
    # The message shows the label escaped and short: it is itself safe to print.
    assert message.isprintable() and len(message) < 400


@pytest.mark.parametrize("twin", LOOK_ALIKES)
def test_look_alike_labels_are_refused(twin: str) -> None:
    labels = [*GOOD[:6], twin]  # "happy" stays at index 3
    with pytest.raises(InvalidArgumentError, match=r"looks like 'happy'.*rename one of them"):
        ModelConfig(labels=tuple(labels))


def test_composed_and_decomposed_accents_are_one_label() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"  # both print as "café"
    with pytest.raises(InvalidArgumentError, match="looks like"):
        ModelConfig(num_classes=2, labels=(composed, decomposed))


def test_printable_labels_in_any_script_are_accepted() -> None:
    labels = ("ärgerlich", "嫌悪", "страх", "😀 happy", "sad-ish", "surprise!", "x" * 64)
    assert ModelConfig(labels=labels).labels == labels
    # A JSON list becomes the same tuple.
    assert ModelConfig.from_dict({"labels": list(labels)}).labels == labels


@pytest.mark.parametrize(("label", "why"), BAD_LABELS[:3] + BAD_LABELS[8:9])
def test_a_config_json_with_bad_labels_is_a_load_error(
    tmp_path: Path, label: str, why: str
) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps({**ModelConfig().to_dict(), "labels": _labels_with(label)}))
    with pytest.raises(ModelLoadError, match=rf"is invalid: label 3 .*{why}"):
        read_config(path)


def test_a_model_folder_with_look_alike_labels_is_refused_at_load(
    tmp_path: Path, model_dir: Path
) -> None:
    from emotionnet import EmotionRecognizer

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    data = json.loads((folder / CONFIG_NAME).read_text())
    data["labels"] = [*GOOD[:6], "HAPPY"]
    (folder / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="looks like 'happy'"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


def test_an_onnx_model_with_bad_labels_is_a_load_error(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from emotionnet.models.onnx import METADATA_KEY, OnnxClassifier

    # A one-node graph is enough: the labels are refused whatever the graph computes.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 7])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({**ModelConfig().to_dict(), "labels": _labels_with("sad\x1b[2J")})
    path = tmp_path / "labels.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelLoadError, match=r"control character \(U\+001B\)"):
        OnnxClassifier(path)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=6))
def test_accepted_labels_are_always_safe_to_print(labels: list[str]) -> None:
    try:
        config = ModelConfig(num_classes=len(labels), labels=tuple(labels))
    except InvalidArgumentError:
        return
    keys = set()
    for label in config.labels:
        assert 0 < len(label) <= 64 and label.strip()
        assert not any(
            unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
            for char in label
        )
        keys.add(unicodedata.normalize("NFKC", label).casefold().strip())
    assert len(keys) == len(config.labels)
