"""The shape of the package: imports point one way, and the CLI starts without torch.

The import graph is read from the source (module-level ``import``/``from`` statements, not
those inside functions, which run only when called): it must have no cycles, and no module
may import the package root (``from . import x`` where ``x`` is not a submodule), which would
make the root's order of imports matter.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "emotionnet"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    continue  # for the type checker only
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in known else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name in known)

    visit(tree.body)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _top_level_imports(path, name, known) for name, path in modules.items()}


def _packages_above(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:depth]) for depth in range(1, len(parts))}


def test_no_module_imports_a_package_above_it() -> None:
    # Neither the root nor, in a subpackage, its own __init__ (emotionnet.training.trainer
    # must import emotionnet.training.config, not emotionnet.training).
    upward = {
        name: sorted(targets & _packages_above(name))
        for name, targets in _graph().items()
        if targets & _packages_above(name)
    }
    assert not upward, f"modules importing a package above them: {upward}"


def test_the_import_graph_has_no_cycles() -> None:
    graph = {name: targets - {"emotionnet"} for name, targets in _graph().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_graph_reader_sees_real_imports() -> None:
    graph = _graph()
    assert "emotionnet.errors" in graph["emotionnet.images"]
    assert "emotionnet.inference" in graph["emotionnet.metrics"]
    assert "emotionnet.training.callbacks" in graph["emotionnet.training.trainer"]
    assert "emotionnet.errors" in graph["emotionnet.training.trainer"]  # from ..errors import
    assert "emotionnet.training.trainer" in graph["emotionnet.training"]
    assert _packages_above("emotionnet.training.trainer") == {"emotionnet", "emotionnet.training"}


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["predict"], ["--version"]])
def test_the_cli_answers_help_and_usage_errors_without_torch(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from emotionnet.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'PIL', 'cv2') if m in sys.modules)\n"
        "print('heavy:' + ','.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("heavy:")]
    assert line == "heavy:", f"{argv} imported {line[6:]}"


def test_python_dash_m_data_needs_no_global_warning_filter() -> None:
    # The lazy package root does not import emotionnet.data, so runpy finds nothing to warn
    # about; the module no longer installs a process-wide warnings filter at import.
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "emotionnet.data", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m emotionnet.data" in result.stdout
    for path in (PACKAGE / "data").glob("*.py"):
        assert "filterwarnings" not in path.read_text(encoding="utf-8"), path


def _all_imports(path: Path, name: str) -> set[str]:
    """Package modules ``path`` imports anywhere, inside functions too (not for typing only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and id(node) not in typing_only:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            found.add(f"{base}.{node.module}" if node.module else base)
    return found


def test_the_models_never_import_the_recognizer_not_even_when_called() -> None:
    # The ONNX export takes a model and its config, never a recognizer, so the layer of
    # models stays below the product layer at run time too (there was an export <->
    # recognizer cycle once).
    offenders = {
        name: sorted(i for i in _all_imports(path, name) if i.startswith("emotionnet.recognizer"))
        for name, path in _modules().items()
        if name.startswith("emotionnet.models")
    }
    assert not {name: found for name, found in offenders.items() if found}
    assert "emotionnet.models.config" in _all_imports(
        PACKAGE / "models" / "onnx.py", "emotionnet.models.onnx"
    )  # the walk sees this module's imports


# The inference layer: what `pip install emotionnet` (no torch) runs.
INFERENCE_LAYER = (
    "emotionnet",
    "emotionnet._atomic",
    "emotionnet._checks",
    "emotionnet._config",
    "emotionnet._crop_check",
    "emotionnet._io",
    "emotionnet._onnx_check",
    "emotionnet._optional",
    "emotionnet._version",
    "emotionnet.batch",
    "emotionnet.calibration",
    "emotionnet.cli",
    "emotionnet.errors",
    "emotionnet.faces",
    "emotionnet.images",
    "emotionnet.labels",
    "emotionnet.models",
    "emotionnet.models.config",
    "emotionnet.models.hub",
    "emotionnet.preprocessing",
    "emotionnet.recognizer",
    "emotionnet.runtime",
    "emotionnet.scoring",
    "emotionnet.tta",
    "emotionnet.video",
)
TRAINING_ONLY = ("torch", "torchvision", "sklearn", "safetensors", "onnx", "scipy")


def _third_party_imports(path: Path) -> set[str]:
    """Top-level packages ``path`` imports when it is imported (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = node.test
                if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


@pytest.mark.parametrize("name", INFERENCE_LAYER)
def test_the_inference_layer_never_imports_the_training_stack(name: str) -> None:
    path = _modules()[name]
    heavy = sorted(_third_party_imports(path) & set(TRAINING_ONLY))
    assert not heavy, f"{name} imports {heavy} at module level; import it where it is needed"
    imported = _top_level_imports(path, name, set(_modules()))
    outside = sorted(module for module in imported if module not in INFERENCE_LAYER)
    assert not outside, f"{name} imports {outside}, which are not of the inference layer"


def _type_only_graph() -> dict[str, set[str]]:
    """The import graph with the imports under ``if TYPE_CHECKING:`` added."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                for inner in node.body:
                    if isinstance(inner, ast.ImportFrom) and inner.level:
                        base = (
                            package.rsplit(".", inner.level - 1)[0] if inner.level > 1 else package
                        )
                        target = f"{base}.{inner.module}" if inner.module else base
                        for alias in inner.names:
                            candidate = f"{target}.{alias.name}"
                            found.add(candidate if candidate in known else target)
        graph[name] = found - {name, "emotionnet"}
    return graph


def test_the_only_circle_is_the_type_only_trainer_and_callbacks_one() -> None:
    runtime = _graph()
    type_only = _type_only_graph()
    circles = sorted(
        (a, b)
        for a in runtime
        for b in (runtime[a] | type_only[a])
        if a < b and a in (runtime.get(b, set()) | type_only.get(b, set()))
    )
    assert circles == [("emotionnet.training.callbacks", "emotionnet.training.trainer")]


def _page_numbers() -> tuple[int, int]:
    """The module and line counts the architecture page states."""
    page = (PACKAGE.parent.parent / "docs" / "architecture.rst").read_text(encoding="utf-8")
    match = re.search(r"(\d+) modules and ([\d,]+) lines", page)
    assert match, "docs/architecture.rst must state 'N modules and N lines' of the package"
    return int(match.group(1)), int(match.group(2).replace(",", ""))


def test_the_package_is_no_larger_than_the_architecture_page_says() -> None:
    # The page's numbers were measured when the house got one door per room (issue 29: 63
    # modules and 20,282 lines before). Growing past them is a decision: update the page.
    modules, lines = _page_numbers()
    assert (modules, lines) < (63, 20_282) and lines < 20_282
    paths = _modules().values()
    actual_lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in paths)
    assert len(paths) <= modules, f"{len(paths)} modules; the page says {modules}"
    assert actual_lines <= lines, f"{actual_lines} lines; the page says {lines}"
