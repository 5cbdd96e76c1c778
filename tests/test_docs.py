"""The documentation tells the truth: every public name is in the API reference, and the
README's set-up commands are the ones CI runs."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import pytest

import emotionnet

ROOT = Path(__file__).resolve().parent.parent
API_RST = ROOT / "docs" / "api.rst"
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"

_DIRECTIVE = re.compile(
    r"^\.\.\s+(?:auto(?:function|class|data|exception|module|attribute|method)|py:\w+)::\s+"
    r"(emotionnet(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$",
    re.MULTILINE,
)


def _documented_targets() -> list[str]:
    return _DIRECTIVE.findall(API_RST.read_text(encoding="utf-8"))


def _top_level_names(targets: list[str]) -> set[str]:
    return {target.split(".", 1)[1] for target in targets if target.count(".") == 1}


def test_every_public_name_is_in_the_api_reference() -> None:
    documented = _top_level_names(_documented_targets())
    missing = sorted(set(emotionnet.__all__) - documented)
    assert not missing, f"public names without an entry in docs/api.rst: {missing}"


def test_the_api_reference_has_no_stale_entries() -> None:
    documented = _top_level_names(_documented_targets())
    stale = sorted(documented - set(emotionnet.__all__))
    assert not stale, f"docs/api.rst documents names that are not in emotionnet.__all__: {stale}"


def _public_modules() -> list[str]:
    """Every public module, those of the subpackages (``emotionnet.training.trainer``) too."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(emotionnet.__path__, prefix="emotionnet.")
        if not any(part.startswith("_") for part in info.name.split("."))
    )


def _documented_as(module_name: str, name: str) -> str:
    """Where a public name is documented: under the shortest path that re-exports it."""
    value = getattr(importlib.import_module(module_name), name)
    parts = module_name.split(".")
    for depth in range(1, len(parts)):
        package = importlib.import_module(".".join(parts[:depth]))
        if name in getattr(package, "__all__", ()) and getattr(package, name) is value:
            return f"{package.__name__}.{name}"
    return f"{module_name}.{name}"


def test_subpackage_modules_are_seen() -> None:
    assert "emotionnet.training.trainer" in _public_modules()
    assert _documented_as("emotionnet.training.trainer", "Trainer") == "emotionnet.Trainer"
    assert (
        _documented_as("emotionnet.training.callbacks", "EarlyStopping")
        == "emotionnet.training.EarlyStopping"
    )


@pytest.mark.parametrize("module_name", _public_modules())
def test_every_public_name_of_every_module_is_in_the_api_reference(module_name: str) -> None:
    """Names only a submodule exports (``emotionnet.tta.TTA_MODES``) are documented too,
    under the top-level name when the package re-exports them, else under the shortest
    subpackage that re-exports them (``emotionnet.training.EarlyStopping``), else under the
    module's own name."""
    module = importlib.import_module(module_name)
    targets = set(_documented_targets())
    if module_name in targets:  # automodule with members
        return
    missing = []
    for name in getattr(module, "__all__", ()):
        documented_as = _documented_as(module_name, name)
        # A constant may be documented where it is defined (its docstring lives there).
        value = getattr(module, name)
        defined = {
            f"{other}.{name}"
            for other in _public_modules()
            if name in getattr(importlib.import_module(other), "__all__", ())
            and getattr(importlib.import_module(other), name) is value
        }
        if documented_as not in targets and not defined & targets:
            missing.append(documented_as)
    assert not missing, f"public names without an entry in docs/api.rst: {missing}"


def test_api_reference_entries_are_unique() -> None:
    targets = _documented_targets()
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    assert not duplicates, f"documented twice in docs/api.rst: {duplicates}"


def test_submodule_entries_in_the_api_reference_exist() -> None:
    for target in _documented_targets():
        if target.count(".") < 2:
            continue
        module_name, _, attribute = target.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            # emotionnet.errors.X style: the whole target may itself be a module.
            importlib.import_module(target)
            continue
        assert hasattr(module, attribute), f"docs/api.rst documents {target}, which does not exist"


def _setup_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Set up\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Set up' section"
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_has_two_setup_commands() -> None:
    commands = _setup_commands()
    assert len(commands) == 2, f"expected two set-up commands in README.md, found {commands}"
    install_and_run, install_and_test = commands
    assert install_and_run.startswith("pip install ")
    assert install_and_test.startswith("pip install ")
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _setup_commands()[1]
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    assert test_command in ci_lines, f"{CI_SCRIPT} does not run {test_command!r} verbatim"


def _extras_requirements(extras: set[str]) -> list[str]:
    """The requirements that installing ``.[extras]`` brings, following ``emotionnet[...]``."""
    tomllib = pytest.importorskip("tomllib")
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    found: list[str] = []
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional.get(extra, []):
            inner = re.fullmatch(r"emotionnet\[([^\]]+)\]", requirement)
            if inner:
                todo.extend(name.strip() for name in inner.group(1).split(","))
            else:
                found.append(requirement)
    return found


def test_readme_first_command_installs_what_the_quickstart_uses() -> None:
    """The Quickstart runs as written after the first set-up command: predict_faces needs OpenCV."""
    text = README.read_text(encoding="utf-8")
    quickstart = re.search(r"^## Quickstart\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert quickstart, "README.md has no '## Quickstart' section"
    first = _setup_commands()[0]
    targets = re.findall(r"""pip install (?:-e )?["']?\.(?:\[([^\]]*)\])?""", first)
    assert targets, f"the first set-up command installs no checkout: {first!r}"
    extras = {name.strip() for group in targets for name in group.split(",") if name.strip()}
    requirements = _extras_requirements(extras)
    if "predict_faces(" in quickstart.group(1):
        assert any(r.startswith("opencv") for r in requirements), (
            f"the Quickstart detects faces, but {first!r} installs no OpenCV (extras {extras})"
        )


def test_readme_says_how_to_install_a_cpu_only_torch() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Set up\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section is not None
    text = " ".join(section.group(1).split())
    found = re.search(
        r"pip install torch==(\S+) torchvision==(\S+) --index-url "
        r"https://download\.pytorch\.org/whl/cpu",
        text,
    )
    assert found, "README's set-up names no matching CPU torch and torchvision builds"
    # The pair is one PyTorch release's (a CPU torch beside a CUDA torchvision fails) and
    # within the torch extra's pins.
    pairs = {"2.14.1": "0.29.1", "2.13.0": "0.28.0", "2.9.1": "0.24.1"}
    assert pairs.get(found.group(1)) == found.group(2), found.group(0)
    requirements = " ".join(_extras_requirements({"torch"}))
    assert f"torch>=2.1,<={found.group(1)}" in requirements or found.group(1) == "2.9.1"


def test_readme_main_command_points_at_things_that_exist() -> None:
    words = shlex.split(_setup_commands()[0].replace("&&", " && "))
    for i, word in enumerate(words):
        if word == "-m" and i + 1 < len(words):
            assert importlib.util.find_spec(words[i + 1]) is not None, words[i + 1]
        if "/" in word and not word.startswith(("../", "-", "http")):
            assert (ROOT / word).exists(), f"the README's first command uses {word}, not in repo"


@pytest.mark.parametrize(
    "page",
    sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.rst")),
)
def test_docs_pages_name_only_existing_example_scripts(page: str) -> None:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for script in set(re.findall(r"examples/([a-z0-9_]+\.py)", text)):
        assert (ROOT / "examples" / script).is_file(), f"{page} mentions examples/{script}"


def test_results_page_is_generated_from_committed_reports(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from _results import write_results
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from emotionnet import report_from_predictions

    out = tmp_path / "generated"
    placeholder = write_results(tmp_path, out).read_text(encoding="utf-8")
    assert "Placeholder" in placeholder

    folder = tmp_path / "src" / "emotionnet" / "weights" / "default"
    folder.mkdir(parents=True)
    report = report_from_predictions([0, 3, 3, 6], [0, 3, 6, 6], tta="flip")
    report.save_json(folder / "evaluation_public_test_flip.json")
    text = write_results(tmp_path, out).read_text(encoding="utf-8")
    assert "Placeholder" not in text
    assert "75.00%" in text  # the accuracy, from the report
    assert "test-time augmentation: ``flip``" in text
    assert (out / "confusion_matrix_evaluation_public_test_flip.png").is_file()
