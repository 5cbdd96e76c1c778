"""scripts/package_default_model.py: how its check of a run's reports counts changed predictions.

The script refuses to bundle weights whose fresh evaluation disagrees with the run's own
reports; ``--max-changed`` admits the few faces that a GPU's convolutions move against the CPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emotionnet.metrics import report_from_predictions

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "package_default_model.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_default_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_reports_move_nothing(script: ModuleType) -> None:
    y = [0, 1, 2, 3, 4, 5, 6, 3]
    report = report_from_predictions(y, y)
    assert script.moved_predictions(report, report_from_predictions(y, y)) == 0


def test_other_faces_are_not_comparable(script: ModuleType) -> None:
    assert (
        script.moved_predictions(
            report_from_predictions([0, 1], [0, 1]), report_from_predictions([0, 1, 2], [0, 1, 2])
        )
        is None
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60
    ),
)
def test_moved_predictions_is_a_lower_bound_and_sees_one_moved_face(
    script: ModuleType, faces: list[tuple[int, int, int]]
) -> None:
    """Half the matrices' distance never exceeds the faces whose prediction changed."""
    y_true = np.array([t for t, _, _ in faces])
    before = np.array([p for _, p, _ in faces])
    after = np.array([q for _, _, q in faces])
    moved = script.moved_predictions(
        report_from_predictions(y_true, after), report_from_predictions(y_true, before)
    )
    assert moved is not None and 0 <= moved <= int((before != after).sum())
    if (before != after).sum() == 1:  # one moved face is always seen
        assert moved == 1
