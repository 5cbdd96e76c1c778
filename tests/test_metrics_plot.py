"""Tests of emotionnet.metrics.plot_confusion_matrix (the ``plot`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from emotionnet import EMOTIONS
from emotionnet.errors import InvalidArgumentError, MissingDependencyError
from emotionnet.metrics import plot_confusion_matrix, report_from_predictions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "emotionnet\[plot\]"'):
        plot_confusion_matrix([[1, 0], [0, 1]])


def test_plot_of_a_report_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = report_from_predictions([0, 1, 2, 3, 4, 5, 6, 6], [0, 1, 2, 3, 4, 5, 6, 3])
    path = tmp_path / "confusion.png"
    figure = plot_confusion_matrix(report, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == list(EMOTIONS)
    assert "87.50%" in axes.get_title()
    cells = [t.get_text() for t in axes.texts]
    assert len(cells) == 49 and cells[6 * 7 + 3] == "0.50"


def test_plot_of_counts(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    figure = plot_confusion_matrix(
        [[3, 1], [0, 0]], tmp_path / "c.png", normalize=False, labels=["yes", "no"], title="T"
    )
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.texts] == ["3", "1", "0", "0"]
    assert axes.get_title() == "T"
    assert (tmp_path / "c.png").stat().st_size > 0


def test_plot_rejects_bad_matrices() -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(InvalidArgumentError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(InvalidArgumentError, match="3 labels"):
        plot_confusion_matrix([[1, 0], [0, 1]], labels=["a", "b", "c"])
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        plot_confusion_matrix([[1, -1], [0, 1]])
