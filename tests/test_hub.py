"""Saving and loading models: local folders, the bundled model, the Hugging Face cache and Hub.

The Hub is emulated: a hand-built cache with HF_HUB_OFFLINE=1, and a loopback HTTP server
speaking the ``/resolve/`` protocol via HF_ENDPOINT. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emotionnet import EmotionRecognizer, Prediction
from emotionnet.errors import (
    InvalidArgumentError,
    ModelLoadError,
    WeightsNotFoundError,
)
from emotionnet.hub import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, resolve_model_files
from emotionnet.metrics import report_from_predictions
from emotionnet.models import ModelConfig, build_model

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
        [WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME]
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
    assert modes == {WEIGHTS_NAME: 0o644, CONFIG_NAME: 0o644, MODEL_CARD_NAME: 0o644}


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
    (broken / CONFIG_NAME).write_text(content)
    with pytest.raises(ModelLoadError, match=match):
        EmotionRecognizer.from_pretrained(broken)


def test_not_a_safetensors_file_is_a_load_error(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / WEIGHTS_NAME).write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="safetensors"):
        EmotionRecognizer.from_pretrained(broken)


def test_folders_and_names_that_hold_no_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"model\.safetensors or config\.json"):
        resolve_model_files(tmp_path / "empty")
    with pytest.raises(WeightsNotFoundError, match="neither an existing folder"):
        resolve_model_files(tmp_path / "missing")
    with pytest.raises(WeightsNotFoundError, match="neither an existing folder"):
        resolve_model_files("./runs/missing/model")
    (tmp_path / "model.pth").write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="from_state_dict"):
        resolve_model_files(tmp_path / "model.pth")
    with pytest.raises(InvalidArgumentError):
        resolve_model_files(42)  # type: ignore[arg-type]


# --- the bundled default model ---------------------------------------------------------------


def test_default_model_loads_without_network(bundled_model: Path, offline: None) -> None:
    recognizer = EmotionRecognizer.from_pretrained(device="cpu")
    assert recognizer.source == "the bundled default model"
    assert recognizer.model.state_dict()["fc.weight"].dtype == torch.float32
    assert load_file(bundled_model / WEIGHTS_NAME)["fc.weight"].dtype == torch.float16
    prediction = recognizer.predict(np.zeros((48, 48), np.uint8))
    assert isinstance(prediction, Prediction) and prediction.label in recognizer.labels


# --- a hand-built Hugging Face cache, offline ------------------------------------------------


def build_cache(cache: Path, repo_id: str, source: Path, commit: str, refs: list[str]) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
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
    # huggingface_hub alone would retry for ~20 s; the connection check answers at once.
    with pytest.raises(WeightsNotFoundError, match=r"could not be downloaded.*cannot connect"):
        EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)


def test_unreachable_hub_with_a_cached_copy_uses_it(tmp_path: Path, model_dir: Path) -> None:
    build_cache(tmp_path, "org/emotion", model_dir, COMMIT_A, ["main"])
    recognizer = EmotionRecognizer.from_pretrained("org/emotion", cache_dir=tmp_path)
    assert recognizer.config.stem == "imagenet"


# --- a loopback Hub --------------------------------------------------------------------------


@dataclass
class HubServer:
    """Serves ``/{repo}/resolve/{revision}/{file}`` like the Hub, for a few repositories."""

    commits: dict[str, dict[str, dict[str, bytes]]] = field(default_factory=dict)
    refs: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

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
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
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
    assert downloads == 2  # config.json and model.safetensors
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

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> str:
        calls["create_repo"] = (repo_id, kwargs)
        return repo_id

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
    assert calls["files"] == [MODEL_CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    assert calls["upload"]["commit_message"] == "release"
