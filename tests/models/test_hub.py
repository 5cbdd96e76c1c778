"""Saving and loading models: local folders, the bundled model, the Hugging Face cache and Hub.

The Hub is emulated: a hand-built cache with HF_HUB_OFFLINE=1, and a loopback HTTP server
speaking the ``/resolve/`` protocol via HF_ENDPOINT. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emotionnet import EmotionNet, EmotionRecognizer, Prediction
from emotionnet.errors import (
    InvalidArgumentError,
    ModelLoadError,
    WeightsNotFoundError,
)
from emotionnet.metrics import report_from_predictions
from emotionnet.models import ModelConfig, build_model, load_weights
from emotionnet.models.hub import (
    CONFIG_NAME,
    MODEL_CARD_NAME,
    ONNX_NAME,
    WEIGHTS_NAME,
    read_config,
    resolve_model_files,
)

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 48, 48), np.uint8))


def probabilities(recognizer: EmotionRecognizer, faces: torch.Tensor) -> np.ndarray:
    return np.array([list(p.probabilities.values()) for p in recognizer.predict(list(faces))])


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 as a user sets it: in the environment, and as huggingface_hub read it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start online (whatever the environment says), and never reach the real Hub."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


# --- local folders ---------------------------------------------------------------------------


def test_round_trip_gives_identical_predictions(tmp_path: Path, faces: torch.Tensor) -> None:
    torch.manual_seed(0)
    config = ModelConfig(stem="middle", dropout=0.1)
    original = EmotionRecognizer(build_model(config), config, device="cpu")
    original.save_pretrained(tmp_path / "saved")
    loaded = EmotionRecognizer.from_pretrained(tmp_path / "saved", device="cpu", backend="torch")
    assert loaded.config == config
    np.testing.assert_array_equal(probabilities(loaded, faces), probabilities(original, faces))
    assert loaded.source == str(tmp_path / "saved")


def test_saved_layout(model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        [WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME, ONNX_NAME]
    )
    config = json.loads((model_dir / CONFIG_NAME).read_text())
    assert config["stem"] == "imagenet" and config["labels"][3] == "happy"
    assert config["metadata"]["emotionnet_version"]
    # Exactly torchvision's keys, no prefix.
    assert "conv1.weight" in load_file(model_dir / WEIGHTS_NAME)
    assert (model_dir / MODEL_CARD_NAME).read_text().startswith("---\nlibrary_name: emotionnet")


def test_saved_files_are_readable_by_group_and_others(tmp_path: Path, umask_022: None) -> None:
    config = ModelConfig(stem="imagenet")
    saved = EmotionRecognizer(build_model(config), config, device="cpu").save_pretrained(
        tmp_path / "saved"
    )
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in saved.iterdir()}
    assert modes == {
        WEIGHTS_NAME: 0o644,
        CONFIG_NAME: 0o644,
        MODEL_CARD_NAME: 0o644,
        ONNX_NAME: 0o644,
    }


def test_half_precision_is_half_the_size_and_upcast_on_load(
    tmp_path: Path, model_dir: Path, faces: torch.Tensor
) -> None:
    full = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch")
    full.save_pretrained(tmp_path / "half", dtype="float16")
    stored = load_file(tmp_path / "half" / WEIGHTS_NAME)
    assert stored["conv1.weight"].dtype == torch.float16
    assert stored["bn1.num_batches_tracked"].dtype == torch.int64
    size = (tmp_path / "half" / WEIGHTS_NAME).stat().st_size
    assert size < 0.55 * (model_dir / WEIGHTS_NAME).stat().st_size
    half = EmotionRecognizer.from_pretrained(tmp_path / "half", device="cpu", backend="torch")
    assert half.model.state_dict()["conv1.weight"].dtype == torch.float32
    np.testing.assert_allclose(probabilities(half, faces), probabilities(full, faces), atol=1e-2)


def test_model_card_has_the_evaluation_numbers(tmp_path: Path, model_dir: Path) -> None:
    recognizer = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    report = report_from_predictions([3, 3, 6, 0], [3, 6, 6, 0], [[1 / 7] * 7] * 4)
    recognizer.save_pretrained(
        tmp_path / "m", evaluation={"public_test": report, "public_test + TTA": {"accuracy": 0.8}}
    )
    card = (tmp_path / "m" / MODEL_CARD_NAME).read_text()
    assert "| public_test | 4 | 75.00% |" in card
    assert "| public_test + TTA | - | 80.00% |" in card
    assert "Confusion matrix" in card  # the full report of a given EvaluationReport
    # The summaries travel in config.json, so a re-saved model keeps its numbers.
    again = EmotionRecognizer.from_pretrained(tmp_path / "m", device="cpu")
    assert again.metadata["evaluation"]["public_test"]["accuracy"] == 0.75
    again.save_pretrained(tmp_path / "again")
    assert "| public_test | 4 | 75.00% |" in (tmp_path / "again" / MODEL_CARD_NAME).read_text()


def test_missing_unexpected_and_misshaped_tensors_are_listed(
    tmp_path: Path, model_dir: Path
) -> None:
    state = load_file(model_dir / WEIGHTS_NAME)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / ONNX_NAME).unlink()  # the weights themselves are loaded (and checked)

    save_file({k: v for k, v in state.items() if k != "fc.bias"}, broken / WEIGHTS_NAME)
    with pytest.raises(ModelLoadError, match=r"missing: fc\.bias"):
        EmotionRecognizer.from_pretrained(broken)

    save_file({**state, "head.weight": torch.zeros(2)}, broken / WEIGHTS_NAME)
    with pytest.raises(ModelLoadError, match=r"unexpected: head\.weight"):
        EmotionRecognizer.from_pretrained(broken)

    config = json.loads((broken / CONFIG_NAME).read_text())
    (broken / CONFIG_NAME).write_text(
        json.dumps({**config, "num_classes": 5, "labels": list("abcde")})
    )
    save_file(state, broken / WEIGHTS_NAME)
    with pytest.raises(ModelLoadError, match=r"mis-shaped: fc\.bias \(7,\) \(model: \(5,\)\)"):
        EmotionRecognizer.from_pretrained(broken)


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "Cannot read"), ('{"stem": "huge"}', "invalid"), ("[1, 2]", "JSON object")],
)
def test_broken_config_is_a_load_error(
    tmp_path: Path, model_dir: Path, content: str, match: str
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / ONNX_NAME).unlink()  # the weights themselves are loaded (and checked)
    (broken / CONFIG_NAME).write_text(content)
    with pytest.raises(ModelLoadError, match=match):
        EmotionRecognizer.from_pretrained(broken)


def test_not_a_safetensors_file_is_a_load_error(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / ONNX_NAME).unlink()  # the weights themselves are loaded (and checked)
    (broken / WEIGHTS_NAME).write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="safetensors"):
        EmotionRecognizer.from_pretrained(broken)


def test_folders_and_names_that_hold_no_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"model\.safetensors or config\.json"):
        resolve_model_files(tmp_path / "empty")
    with pytest.raises(WeightsNotFoundError, match="No such folder"):
        resolve_model_files(tmp_path / "missing")
    with pytest.raises(WeightsNotFoundError, match="No such folder"):
        resolve_model_files("./runs/missing/model")
    with pytest.raises(WeightsNotFoundError, match="neither an existing folder"):
        resolve_model_files("not a name")
    (tmp_path / "model.pth").write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="from_state_dict"):
        resolve_model_files(tmp_path / "model.pth")
    with pytest.raises(InvalidArgumentError):
        resolve_model_files(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("runs/fer2013_resnet18", "its first part 'runs' is a folder here"),
        ("./runs/fer2013_resnet18", "it starts with './'"),
        ("runs/fer2013/model", "it has 2 path separators"),
        ("~/no-such-emotionnet-folder/model", "it starts with '~'"),
    ],
)
def test_a_mistyped_local_folder_is_no_such_folder_not_a_download(
    name: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "fer2013_quick").mkdir(parents=True)
    # The Hub is never asked: a download attempt would fail the test.
    never = lambda *a, **k: pytest.fail("downloaded")  # noqa: E731
    monkeypatch.setattr("emotionnet.models.hub._download", never)
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_model_files(name)
    message = str(info.value)
    assert message.startswith(f"No such folder: {name!r}") and why in message
    if name.startswith(("runs", "./runs")):  # the folder that exists, and what is in it
        assert str(tmp_path / "runs") in message and "fer2013_quick" in message


def test_a_hub_id_whose_first_part_is_no_local_folder_goes_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    asked = []
    monkeypatch.setattr(
        "emotionnet.models.hub._download", lambda repo_id, **_: asked.append(repo_id)
    )
    resolve_model_files("org/emotion")
    assert asked == ["org/emotion"]


# --- the bundled default model ---------------------------------------------------------------


def test_default_model_loads_without_network(bundled_model: Path, offline: None) -> None:
    recognizer = EmotionRecognizer.from_pretrained(device="cpu")
    assert recognizer.source == "the bundled default model"
    assert recognizer.model.state_dict()["fc.weight"].dtype == torch.float32
    assert load_file(bundled_model / WEIGHTS_NAME)["fc.weight"].dtype == torch.float16
    (prediction,) = recognizer.predict(np.zeros((48, 48), np.uint8))
    assert isinstance(prediction, Prediction) and prediction.label in recognizer.labels
    # EmotionNet's own door opens the same model.
    model = EmotionNet.from_pretrained()
    assert model.state_dict()["fc.weight"].dtype == torch.float32
    assert torch.equal(model.state_dict()["fc.weight"], recognizer.model.state_dict()["fc.weight"])


# --- a hand-built Hugging Face cache, offline ------------------------------------------------


def build_cache(cache: Path, repo_id: str, source: Path, commit: str, refs: list[str]) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    names = [CONFIG_NAME, WEIGHTS_NAME] + [ONNX_NAME] * (source / ONNX_NAME).is_file()
    for name in names:
        data = (source / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)


def test_offline_cache_hit(tmp_path: Path, model_dir: Path, offline: None) -> None:
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main", "v1"])
    for revision in (None, "v1", COMMIT_A):
        recognizer = EmotionRecognizer.from_pretrained(
            "org/emotion", revision=revision, cache_dir=tmp_path, device="cpu"
        )
        assert recognizer.config.stem == "imagenet"
    assert recognizer.source == f"org/emotion@{COMMIT_A}"


def test_offline_without_a_cached_copy_fails_at_once_and_says_how_to_fix_it(
    tmp_path: Path, offline: None, hub: HubServer
) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "not in the Hugging Face cache" in message
    assert hub.requests == []  # no attempt to reach the (reachable) endpoint at all


def test_env_var_alone_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: HubServer
) -> None:
    # Set after huggingface_hub was imported: its own constant still says online.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert hub.requests == []


def test_local_files_only_names_itself(tmp_path: Path, hub: HubServer) -> None:
    with pytest.raises(WeightsNotFoundError, match="local_files_only=True"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, local_files_only=True)
    assert hub.requests == []


def test_unreachable_hub_without_cache_fails_at_once(tmp_path: Path) -> None:
    # huggingface_hub alone would retry for ~20 s; a refused connection is final at once.
    with pytest.raises(WeightsNotFoundError, match=r"could not be reached.*HF_HUB_OFFLINE=1"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)


def test_unreachable_hub_with_a_cached_copy_uses_it(tmp_path: Path, model_dir: Path) -> None:
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    recognizer = EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert recognizer.config.stem == "imagenet"


# --- a loopback Hub --------------------------------------------------------------------------


@dataclass
class HubServer:
    """Serves ``/{repo}/resolve/{revision}/{file}`` like the Hub, for a few repositories.

    With ``stall`` set, a GET sends the headers and half the file, then nothing more until the
    test ends: a download that starts and never finishes. With ``trickle`` set, a GET sends
    the file that many bytes at a time, one piece every 20 ms. With ``hide_size`` set, no
    answer says how long the file is (no Content-Length).
    """

    commits: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    refs: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    stall: bool = False
    trickle: int = 0
    hide_size: bool = False
    etags: dict[str, str] = field(default_factory=dict)  # file name -> ETag sent instead
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, repo_id: str, commit: str, folder: Path, refs: list[str]) -> None:
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.commits.setdefault(repo_id, {})[commit] = files
        for ref in refs:
            self.refs.setdefault(repo_id, {})[ref] = commit

    def gets(self) -> int:
        return sum(method == "GET" for method, _ in self.requests)


def _handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, body: bool) -> None:
            server.requests.append((self.command, self.path))
            parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404, "RepoNotFound", body)
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo_id not in server.commits:
                return self._error(404, "RepoNotFound", body)
            commit = server.refs[repo_id].get(revision, revision)
            if commit not in server.commits[repo_id]:
                return self._error(404, "RevisionNotFound", body)
            files = server.commits[repo_id][commit]
            if filename not in files:
                return self._error(404, "EntryNotFound", body, commit)
            data = files[filename]
            self.send_response(200)
            etag = server.etags.get(filename) or hashlib.sha256(data).hexdigest()
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", commit)
            if not server.hide_size:
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body and server.stall:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                server.stop.wait(120)
            elif body and server.trickle:
                for start in range(0, len(data), server.trickle):
                    if server.stop.wait(0.02):
                        return
                    try:
                        self.wfile.write(data[start : start + server.trickle])
                        self.wfile.flush()
                    except OSError:  # the client is gone
                        return
            elif body:
                self.wfile.write(data)

        def _error(self, status: int, code: str, body: bool, commit: str | None = None) -> None:
            message = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            if body:
                self.wfile.write(message)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    state = HubServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


def test_download_then_cache_hit(
    tmp_path: Path, model_dir: Path, hub: HubServer, faces: torch.Tensor, monkeypatch: Any
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    cache = tmp_path / "cache"
    first = EmotionRecognizer.from_pretrained(
        "org/emotion", cache_dir=cache, device="cpu", backend="torch"
    )
    downloads = hub.gets()
    assert downloads == 3  # config.json, model.safetensors and model.onnx
    local = EmotionRecognizer.from_pretrained(model_dir, device="cpu", backend="torch")
    expected = probabilities(local, faces)
    np.testing.assert_array_equal(probabilities(first, faces), expected)

    # Online again: only metadata is checked, nothing is downloaded twice.
    EmotionRecognizer.from_pretrained("org/emotion", cache_dir=cache, device="cpu")
    assert hub.gets() == downloads

    # And with the server gone, the cache is enough.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    seen = len(hub.requests)
    cached = EmotionRecognizer.from_pretrained(
        "org/emotion", cache_dir=cache, local_files_only=True, device="cpu", backend="torch"
    )
    np.testing.assert_array_equal(probabilities(cached, faces), expected)
    assert len(hub.requests) == seen


def test_revision_pinning(tmp_path: Path, model_dir: Path, hub: HubServer) -> None:
    newer = tmp_path / "newer"
    config = ModelConfig(stem="imagenet", num_classes=3, labels=("neg", "neu", "pos"))
    EmotionRecognizer(build_model(config), config, device="cpu").save_pretrained(newer)
    hub.add("org/emotion", COMMIT_A, model_dir, ["v1"])
    hub.add("org/emotion", COMMIT_B, newer, ["main"])
    cache = tmp_path / "cache"

    def labels(revision: str | None) -> tuple[str, ...]:
        return EmotionRecognizer.from_pretrained(
            "org/emotion", revision=revision, cache_dir=cache, device="cpu"
        ).labels

    assert labels(None) == ("neg", "neu", "pos")
    assert labels("v1")[3] == "happy"
    assert labels(COMMIT_A)[3] == "happy"
    with pytest.raises(WeightsNotFoundError, match="no revision 'v2'"):
        labels("v2")


def test_hub_errors_are_weights_not_found(tmp_path: Path, hub: HubServer) -> None:
    hub.add("org/partial", COMMIT_A, tmp_path, ["main"])  # an empty folder: no files
    with pytest.raises(WeightsNotFoundError, match="There is no Hub repository 'org/nothing'"):
        EmotionRecognizer.from_pretrained("org/nothing", cache_dir=tmp_path / "cache")
    with pytest.raises(WeightsNotFoundError, match=r"has no config\.json"):
        EmotionRecognizer.from_pretrained("org/partial", cache_dir=tmp_path / "cache")


def test_push_to_hub_uploads_the_saved_layout(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {}

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        calls["create_repo"] = (repo_id, kwargs)
        return SimpleNamespace(repo_id=repo_id)  # the RepoUrl huggingface_hub returns

    def upload_folder(self: Any, **kwargs: Any) -> str:
        calls["files"] = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        calls["upload"] = kwargs
        return "https://hub.example/org/emotion/commit/123"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", create_repo)
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", upload_folder)
    recognizer = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    url = recognizer.push_to_hub("org/emotion", private=True, commit_message="release")
    assert url.endswith("/commit/123")
    assert calls["create_repo"] == ("org/emotion", {"private": True, "exist_ok": True})
    assert calls["files"] == [MODEL_CARD_NAME, CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME]
    assert calls["upload"]["commit_message"] == "release"


# --- models that load but would answer garbage ------------------------------------------------


def _with_weights(model_dir: Path, folder: Path, change: dict[str, torch.Tensor]) -> Path:
    shutil.copytree(model_dir, folder)
    save_file({**load_file(model_dir / WEIGHTS_NAME), **change}, folder / WEIGHTS_NAME)
    return folder


def _nan_at_one(shape: torch.Size) -> torch.Tensor:
    tensor = torch.zeros(shape)
    tensor.view(-1)[0] = float("nan")
    return tensor


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"conv1.weight": _nan_at_one(torch.Size([64, 1, 7, 7]))}, r"conv1\.weight has NaN"),
        ({"fc.bias": torch.full((7,), float("inf"))}, r"fc\.bias has NaN or infinite"),
        ({"bn1.running_var": -torch.ones(64)}, r"bn1\.running_var has negative values"),
        (
            {"layer1.0.bn2.running_var": torch.full((64,), -1e-3)},
            r"layer1\.0\.bn2\.running_var has negative",
        ),
        ({"fc.weight": torch.ones(7, 512, dtype=torch.int64)}, r"fc\.weight is torch\.int64"),
        ({"fc.bias": torch.ones(7, dtype=torch.bool)}, r"fc\.bias is torch\.bool, expected a fl"),
        ({"conv1.weight": torch.ones(64, 1, 7, 7, dtype=torch.uint8)}, r"conv1\.weight is"),
        # float64 beyond the float32 range becomes inf when load_state_dict casts it.
        ({"fc.bias": torch.full((7,), 1e300, dtype=torch.float64)}, r"fc\.bias has NaN or inf"),
        ({"fc.bias": torch.full((7,), 7e4, dtype=torch.float32).half()}, r"fc\.bias has NaN"),
        (
            {"bn1.num_batches_tracked": torch.tensor(float("nan"))},
            r"bn1\.num_batches_tracked is torch\.float32 with values that are not integers",
        ),
    ],
    ids=[
        "nan",
        "inf",
        "negative-var",
        "negative-var-deep",
        "int",
        "bool",
        "uint8",
        "float64-overflow",
        "float16-overflow",
        "nan-counter",
    ],
)
def test_unusable_weights_are_refused_at_load(
    tmp_path: Path, model_dir: Path, change: dict[str, torch.Tensor], match: str
) -> None:
    folder = _with_weights(model_dir, tmp_path / "bad", change)
    with pytest.raises(ModelLoadError, match=match) as info:
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    assert "unusable" in str(info.value) and "healthy model" in str(info.value)


def test_every_unusable_tensor_is_listed(tmp_path: Path, model_dir: Path) -> None:
    state = load_file(model_dir / WEIGHTS_NAME)
    change = {
        key: torch.full_like(value, float("nan"))
        for key, value in state.items()
        if "bn" in key and value.is_floating_point()
    }
    folder = _with_weights(model_dir, tmp_path / "bad", change)
    with pytest.raises(ModelLoadError, match=rf"and {len(change) - 8} more\."):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


def test_unusable_state_dicts_are_refused_by_from_state_dict(model_dir: Path) -> None:
    state = load_file(model_dir / WEIGHTS_NAME)
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    with pytest.raises(ModelLoadError, match=r"fc\.weight has NaN"):
        EmotionRecognizer.from_state_dict(state, config=ModelConfig(stem="imagenet"))


def _with_config(model_dir: Path, folder: Path, text: str) -> Path:
    shutil.copytree(model_dir, folder)
    (folder / CONFIG_NAME).write_text(text)
    return folder


def _changed_config(model_dir: Path, **changes: Any) -> str:
    return json.dumps({**json.loads((model_dir / CONFIG_NAME).read_text()), **changes})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"mean": [float("nan")]}, r"mean values must be finite"),
        ({"mean": [float("inf")]}, r"mean values must be finite"),
        ({"mean": [10**400]}, r"mean values must be finite"),
        ({"std": [float("nan")]}, r"std values must be positive \(greater than 1e-06\)"),
        ({"std": [float("inf")]}, r"std values must be positive"),
        ({"std": [1e-9]}, r"std values must be positive \(greater than 1e-06\)"),
        ({"std": [-0.2]}, r"std values must be positive"),
        (
            {"labels": ["a", "b", "a", "c", "d", "e", "b"]},
            r"labels must name each class once, but \['a', 'b'\] appear",
        ),
        ({"labels": ["a", "b", "c", "d", "e", "f", " "]}, r"labels must not be empty names"),
        ({"input_size": 20000}, r"input_size must be an integer in 8\.\.1024, got 20000"),
        ({"input_size": 4}, r"input_size must be an integer in 8\.\.1024, got 4"),
        ({"input_size": 48.0}, r"input_size must be a positive integer"),
        ({"in_chans": 100000}, r"in_chans must be an integer in 1\.\.64"),
        ({"num_classes": 20000}, r"num_classes must be an integer in 1\.\.10000"),
        ({"dropout": float("nan")}, r"dropout must be a probability"),
    ],
    ids=lambda value: "-" if isinstance(value, str) else json.dumps(value)[:30],
)
def test_unusable_configs_are_refused_at_load(
    tmp_path: Path, model_dir: Path, changes: dict[str, Any], match: str
) -> None:
    folder = _with_config(model_dir, tmp_path / "bad", _changed_config(model_dir, **changes))
    with pytest.raises(ModelLoadError, match=rf"config .*is invalid: {match}"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


def test_deeply_nested_config_is_a_load_error(tmp_path: Path, model_dir: Path) -> None:
    depth = 200_000
    for text in ("[" * depth + "]" * depth, '{"metadata": ' + "[" * depth + "]" * depth + "}"):
        folder = _with_config(model_dir, tmp_path / f"deep{len(text)}", text)
        with pytest.raises(ModelLoadError, match="nested too deeply"):
            EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


def test_oversized_and_non_utf8_configs_are_load_errors(tmp_path: Path, model_dir: Path) -> None:
    folder = _with_config(model_dir, tmp_path / "big", " " * (17 * 1024 * 1024) + "{}")
    with pytest.raises(ModelLoadError, match="larger than 16 MiB"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    (folder / CONFIG_NAME).write_bytes(b'{"stem": "\xff"}')
    with pytest.raises(ModelLoadError, match="not UTF-8"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    (folder / CONFIG_NAME).write_text('{"input_size": ' + "9" * 5000 + "}")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("name", [CONFIG_NAME, WEIGHTS_NAME])
def test_a_fifo_in_place_of_a_model_file_is_refused_without_hanging(
    tmp_path: Path, model_dir: Path, name: str
) -> None:
    folder = tmp_path / "fifo"
    shutil.copytree(model_dir, folder)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with pytest.raises(ModelLoadError, match=r"is a named pipe \(FIFO\), not a regular file"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")
    # The readers refuse it too when called directly (as for a Hub cache entry).
    with pytest.raises(ModelLoadError, match=r"named pipe \(FIFO\), not a regular file"):
        if name == CONFIG_NAME:
            read_config(folder / name)
        else:
            load_weights(build_model(ModelConfig(stem="imagenet")), folder / name)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_model_config_load_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / CONFIG_NAME)
    with pytest.raises(InvalidArgumentError, match="FIFO"):
        ModelConfig.load(tmp_path)


def test_a_directory_in_place_of_the_weights_is_refused(tmp_path: Path, model_dir: Path) -> None:
    folder = tmp_path / "dir"
    shutil.copytree(model_dir, folder)
    (folder / WEIGHTS_NAME).unlink()
    (folder / WEIGHTS_NAME).mkdir()
    with pytest.raises(ModelLoadError, match="is a directory, not a regular file"):
        EmotionRecognizer.from_pretrained(folder, device="cpu", backend="torch")


# --- Hub limits: ids and endpoints checked first, every call bounded in time ------------------


@pytest.mark.parametrize(
    "repo_id",
    ["org/..", "a/b--c", "org/name.git", "org/-name", "org/name-", "org/" + "x" * 100],
)
def test_invalid_repo_ids_fail_before_any_network_call(
    tmp_path: Path, hub: HubServer, repo_id: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="is not a valid Hub repo id"):
        EmotionRecognizer.from_pretrained(repo_id, cache_dir=tmp_path)
    assert hub.requests == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "huggingface.co",
        "ftp://huggingface.co",
        "http://",
        "https://:443",
        "http://host:port",
        "http://host:99999",
        "http://ho st",
        "http://host/?q=1",
        "http://host/#x",
        "http://host\n",
    ],
)
def test_malformed_endpoints_fail_before_any_network_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(InvalidArgumentError, match=r"HF_ENDPOINT=.* is not an http\(s\) URL"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)


def test_endpoint_with_a_path_and_trailing_slash_is_accepted(
    tmp_path: Path, model_dir: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")
    recognizer = EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert recognizer.config.stem == "imagenet"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "30", True])
def test_invalid_timeouts_are_refused(model_dir: Path, timeout: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout must be a positive number"):
        EmotionRecognizer.from_pretrained(model_dir, timeout=timeout)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_invalid_timeout_variable_is_refused_before_any_network_call(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("EMOTIONNET_HUB_TIMEOUT", value)
    with pytest.raises(InvalidArgumentError, match="EMOTIONNET_HUB_TIMEOUT="):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert hub.requests == []


@pytest.fixture(scope="module")
def silent_server() -> Iterator[str]:
    """A server that accepts TCP connections and never answers (module-wide: retries that
    outlive a test still reach it, not a port some other server reuses)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes the handshakes; nothing is ever read
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


class _Error500(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        message = b'{"error": "boom"}'
        self.send_response(500)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(message)

    do_GET = do_HEAD = _answer


@pytest.fixture(scope="module")
def error_server() -> Iterator[str]:
    """A server (or proxy) that answers HTTP 500 to everything."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Error500)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_hub_that_never_answers_fails_within_the_timeout(
    tmp_path: Path, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    with pytest.raises(WeightsNotFoundError) as info:
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, timeout=1.5)
    message = str(info.value)
    assert silent_server in message
    assert "HF_HUB_OFFLINE=1" in message and "save_pretrained" in message


def test_the_timeout_variable_bounds_the_hub_calls(
    tmp_path: Path, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    monkeypatch.setenv("EMOTIONNET_HUB_TIMEOUT", "1")
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE=1"):
        resolve_model_files("org/emotion", cache_dir=tmp_path)


def test_a_hub_that_never_answers_falls_back_to_the_cache(
    tmp_path: Path, model_dir: Path, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    files = resolve_model_files("org/emotion", cache_dir=tmp_path, timeout=1)
    assert files.weights.read_bytes() == (model_dir / WEIGHTS_NAME).read_bytes()


def test_emotionnet_from_pretrained_takes_the_same_bounded_download(
    tmp_path: Path, model_dir: Path, hub: HubServer, silent_server: str, monkeypatch: Any
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    model = EmotionNet.from_pretrained("org/emotion", cache_dir=tmp_path / "cache")
    assert hub.gets() == 3  # config.json, model.safetensors and model.onnx, as the recognizer
    local = EmotionNet.from_pretrained(model_dir)
    assert all(torch.equal(v, local.state_dict()[k]) for k, v in model.state_dict().items())
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    with pytest.raises(WeightsNotFoundError, match=r"within 1 s"):
        EmotionNet.from_pretrained("org/other", cache_dir=tmp_path / "cache", timeout=1)


def test_a_hub_answering_http_500_fails_at_once(
    tmp_path: Path, error_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", error_server)
    with pytest.raises(WeightsNotFoundError, match=r"answered HTTP 500.*Try again later"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, timeout=10)


def test_a_closed_port_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    with pytest.raises(WeightsNotFoundError, match=r"could not be reached \(ConnectError"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, timeout=10)


@pytest.fixture
def fresh_hub_session() -> Iterator[None]:
    """huggingface_hub reads proxy variables when it creates its HTTP client: a new one."""
    huggingface_hub.close_session()
    yield
    huggingface_hub.close_session()


@pytest.mark.parametrize("proxy", ["error", "closed"])
def test_a_closed_port_behind_a_proxy_fails_within_the_timeout(
    tmp_path: Path,
    error_server: str,
    monkeypatch: pytest.MonkeyPatch,
    proxy: str,
    fresh_hub_session: None,
) -> None:
    # A proxy that cannot reach the endpoint answers with an error (here HTTP 500); a proxy
    # that is down refuses the connection. Neither may take huggingface_hub's ~24 s of retries.
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, error_server if proxy == "error" else _closed_port())
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE=1"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, timeout=10)


def test_a_download_that_stalls_fails_within_the_timeout(
    tmp_path: Path, model_dir: Path, hub: HubServer
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    hub.stall = True
    with pytest.raises(WeightsNotFoundError, match=r"within 1\.5 s.*timeout=\.\.\. or EMOTION"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path, timeout=1.5)


def test_an_abandoned_download_does_not_delay_interpreter_exit(
    tmp_path: Path, model_dir: Path, hub: HubServer
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    hub.stall = True
    script = (
        "from emotionnet import EmotionRecognizer\n"
        "from emotionnet.errors import WeightsNotFoundError\n"
        "try:\n"
        f"    EmotionRecognizer.from_pretrained('org/emotion', cache_dir={str(tmp_path)!r},"
        " timeout=3)\n"
        "except WeightsNotFoundError:\n"
        "    print('refused')\n"
    )
    # The download is blocked on the stalled body when the time is up, and would stay blocked
    # for 10 minutes (huggingface_hub's read timeout) if exit waited for it. (3 s: time for
    # the download process to start and reach the server on a busy machine.)
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DOWNLOAD_TIMEOUT": "600",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
    assert hub.gets() >= 1


# --- bounded downloads: nothing keeps running, nothing partial stays --------------------------


def _child_processes() -> list[int]:
    """The ids of this process's children that are still running (Linux)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(int(stat_file.parent.name))
    return children


def _cache_state(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.lstat().st_size for p in cache.rglob("*")}


def _assert_nothing_left(cache: Path, threads_before: set[int | None]) -> None:
    """After the error: no download thread or process, no partial file or lock, no growth."""
    threads = [
        t.name
        for t in threading.enumerate()
        if t.ident not in threads_before and "process_request" not in t.name  # the server's
    ]
    assert threads == []
    if Path("/proc/self/stat").exists():
        assert _child_processes() == []
    leftovers = [p.name for p in cache.rglob("*") if p.name.endswith((".incomplete", ".lock"))]
    assert leftovers == []
    state = _cache_state(cache)
    time.sleep(0.5)  # an abandoned download would still be writing
    assert _cache_state(cache) == state


@pytest.mark.parametrize("mode", ["stall", "trickle"])
def test_a_download_past_its_time_bound_is_stopped_and_cleaned_up(
    tmp_path: Path, model_dir: Path, hub: HubServer, mode: str
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    if mode == "stall":
        hub.stall = True
    else:
        hub.trickle = 65536  # 3 MiB/s: the 45 MB weights would take 15 s
    cache = tmp_path / "cache"
    before = {t.ident for t in threading.enumerate()}
    tries = 0
    # Each retry used to leave one more download running; on a busy machine a try may end
    # before its download starts, so try until two downloads were started (and stopped).
    while hub.gets() < 2 and tries < 10:
        tries += 1
        with pytest.raises(WeightsNotFoundError, match=r"within 1 s.*partial file removed"):
            resolve_model_files("org/emotion", cache_dir=cache, timeout=1)
    assert hub.gets() >= 2
    _assert_nothing_left(cache, before)
    # Nothing of the weights is kept (config.json, when it arrived whole, is).
    weights = hashlib.sha256((model_dir / WEIGHTS_NAME).read_bytes()).hexdigest()
    blobs = cache / "models--org--emotion" / "blobs"
    assert not any(blob.name.startswith(weights) for blob in blobs.iterdir())


def test_a_file_announced_larger_than_the_limit_is_not_downloaded(
    tmp_path: Path, model_dir: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("emotionnet.models.hub._MAX_MODEL_FILE_BYTES", 2**20)  # 1 MiB
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    cache = tmp_path / "cache"
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(
        ModelLoadError,
        match=r"model\.safetensors of 'org/emotion' as 4\d\.\d MiB, "
        r"more than the 1\.0 MiB",
    ):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=cache, timeout=20)
    assert ("GET", f"/org/emotion/resolve/{COMMIT_A}/{WEIGHTS_NAME}") not in hub.requests
    assert not any(path.endswith(WEIGHTS_NAME) for method, path in hub.requests if method == "GET")
    _assert_nothing_left(cache, before)


def test_a_file_that_grows_past_the_limit_while_downloading_is_stopped(
    tmp_path: Path, model_dir: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No size announced: the limit is enforced on the bytes that arrive.
    monkeypatch.setattr("emotionnet.models.hub._MAX_MODEL_FILE_BYTES", 2**20)
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    hub.hide_size = True
    hub.trickle = 2**20  # 50 MiB/s: the download runs, not at once
    cache = tmp_path / "cache"
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(ModelLoadError, match=r"grew past .*download was stopped") as info:
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=cache, timeout=60)
    # huggingface_hub writes 10 MB pieces: stopped at the first past the limit, long before
    # the whole 45 MB.
    grown = float(str(info.value).split("grew past ")[1].split(" MiB")[0])
    assert 1 < grown < 0.8 * (model_dir / WEIGHTS_NAME).stat().st_size / 2**20
    _assert_nothing_left(cache, before)


def test_the_default_size_limits() -> None:
    import emotionnet.models.hub as hub_module

    assert hub_module._file_limit(WEIGHTS_NAME) == 2**30  # 1 GiB, as documented
    assert hub_module._file_limit(CONFIG_NAME) == 16 * 2**20


def _blob(cache: Path, name: str) -> Path:
    return (cache / "models--org--emotion" / "snapshots" / COMMIT_A / name).resolve()


@pytest.mark.parametrize("name", [WEIGHTS_NAME, CONFIG_NAME])
def test_a_corrupt_cached_file_names_itself_and_the_fix_offline(
    tmp_path: Path, model_dir: Path, offline: None, name: str
) -> None:
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    blob = _blob(tmp_path, name)
    with blob.open("r+b") as file:  # truncated (weights) or garbage (config)
        file.truncate(blob.stat().st_size // 2) if name == WEIGHTS_NAME else file.write(
            b"\x00garbage"
        )
    with pytest.raises(ModelLoadError) as info:
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    message = str(info.value)
    assert f"The file {name} of 'org/emotion'" in message and "is corrupt" in message
    assert str(blob) in message and "Delete it (rm" in message


@pytest.mark.parametrize("name", [WEIGHTS_NAME, CONFIG_NAME])
def test_a_corrupt_cached_file_is_downloaded_anew_online(
    tmp_path: Path, model_dir: Path, hub: HubServer, name: str
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    blob = _blob(tmp_path, name)
    blob.write_bytes(blob.read_bytes()[:100])
    files = resolve_model_files("org/emotion", cache_dir=tmp_path, timeout=30)
    assert hub.gets() == 1  # only the damaged file
    assert files.weights.read_bytes() == (model_dir / WEIGHTS_NAME).read_bytes()
    assert files.config.read_bytes() == (model_dir / CONFIG_NAME).read_bytes()
    recognizer = EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert recognizer.config.stem == "imagenet"


def test_a_damaged_file_from_the_hub_is_refused_and_not_kept(
    tmp_path: Path, model_dir: Path, hub: HubServer
) -> None:
    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    files = hub.commits["org/emotion"][COMMIT_A]
    data = files[WEIGHTS_NAME]
    files[WEIGHTS_NAME] = data[:-10] + b"0123456789"  # served under the right file's ETag
    hub.etags[WEIGHTS_NAME] = hashlib.sha256(data).hexdigest()  # as a broken mirror would
    cache = tmp_path / "cache"
    with pytest.raises(
        ModelLoadError, match=r"does not match the checksum.*removed from the cache"
    ):
        resolve_model_files("org/emotion", cache_dir=cache, timeout=30)
    assert not _blob(cache, WEIGHTS_NAME).exists()


def test_a_cached_file_that_is_not_a_checksum_name_is_not_hashed(
    tmp_path: Path, model_dir: Path, offline: None
) -> None:
    # Caches without symlinks (Windows) hold copies: nothing to check them against.
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    link = tmp_path / "models--org--emotion" / "snapshots" / COMMIT_A / CONFIG_NAME
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data)
    assert resolve_model_files("org/emotion", cache_dir=tmp_path).config == link


def test_the_download_process_ends_when_its_parent_goes(
    tmp_path: Path, model_dir: Path, hub: HubServer
) -> None:
    # A parent killed outright cannot kill its download: the child watches its stdin.
    import emotionnet.models.hub as hub_module

    hub.add("org/emotion", COMMIT_A, model_dir, ["main"])
    hub.stall = True
    request = {
        "sys_path": sys.path,
        "repo_id": "org/emotion",
        "revision": None,
        "cache_dir": str(tmp_path),
        "token": None,
        "endpoint": hub.url,
        "files": [CONFIG_NAME, WEIGHTS_NAME],
        "limits": {CONFIG_NAME: 2**20, WEIGHTS_NAME: 2**30},
        "seconds": 600,
    }
    child = subprocess.Popen(
        [sys.executable, "-I", "-c", hub_module._CHILD_BOOT, str(hub_module._CHILD_SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert child.stdin is not None
    child.stdin.write((json.dumps(request) + "\n").encode())
    child.stdin.flush()
    deadline = time.monotonic() + 30
    while hub.gets() == 0 and time.monotonic() < deadline:  # the download has started
        time.sleep(0.05)
    assert child.poll() is None
    child.stdin.close()  # what the parent's death does
    try:
        assert child.wait(timeout=20) == 3
    finally:
        child.kill()
        child.wait()
