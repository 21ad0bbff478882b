"""Data loss: `--overwrite` replaces only what bertc made (issue 16, kind 1).

Every writing command (compile, finetune, distill, prune), pointed with --overwrite at something
bertc did not make or at its own input, is refused with exit 13 before any work, and every file
under the test's folder keeps its bytes. A previous bertc output is replaced; a failed
`compile --verify --overwrite` leaves the previous artifact byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bertc.compiler.core import errors

# What each command writes, given its input checkpoint and its --out (tiny, fast settings).
COMMANDS: dict[str, Callable[[Path, Path, Path], list]] = {
    "compile": lambda model, out, data: [
        "compile", model, "--target", "onnx", "--quantization", "none", "--tokenizer", "none",
        "--task", "sst2", "--data-dir", data, "--out", out, "--overwrite",
    ],
    "finetune": lambda model, out, data: [
        "finetune", model, "--task", "sst2", "--data-dir", data, "--max-steps", "1",
        "--train-samples", "8", "--out", out, "--overwrite",
    ],
    "distill": lambda model, out, data: [
        "distill", "--teacher", model, "--student", model, "--task", "sst2", "--data-dir", data,
        "--max-steps", "1", "--train-samples", "8", "--out", out, "--overwrite",
    ],
    "prune": lambda model, out, data: [
        "prune", model, "--pattern", "2:4", "--task", "sst2", "--data-dir", data,
        "--max-steps", "1", "--train-samples", "8", "--out", out, "--overwrite",
    ],
}  # fmt: skip


def user_files(root: Path) -> Path:
    """A folder of the user's own files."""
    folder = root / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return folder


def foreign_manifest(root: Path) -> Path:
    """A folder with a manifest.json that is not bertc's (another tool's, or a hand-written one)."""
    folder = root / "other-tool"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"files": {}, "version": 3}))
    (folder / "weights.bin").write_bytes(b"\x01" * 64)
    return folder


def foreign_report(root: Path) -> Path:
    """A checkpoint folder with a finetune.json bertc did not write (the user's own notes)."""
    folder = root / "hf-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "finetune.json").write_text(json.dumps({"lr": 1e-4, "notes": "mine"}))
    return folder


def a_file(root: Path) -> Path:
    path = root / "notes.txt"
    path.write_text("a file, not a folder")
    return path


# Each target of a refused --overwrite: how to make it, given the folder and the input checkpoint.
REFUSED_TARGETS: dict[str, Callable[[Path, Path], Path]] = {
    "user files": lambda root, model: user_files(root),
    "foreign manifest": lambda root, model: foreign_manifest(root),
    "foreign report": lambda root, model: foreign_report(root),
    "a file": lambda root, model: a_file(root),
    "the source checkpoint": lambda root, model: model,
    "a folder holding the source": lambda root, model: model.parent,
}


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (and the set of folders), by relative path."""
    digest = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
    return digest


@pytest.fixture
def workspace(tmp_path: Path, tiny_classifier: Path) -> tuple[Path, Path]:
    """A folder holding a private copy of the tiny classifier (models/ckpt): the run's input."""
    model = Path(shutil.copytree(tiny_classifier, tmp_path / "models" / "ckpt"))
    return tmp_path, model


@pytest.mark.parametrize("target", list(REFUSED_TARGETS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwrite_of_what_bertc_did_not_make_is_refused_and_nothing_changes(
    command: str, target: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    out = REFUSED_TARGETS[target](root, model)
    before = tree_digest(root)
    result = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert result.returncode == errors.OutputExistsError.exit_code == 13, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert result.stderr.startswith(f"error: --overwrite refused: {out} "), result.stderr
    assert tree_digest(root) == before


@pytest.mark.parametrize("target", ["user files", "the source checkpoint"])
@pytest.mark.parametrize("command", ["compile", "finetune", "distill", "prune"])
def test_the_python_api_refuses_the_same(
    command: str, target: str, workspace, glue_data_dir: Path
) -> None:
    root, model = workspace
    out = REFUSED_TARGETS[target](root, model)
    before = tree_digest(root)
    with pytest.raises(errors.OutputExistsError, match="--overwrite refused"):
        api_call(command, model, out, glue_data_dir)
    assert tree_digest(root) == before


def api_call(command: str, model: Path, out: Path, data: Path) -> None:
    if command == "compile":
        from bertc.compiler.pipeline import CompileOptions, compile_model

        options = CompileOptions(target="onnx", task="sst2", data_dir=data, overwrite=True)
        compile_model(str(model), out, options)
    elif command == "finetune":
        from bertc.compiler.training.finetune import FinetuneOptions, finetune_model

        finetune_model(str(model), out, FinetuneOptions("sst2", data, overwrite=True))
    elif command == "distill":
        from bertc.compiler.training.distill import DistillOptions, distill_model

        distill_model(str(model), str(model), out, DistillOptions("sst2", data, overwrite=True))
    else:
        from bertc.compiler.training.prune import PruneOptions, prune_model

        prune_model(str(model), out, PruneOptions("2:4", "sst2", data, overwrite=True))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwrite_replaces_a_previous_output_of_the_same_command(
    command: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    out = root / "out"
    first = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert first.returncode == 0, first.stderr
    second = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert second.returncode == 0, second.stderr
    assert sorted(path.name for path in root.iterdir()) == ["models", "out"]  # nothing aside


# Where a user's own file sits inside a previous output (relative path, contents).
USER_FILES_INSIDE = {
    "top level": "mynotes.txt",
    "hidden": ".mynotes",
    "a new folder": "mine/notes.txt",
    "in a folder bertc wrote": None,  # filled per output: beside a listed nested file
}


@pytest.mark.parametrize("where", list(USER_FILES_INSIDE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwrite_refuses_an_output_holding_a_file_bertc_did_not_write(
    command: str, where: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    out = root / "out"
    first = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert first.returncode == 0, first.stderr
    name = USER_FILES_INSIDE[where]
    if name is None:
        folders = [p for p in out.rglob("*") if p.is_dir()]
        name = f"{folders[0].relative_to(out)}/mine.txt" if folders else "mine.txt"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("mine")
    before = tree_digest(root)
    result = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert result.returncode == errors.OutputExistsError.exit_code == 13, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert name.split("/")[0] in result.stderr
    assert tree_digest(root) == before


# A new --out inside an input of the run, given relative to the input (a folder not made yet).
INSIDE_THE_INPUT = {
    "new folder": "a/b/c",
    "new sub": "sub",
    "dot-dot back in": "x/../y",
    "two dot-dots back in": "x/y/../../z",
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("where", list(INSIDE_THE_INPUT))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_out_inside_an_input_is_refused_whether_or_not_it_exists(
    command: str, where: str, overwrite: bool, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    out = Path(f"{model}/{INSIDE_THE_INPUT[where]}")
    arguments = COMMANDS[command](model, out, glue_data_dir)
    if not overwrite:
        arguments.remove("--overwrite")
    before = tree_digest(root)
    result = bertc_cli(*arguments)
    assert result.returncode == 13, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "the run's input" in result.stderr
    assert tree_digest(root) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_out_inside_an_input_through_a_link_is_refused(
    command: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    (root / "link").symlink_to(model, target_is_directory=True)
    before = tree_digest(root)
    result = bertc_cli(*COMMANDS[command](model, root / "link" / "new", glue_data_dir))
    assert result.returncode == 13, result.stderr
    assert tree_digest(root) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_out_inside_the_data_dir_is_refused(
    command: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    data = Path(shutil.copytree(glue_data_dir, root / "glue"))
    before = tree_digest(root)
    result = bertc_cli(*COMMANDS[command](model, data / "out", data))
    assert result.returncode == 13, result.stderr
    assert "the run's input" in result.stderr
    assert tree_digest(root) == before


def test_an_artifact_and_a_training_output_do_not_replace_each_other(
    workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    artifact, trained = root / "artifact", root / "trained"
    assert bertc_cli(*COMMANDS["compile"](model, artifact, glue_data_dir)).returncode == 0
    assert bertc_cli(*COMMANDS["finetune"](model, trained, glue_data_dir)).returncode == 0
    before = tree_digest(root)
    for command, out in (("compile", trained), ("finetune", artifact), ("prune", artifact)):
        result = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
        assert result.returncode == 13, result.stderr
        assert "not a bertc" in result.stderr
    assert tree_digest(root) == before


# `bertc ARGS` with verify's gate made impossible to pass (`--max-drop -100`, a value the flag
# refuses): every artifact fails it, whatever its accuracy.
FAILING_GATE_DRIVER = """
import sys
import bertc.compiler.verify.report as report
real_gate = report.apply_gate
report.apply_gate = lambda task, headline, max_drop: real_gate(task, headline, -100.0)
sys.argv = ["bertc", *sys.argv[1:]]
from bertc.compiler.cli import main
main()
"""


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_a_failed_verify_gate_with_overwrite_leaves_the_previous_artifact_byte_identical(
    target: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    import subprocess

    root, model = workspace
    out = root / "artifact"
    arguments = [
        "compile", model, "--target", target, "--quantization", "dynamic", "--tokenizer",
        "none", "--task", "sst2", "--data-dir", glue_data_dir, "--out", out,
    ]  # fmt: skip
    assert bertc_cli(*arguments).returncode == 0
    before = tree_digest(root)
    extra = ["--overwrite", "--verify", "--json"]
    result = subprocess.run(
        [sys.executable, "-c", FAILING_GATE_DRIVER, *map(str, arguments), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == errors.GateFailedError.exit_code == 12, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: gate failed:"), result.stderr
    assert last.endswith(f"{out} not replaced: the artifact already there is kept")
    report = json.loads(result.stdout)  # the failed build's report names --out, not its staging
    assert report["artifact_dir"] == str(out) and report["gate"]["passed"] is False
    assert ".partial-" not in result.stdout + result.stderr
    assert tree_digest(root) == before


# ---- OUT.checkpoints: the sibling where finetune and distill keep their epoch states ----
#
# A run creates, resumes from and at its end removes `OUT.checkpoints`; so whatever stands at
# that name must be bertc's own (epoch-N folders of training states, nothing else) and no input
# of the run, with or without --overwrite or --resume; anything else is refused with exit 13
# before training starts, every file kept.


def _checkpoints_of(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoints")


def checkpoints_user_folder(root: Path, model: Path) -> Path:
    user_files(root).rename(_checkpoints_of(root / "out"))
    return root / "out"


def checkpoints_a_file(root: Path, model: Path) -> Path:
    _checkpoints_of(root / "out").write_text("a file, not a folder")
    return root / "out"


def checkpoints_link_to_user_files(root: Path, model: Path) -> Path:
    _checkpoints_of(root / "out").symlink_to(user_files(root), target_is_directory=True)
    return root / "out"


def checkpoints_with_a_stray_file(root: Path, model: Path) -> Path:
    """bertc's layout, plus one file of the user's inside an epoch folder."""
    epoch = _checkpoints_of(root / "out") / "epoch-1"
    epoch.mkdir(parents=True)
    (epoch / "training_state.pt").write_bytes(b"state")
    (epoch / "notes.txt").write_text("mine")
    return root / "out"


def checkpoints_is_the_source(root: Path, model: Path) -> Path:
    """The input checkpoint is itself named OUT.checkpoints (a model `X.checkpoints`, --out X)."""
    source = model.rename(_checkpoints_of(model))
    return source.with_name(model.name)


def checkpoints_holds_the_source(root: Path, model: Path) -> Path:
    """OUT.checkpoints is the folder holding the input checkpoint."""
    holder = _checkpoints_of(root / "out")
    holder.mkdir()
    model.rename(holder / model.name)
    return root / "out"


# Each case: how to lay out the folder (given the root and the input) and where --out points.
CHECKPOINT_SIBLINGS: dict[str, Callable[[Path, Path], Path]] = {
    "a folder of user files": checkpoints_user_folder,
    "a file": checkpoints_a_file,
    "a link to user files": checkpoints_link_to_user_files,
    "bertc's layout with a stray file": checkpoints_with_a_stray_file,
    "the source checkpoint": checkpoints_is_the_source,
    "a folder holding the source": checkpoints_holds_the_source,
}


def _input_after(layout: str, root: Path, model: Path) -> Path:
    if layout == "the source checkpoint":
        return _checkpoints_of(model)
    if layout == "a folder holding the source":
        return _checkpoints_of(root / "out") / model.name
    return model


@pytest.mark.parametrize("flags", [(), ("--overwrite",), ("--resume",)], ids=str)
@pytest.mark.parametrize("layout", list(CHECKPOINT_SIBLINGS))
@pytest.mark.parametrize("command", ["finetune", "distill"])
def test_a_checkpoints_sibling_bertc_did_not_make_is_refused_and_kept(
    command: str, layout: str, flags: tuple[str, ...], workspace, glue_data_dir: Path, bertc_cli
) -> None:
    root, model = workspace
    out = CHECKPOINT_SIBLINGS[layout](root, model)
    source = _input_after(layout, root, model)
    args = [a for a in COMMANDS[command](source, out, glue_data_dir) if a != "--overwrite"]
    before = tree_digest(root)
    result = bertc_cli(*args, *flags)
    assert result.returncode == errors.OutputExistsError.exit_code == 13, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert f"{_checkpoints_of(out)}" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(root) == before
    assert not out.exists()


@pytest.mark.parametrize("layout", ["a folder of user files", "the source checkpoint"])
@pytest.mark.parametrize("command", ["finetune", "distill"])
def test_the_python_api_keeps_a_checkpoints_sibling_too(
    command: str, layout: str, workspace, glue_data_dir: Path
) -> None:
    root, model = workspace
    out = CHECKPOINT_SIBLINGS[layout](root, model)
    before = tree_digest(root)
    with pytest.raises(errors.OutputExistsError, match=r"\.checkpoints"):
        api_call(command, _input_after(layout, root, model), out, glue_data_dir)
    assert tree_digest(root) == before


@pytest.mark.parametrize("command", ["finetune", "distill"])
def test_bertc_s_own_leftover_checkpoints_are_reused_and_removed(
    command: str, workspace, glue_data_dir: Path, bertc_cli
) -> None:
    """The control: states a killed run left (epoch folders, a temporary) are bertc's own."""
    root, model = workspace
    out = root / "out"
    epoch = _checkpoints_of(out) / "epoch-1"
    epoch.mkdir(parents=True)
    (epoch / "training_state.pt.partial").write_bytes(b"half a state")
    result = bertc_cli(*COMMANDS[command](model, out, glue_data_dir))
    assert result.returncode == 0, result.stderr
    assert (out / f"{command}.json").is_file()
    assert not _checkpoints_of(out).exists()
