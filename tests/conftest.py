"""Shared fixtures: tiny seeded checkpoints, a tiny glue_data folder, compiled artifacts, the CLI.

Everything here is session-scoped and built in tmp_path_factory, so a model compiles once and
several tests read the same artifact. Tests must not modify what these fixtures return: copy first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from model_factory import make_checkpoint, write_budget_glue_data, write_glue_data

CALIBRATION_SAMPLES = 16  # enough for MinMax ranges on the tiny data, fast on two cores
CLI_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def glue_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A glue_data root with SST-2 and STS-B train/dev TSVs (40 rows each)."""
    return write_glue_data(tmp_path_factory.mktemp("glue_data"))


@pytest.fixture(scope="session")
def budget_glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A glue_data root whose SST-2 train split (320 rows) leaves the accuracy-budget search a
    held-out slice of 200+ after a 16-sentence calibration sample; dev is the tiny set."""
    return write_budget_glue_data(tmp_path_factory.mktemp("budget_glue_data"))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide SST-2 classifier, trained for a moment so its logits have margins."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny-classifier"), train_steps=60)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny classifier's fp32 ONNX export and four sentences encoded one at a time, for
    tests of graph rewrites that run on ONNX Runtime."""
    from bertc.compiler.export import encode, export_onnx
    from bertc.compiler.loading import load_model

    loaded = load_model(str(tiny_classifier))
    graph = export_onnx(loaded, tmp_path_factory.mktemp("tiny-onnx") / "model.onnx")
    sentences = (
        "a warm and funny film .",
        "dull",
        "it is not the film it could have been , sadly , though the cast tries hard .",
        "the best movie of the year !",
    )
    return graph, [encode(loaded, [text], padding_to=None) for text in sentences]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BertModel without a task head or pooler."""
    return make_checkpoint(
        tmp_path_factory.mktemp("tiny-encoder"), head="encoder", drop_pooler=True
    )


@pytest.fixture(scope="session")
def compile_once(tmp_path_factory: pytest.TempPathFactory, glue_data_dir: Path) -> Callable:
    """`compile_once(source, target, quantization="static", task="sst2", **options)`: the
    CompileResult of that compile, built on first use and shared for the session. Token ids in
    unless `tokenizer=` says otherwise: most tests look at the model graph itself."""
    from bertc.compiler.core.enums import QuantizationMode, TokenizerMode
    from bertc.compiler.pipeline import CompileOptions, compile_model

    results = {}

    def build(source, target: str, quantization: str = "static", task: str = "sst2", **options):
        key = (str(source), target, quantization, task, tuple(sorted(options.items())))
        if key not in results:
            out = tmp_path_factory.mktemp(f"artifact-{target}") / "artifact"
            settings = dict(
                target=target,
                task=task,
                data_dir=glue_data_dir,
                quantization=QuantizationMode(quantization),
                calibration_samples=CALIBRATION_SAMPLES,
                tokenizer=TokenizerMode.NONE,
            )
            settings.update(options)
            results[key] = compile_model(str(source), out, CompileOptions(**settings))
        return results[key]

    return build


@pytest.fixture
def artifact_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """`artifact_copy(path)`: a private copy of a shared artifact, for a test that writes into
    it (verify's reports/, edits, damage), so no test sees another's writes."""
    import shutil

    def copy(artifact: Path) -> Path:
        destination = tmp_path / f"copy-{Path(artifact).parent.name}-{Path(artifact).name}"
        shutil.copytree(artifact, destination)
        return destination

    return copy


def bertc_command() -> list[str]:
    """The console script installed beside this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("bertc")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "bertc.compiler.cli"]


@pytest.fixture(scope="session")
def bertc_cli() -> Callable:
    """`bertc_cli(*args, env={...})`: run `bertc` in a fresh process and return the finished
    CompletedProcess (text); with `wait=False`, the running Popen, so several can run at once."""

    def run(*args, env: dict[str, str] | None = None, cwd: Path | None = None, wait: bool = True):
        environment = {key: value for key, value in os.environ.items() if key != "BERTC_DEBUG"}
        environment.update({"COLUMNS": "200", **(env or {})})
        command = [*bertc_command(), *map(str, args)]
        if not wait:
            return subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment,
                cwd=cwd,
            )
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            cwd=cwd,
            timeout=CLI_TIMEOUT_S,
        )

    return run


@pytest.fixture(scope="session")
def reference(tiny_classifier: Path, glue_data_dir: Path):
    """The tiny dev sentences as one padded batch, and PyTorch fp32's logits for them."""
    import torch
    from bertc.compiler.export import encode
    from bertc.compiler.loading import load_model
    from model_factory import read_sst2_dev

    loaded = load_model(str(tiny_classifier))
    batch = encode(loaded, [text for text, _ in read_sst2_dev(glue_data_dir)], padding_to=None)
    with torch.no_grad():
        logits = loaded.module(*(torch.from_numpy(batch[name]) for name in loaded.input_names))
    return batch, logits.numpy()


@pytest.fixture
def without_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a checkpoint the contract refuses through, for tests of the recipes' own notes (the
    defence behind the contract)."""
    import bertc.compiler.families
    import bertc.compiler.loading
    import bertc.compiler.pipeline

    for module in (bertc.compiler.families, bertc.compiler.loading, bertc.compiler.pipeline):
        monkeypatch.setattr(module, "check_supported", lambda config: None)
