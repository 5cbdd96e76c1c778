"""Shared fixtures: hypothesis profile, the real-data root, tiny generated images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# The first torch call in a process is slow: no per-example deadline.
settings.register_profile("emotionnet", deadline=None, max_examples=50)
settings.load_profile("emotionnet")

# One intra-op thread: tiny test models gain nothing from more, and on a shared 2-core machine
# a second OpenMP thread that waits for a busy core makes every op many times slower.
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _fer2013_path() -> Path:
    env = os.environ.get("EMOTIONNET_FER2013")
    path = Path(env) if env else PROJECT_ROOT.parent / "shared" / "data" / "fer2013"
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


@pytest.fixture(scope="session")
def fer2013_root() -> Path:
    """Root of the real FER2013 image folders; skips (or fails in CI) when absent."""
    path = _fer2013_path()
    if not (path / "train").is_dir():
        message = (
            f"FER2013 not found at {path}: set EMOTIONNET_FER2013 to the folder that holds "
            "train/ and test/ to run the integration tests."
        )
        if os.environ.get("EMOTIONNET_REQUIRE_DATA") == "1":
            pytest.fail(message + " (EMOTIONNET_REQUIRE_DATA=1 makes this an error)")
        pytest.skip(message)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test under umask 022 (the usual default: files 0o644), then restore the old one."""
    if os.name != "posix":
        pytest.skip("permission bits and the umask are POSIX")
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


# --- recognizer (helper: recognizer) ---


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ResNet18 (ImageNet stem: the cheapest) saved by save_pretrained (float32)."""
    from emotionnet.models import ModelConfig, build_model
    from emotionnet.recognizer import EmotionRecognizer

    torch.manual_seed(0)
    config = ModelConfig(stem="imagenet")
    folder = tmp_path_factory.mktemp("model")
    EmotionRecognizer(build_model(config), config, device="cpu").save_pretrained(folder)
    return folder


@pytest.fixture
def bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the default model bundled in src/emotionnet/weights/default.

    Same layout as the release (fp16 model.safetensors, config.json, README.md), random
    weights; from_pretrained() with no name loads it.
    """
    import emotionnet.models.hub
    from emotionnet.models import ModelConfig, build_model
    from emotionnet.recognizer import EmotionRecognizer

    torch.manual_seed(1)
    config = ModelConfig(stem="imagenet")
    folder = tmp_path / "weights" / "default"
    recognizer = EmotionRecognizer(build_model(config), config, device="cpu")
    recognizer.save_pretrained(folder, dtype=torch.float16)
    monkeypatch.setattr(emotionnet.models.hub, "bundled_model_dir", lambda: folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _private_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's FER2013 cache out of the user's ~/.cache/emotionnet."""
    old = os.environ.get("EMOTIONNET_CACHE_DIR")
    os.environ["EMOTIONNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("emotionnet-cache"))
    yield
    if old is None:
        os.environ.pop("EMOTIONNET_CACHE_DIR", None)
    else:
        os.environ["EMOTIONNET_CACHE_DIR"] = old
