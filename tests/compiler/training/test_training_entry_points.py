"""`bertc.compiler.training` re-exports the entry points lazily: the package imports no torch,
and each name is the very object its module defines."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

ENTRY_POINTS = {
    "FinetuneOptions": "finetune",
    "finetune_model": "finetune",
    "DistillOptions": "distill",
    "distill_model": "distill",
    "PruneOptions": "prune",
    "prune_model": "prune",
    "GridOptions": "grid",
    "run_grid": "grid",
}


def test_importing_the_package_imports_no_torch():
    code = (
        "import sys, bertc.compiler.training as t; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(json.dumps([heavy, t.__all__]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    )
    heavy, names = json.loads(result.stdout)
    assert heavy == [], f"import bertc.compiler.training pulled in {heavy}"
    assert names == sorted(ENTRY_POINTS)


@pytest.mark.parametrize("name, module", sorted(ENTRY_POINTS.items()))
def test_each_entry_point_is_its_modules_object(name: str, module: str):
    package = importlib.import_module("bertc.compiler.training")
    defining = importlib.import_module(f"bertc.compiler.training.{module}")
    assert getattr(package, name) is getattr(defining, name)


def test_an_unknown_name_is_an_attribute_error():
    import bertc.compiler.training as training

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        training.nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from bertc.compiler.training import nope", {})
