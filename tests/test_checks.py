"""The shared argument checks: one wording, bools never pass for numbers or choices."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from emotionnet._checks import (
    check_choice,
    check_int,
    check_number,
    check_probability,
    resolve_device,
)
from emotionnet.errors import InvalidArgumentError


def test_choice_lists_the_valid_values() -> None:
    assert check_choice("split", "test", ("train", "test")) == "test"
    with pytest.raises(InvalidArgumentError) as error:
        check_choice("split", "val", ("train", "test"))
    assert str(error.value) == (
        "Unknown value 'val' for argument split. Valid values are {'train', 'test'}."
    )
    with pytest.raises(InvalidArgumentError):
        check_choice("flag", True, (1, 2))  # True == 1, but a bool is not a choice


@given(st.integers(-5, 5), st.integers(-5, 5))
def test_int_bounds(value: int, minimum: int) -> None:
    if value >= minimum:
        assert check_int("n", value, minimum=minimum) == value
    else:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        with pytest.raises(InvalidArgumentError, match=f"n must be {wanted}, got {value}"):
            check_int("n", value, minimum=minimum)


@pytest.mark.parametrize("bad", [True, 1.0, "1", None])
def test_int_refuses_other_types(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"must be a positive integer, got .*; hint\."):
        check_int("n", bad, minimum=1, hint="hint")


def test_number_interval_and_finiteness() -> None:
    assert check_number("p", 0, low=0, high=1, high_open=True) == 0.0
    for bad in (1, math.nan, math.inf, False, "0.5"):
        with pytest.raises(InvalidArgumentError, match=r"p must be a number in \[0, 1\)"):
            check_number("p", bad, low=0, high=1, high_open=True)


def test_probability() -> None:
    assert check_probability("p", 1) == 1.0
    with pytest.raises(InvalidArgumentError, match=r"p must be a probability in \[0, 1\]"):
        check_probability("p", 1.5)


def test_one_device_resolver_for_every_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"
    assert resolve_device("cuda:1", here=False) == "cuda:1"  # a config for another machine
    assert resolve_device("auto", here=False) == "auto"
    with pytest.raises(InvalidArgumentError) as error:
        resolve_device("cuda")
    assert str(error.value) == (
        "device='cuda' was given but CUDA is not available here; pass device='cpu', or None "
        "(CUDA when available, else the CPU)."
    )
    with pytest.raises(InvalidArgumentError, match=r"--device gpu is not a device .*; use cpu\."):
        resolve_device("gpu", given="--device gpu", fix="use cpu", here=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == "cuda"
