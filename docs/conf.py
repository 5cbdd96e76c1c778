"""Sphinx configuration for the emotionnet documentation.

Build offline (CI):  ``sphinx-build -W --keep-going -b html docs docs/_build/html``
Doctests:            ``sphinx-build -W -b doctest docs docs/_build/doctest``
Set ``EMOTIONNET_DOCS_ONLINE=1`` to link to the Python/PyTorch/NumPy docs through intersphinx
(it downloads their inventories, so it stays off where there is no network).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(DOCS))

from _results import write_results  # noqa: E402

import emotionnet  # noqa: E402

project = "emotionnet"
author = "The emotionnet developers"
copyright = "The emotionnet developers"
release = emotionnet.__version__
version = ".".join(release.split(".")[:2])

# sphinx-autodoc-typehints still calls a Sphinx API deprecated for Sphinx 10; nothing to act on.
warnings.filterwarnings("ignore", message=r".*set_application.*", category=DeprecationWarning)

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
]
ONLINE = os.environ.get("EMOTIONNET_DOCS_ONLINE") == "1"
if ONLINE:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "torchvision": ("https://docs.pytorch.org/vision/stable", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "PIL": ("https://pillow.readthedocs.io/en/stable", None),
        "huggingface_hub": ("https://huggingface.co/docs/huggingface_hub/main/en", None),
    }

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# The draft README is for the lead to merge into README.md, not a page of the site.
# The image type alias names torch.Tensor as a string: the inference modules never import torch,
# so its forward reference cannot be resolved where the alias is used (detect_faces).
suppress_warnings = ["myst.header", "sphinx_autodoc_typehints.forward_reference"]

# -- autodoc / napoleon / typehints ------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
typehints_document_rtype_none = False
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
typehints_use_signature = False
typehints_defaults = "comma"
always_document_param_types = False
# Nitpicky mode would demand a target for every third-party type in every signature
# (torch.Tensor, PIL.Image.Image, ...), which needs intersphinx, which needs the network.
nitpicky = False

# -- doctest ----------------------------------------------------------------------------------
# pytest runs these examples with their module's globals (``--doctest-modules``); here every
# page shares one namespace, so give it what each module's examples may use without importing.
doctest_global_setup = """
import importlib
import pkgutil
import numpy as np
import torch
torch.set_num_threads(1)
import emotionnet
from emotionnet import *
for _info in pkgutil.walk_packages(emotionnet.__path__, prefix="emotionnet."):
    if any(_part.startswith("_") for _part in _info.name.split(".")):
        continue  # private modules, and data/__main__ (it runs the CLI)
    _module = importlib.import_module(_info.name)
    globals().update({k: v for k, v in vars(_module).items() if not k.startswith("_")})
"""
doctest_test_doctest_blocks = "default"

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"emotionnet {release}"
html_static_path = ["_static"]
html_show_sourcelink = False

# The Results page is generated from the evaluation report committed with the release weights.
write_results(ROOT, DOCS / "_generated")


# -- docstrings of re-exported constants ----------------------------------------------------------
# ``.. autodata:: emotionnet.EMOTIONS`` looks for the constant's docstring (the string literal
# after its assignment) in ``emotionnet/__init__.py``, which only re-exports it, and falls back
# to the docstring of its type: "Built-in immutable sequence", "str(object='') -> str". The
# same holds for the subpackages' re-exports (``emotionnet.training.OPTIMIZERS``). Use the
# docstring written where the constant is defined (``labels.py``, ``training/config.py``).


def _definition_docstring(name: str, obj: object) -> list[str] | None:
    import importlib
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer
    from sphinx.util.docstrings import prepare_docstring

    package, _, attribute = name.rpartition(".")
    if package != "emotionnet" and not package.startswith("emotionnet."):
        return None
    for info in pkgutil.walk_packages(emotionnet.__path__, prefix="emotionnet."):
        if info.name.endswith("__main__"):
            continue  # data/__main__ runs the CLI
        module = importlib.import_module(info.name)
        if vars(module).get(attribute) is not obj:
            continue
        docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
        if ("", attribute) in docs:
            return prepare_docstring("\n".join(docs["", attribute]))
    return None


def _use_definition_docstrings(app, what, name, obj, options, lines) -> None:
    if what != "data":
        return
    docstring = _definition_docstring(name, obj)
    if docstring is not None:
        lines[:] = docstring


def setup(app):
    app.connect("autodoc-process-docstring", _use_definition_docstrings)
