"""Fixtures for the calibration tests: where the real GLUE files are, skipping when absent."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from bertc.calibration import Example, get_task, read_glue_tsv

REPO_ROOT = Path(__file__).resolve().parents[2]


def glue_root() -> Path:
    """BERTC_GLUE_DIR, else the shared assets beside the repo."""
    configured = os.environ.get("BERTC_GLUE_DIR")
    return Path(configured) if configured else (REPO_ROOT / ".." / "shared/assets/glue").resolve()


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real glue_data root, or a skip saying how to provide it."""
    root = glue_root()
    if not root.is_dir():
        pytest.skip(f"real GLUE data not found at {root}; set BERTC_GLUE_DIR to a glue_data folder")
    return root


@pytest.fixture(scope="session")
def read_real(glue_dir: Path) -> Callable[[str, str], list[Example]]:
    """Read a real split, skipping the test when that one file is absent."""

    def read(task_name: str, split: str = "dev") -> list[Example]:
        task = get_task(task_name)
        path = glue_dir / task.folder / task.split_files[split]
        if not path.is_file():
            pytest.skip(f"{path} not present in the GLUE assets")
        return read_glue_tsv(task, glue_dir, split)

    return read
