"""Bad inputs and signals a tester threw at the `bertc` command line, each with the exit code and
the one line it must end in: Ctrl-C and SIGTERM mid-compile, the old `--max-seq-length` spelling,
refusals that must come before torch loads, `inspect` of pickle weights, `verify` without
`--task`."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bertc.compiler.core import errors
from bertc.compiler.core.manifest import MANIFEST_FILE, read_manifest, write_manifest
from model_factory import make_checkpoint

# A refusal before any work, on a loaded CI machine; about 0.3 s on an idle one, where importing
# torch alone takes seconds.
EARLY_REFUSAL_S = 2.0
KNOWN_TASKS = "known tasks: cola, mnli, mnli-mm, mrpc, qnli, qqp, rte, sst2, stsb, wnli"


def compile_arguments(model: Path, out: Path, glue_data_dir: Path, *extra) -> list:
    return [
        "compile", model, "--target", "openvino", "--out", out, "--task", "sst2",
        "--data-dir", glue_data_dir, "--calibration-samples", "8", "--tokenizer", "none", *extra,
    ]  # fmt: skip


# ---- 1. SIGINT / SIGTERM: `aborted`, 130 / 143, and the staging directory removed ----


@pytest.mark.parametrize(
    ("signal_number", "exit_code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["sigint", "sigterm"],
)
def test_a_signal_mid_compile_aborts_and_leaves_nothing(
    signal_number: int, exit_code: int, tmp_path: Path, tiny_classifier, glue_data_dir, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    process = bertc_cli(*compile_arguments(tiny_classifier, out, glue_data_dir), wait=False)
    seen = []
    try:
        # Piped, the first stage line is printed as the second stage (the export) starts: the
        # staging directory exists by then.
        while not (line := process.stderr.readline()).startswith("• "):
            assert line, f"compile ended before a stage line: {''.join(seen)}"
            seen.append(line)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a no-op once it has exited
    assert process.returncode == exit_code, stderr
    assert stderr.splitlines()[-1] == "aborted", stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither --out nor a .artifact.partial-* sibling


# ---- 2. the hidden old spelling --max-seq-length, wherever --max-sequence-length is ----

ALIAS_COMMANDS = {
    "compile": ["compile", "m", "--target", "onnx", "--out", "o"],
    "prune": ["prune", "m", "--pattern", "2:4", "--task", "sst2", "--out", "o"],
    "finetune": ["finetune", "m", "--task", "sst2", "--out", "o"],
    "distill": ["distill", "--teacher", "t", "--student", "s", "--task", "sst2", "--out", "o"],
}


@pytest.mark.parametrize("command", list(ALIAS_COMMANDS))
def test_every_command_with_max_sequence_length_takes_the_old_spelling(
    command: str, tmp_path: Path, bertc_cli
) -> None:
    # Accepted (no "No such option"), and read by the command: given with a different new
    # value, the command says which to give.
    arguments = [*ALIAS_COMMANDS[command], "--max-seq-length", "64", "--max-sequence-length", "32"]
    result = bertc_cli(*arguments, cwd=tmp_path)
    assert result.returncode == errors.UsageError.exit_code, result.stderr
    assert result.stderr.splitlines() == [
        "error: --max-seq-length is the old name of --max-sequence-length; give one of them"
    ]
    assert list(tmp_path.iterdir()) == []


def test_compile_builds_at_the_length_given_under_the_old_name(compiled_at_64) -> None:
    result, out = compiled_at_64
    assert result.returncode == 0, result.stderr
    assert read_manifest(out)["model"]["max_sequence_length"] == 64


# ---- 3. refusals that come before torch loads ----

# Runs `bertc ARGS` in this interpreter; prints the exit code and whether torch got imported.
DRIVER = """
import json, sys
sys.argv = ["bertc", *sys.argv[1:]]
from bertc.compiler.cli import main
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, **{name: name in sys.modules for name in ("torch", "pandas")}}))
"""

UNKNOWN_TASK = f"error: unknown GLUE task 'sst3'; {KNOWN_TASKS}"
EARLY_REFUSALS = {
    "compile --task": (
        ["compile", "m", "--target", "openvino", "--out", "o", "--task", "sst3"],
        2,
        UNKNOWN_TASK,
    ),
    "verify --task": (["verify", "a", "--task", "sst3"], 2, UNKNOWN_TASK),
    "finetune --task": (["finetune", "m", "--task", "sst3", "--out", "o"], 2, UNKNOWN_TASK),
    "distill --task": (
        ["distill", "--teacher", "t", "--student", "s", "--task", "sst3", "--out", "o"],
        2,
        UNKNOWN_TASK,
    ),
    "prune --task": (
        ["prune", "m", "--pattern", "2:4", "--task", "sst3", "--out", "o"],
        2,
        UNKNOWN_TASK,
    ),
    "compile onto an existing --out": (
        ["compile", "m", "--target", "openvino", "--out", "existing"],
        errors.OutputExistsError.exit_code,
        "error: existing already exists; choose another --out or pass --overwrite",
    ),
    "compile --out ''": (
        ["compile", "m", "--target", "openvino", "--out", "", "--overwrite"],
        2,
        "error: --out must name a directory to create (not empty, '.' or '..'), got '.'",
    ),
    "compile --out .": (
        ["compile", "m", "--target", "openvino", "--out", ".", "--overwrite"],
        2,
        "error: --out must name a directory to create (not empty, '.' or '..'), got '.'",
    ),
    # --overwrite replaces only what bertc made ("existing" holds the user's kept.txt).
    **{
        f"{command} --overwrite onto user files": (
            [*arguments, "--out", "existing", "--overwrite"],
            errors.OutputExistsError.exit_code,
            f"error: --overwrite refused: existing is a directory bertc did not make (not a "
            f"bertc {kind}); --overwrite replaces only a previous bertc output: choose another "
            "--out",
        )
        for command, arguments, kind in (
            ("compile", ["compile", "m", "--target", "onnx"], "artifact"),
            ("finetune", ["finetune", "m", "--task", "sst2"], "training output"),
            ("prune", ["prune", "m", "--pattern", "2:4", "--task", "sst2"], "training output"),
            (
                "distill",
                ["distill", "--teacher", "t", "--student", "s", "--task", "sst2"],
                "training output",
            ),
        )
    },
    "compile --out under a file": (
        ["compile", "m", "--target", "onnx", "--out", "existing/kept.txt/artifact"],
        2,
        "error: cannot create existing/kept.txt/artifact: "
        "{tmp_path}/existing/kept.txt is a file; choose another --out",
    ),
    "compile --max-sequence-length 0": (
        ["compile", "m", "--target", "onnx", "--out", "o", "--max-sequence-length", "0"],
        2,
        "error: --max-sequence-length must be at least 1, got 0",
    ),
    "finetune --max-sequence-length -5": (
        ["finetune", "m", "--task", "sst2", "--out", "o", "--max-sequence-length", "-5"],
        2,
        "error: --max-sequence-length must be at least 1, got -5",
    ),
    "run --threads -3": (
        ["run", "a", "some text", "--threads", "-3"],
        2,
        "error: --threads must be at least 1, got -3",
    ),
    "verify --threads -3": (
        ["verify", "a", "--threads", "-3"],
        2,
        "error: --threads must be at least 1, got -3",
    ),
    "run --threads 100000 (11,000 threads, 16 GB before)": (
        ["run", "a", "text", "--threads", "100000"],
        2,
        "error: --threads must be at most 256, got 100000",
    ),
    "verify --reference-threads 257": (
        ["verify", "a", "--reference-threads", "257"],
        2,
        "error: --reference-threads must be at most 256, got 257",
    ),
    "finetune --threads 4096": (
        ["finetune", "a", "--task", "sst2", "--out", "o", "--threads", "4096"],
        2,
        "error: --threads must be at most 256, got 4096",
    ),
    "run TEXT not UTF-8": (
        ["run", "a", "caf\udce9"],  # b"caf\xe9": Latin-1 bytes, as Python hands them over
        2,
        "error: TEXT is not valid UTF-8 (byte 0xe9 at character 4)",
    ),
    "run TEXT_PAIR not UTF-8": (
        ["run", "a", "fine", "\udcff"],
        2,
        "error: the second text is not valid UTF-8 (byte 0xff at character 1)",
    ),
    "finetune --out ..": (
        ["finetune", "m", "--task", "sst2", "--out", ".."],
        2,
        "error: --out must name a directory to create (not empty, '.' or '..'), got '..'",
    ),
}


@pytest.mark.parametrize("case", list(EARLY_REFUSALS))
def test_refused_at_once_without_importing_torch(case: str, tmp_path: Path) -> None:
    arguments, exit_code, message = EARLY_REFUSALS[case]
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "kept.txt").write_text("an earlier artifact")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, *map(str, arguments)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == exit_code, result.stderr
    assert result.stderr.splitlines() == [message.replace("{tmp_path}", str(tmp_path))]
    assert report == {"code": exit_code, "torch": False, "pandas": False}
    assert elapsed < EARLY_REFUSAL_S, elapsed
    assert sorted(path.name for path in tmp_path.iterdir()) == ["existing"]
    assert (tmp_path / "existing" / "kept.txt").read_text() == "an earlier artifact"


# ---- 4. inspect takes --allow-pickle, as its refusal advises ----


@pytest.fixture(scope="module")
def pickle_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("pickle-only"), safetensors=False)


def test_inspect_refuses_pickle_weights_and_names_the_flag(pickle_checkpoint, bertc_cli) -> None:
    result = bertc_cli("inspect", pickle_checkpoint)
    assert result.returncode == errors.UnsafeCheckpointError.exit_code
    (line,) = result.stderr.splitlines()
    assert line == (
        f"error: {pickle_checkpoint} has only pickle weights (pytorch_model.bin), which can run "
        "arbitrary code when loaded; convert it to safetensors or pass --allow-pickle if you "
        "trust it"
    )


def test_inspect_with_allow_pickle_reads_the_pickle_weights(pickle_checkpoint, bertc_cli) -> None:
    result = bertc_cli("inspect", pickle_checkpoint, "--allow-pickle", "--json")
    assert result.returncode == 0, result.stderr
    inspection = json.loads(result.stdout)
    assert inspection["kind"] == "checkpoint"
    layers = {row["layer"]: row for row in inspection["layers"]}
    assert {"embeddings", "layer 00", "layer 01", "classifier"} <= set(layers)
    assert inspection["parameters"] == sum(row["parameters"] for row in layers.values()) > 0
    assert inspection["weight_sparsity"]  # the encoder's weight matrices were read


# ---- 5. verify without --task: the manifest's task, or one line asking for --task ----


@pytest.fixture(scope="module")
def compiled_at_64(tmp_path_factory, tiny_classifier: Path, glue_data_dir: Path, bertc_cli):
    """A CLI compile of the tiny classifier for sst2, at the old spelling's length."""
    out = tmp_path_factory.mktemp("compiled-64") / "artifact"
    arguments = compile_arguments(tiny_classifier, out, glue_data_dir, "--max-seq-length", "64")
    return bertc_cli(*arguments), out


def test_verify_without_task_scores_the_task_in_the_manifest(
    compiled_at_64, glue_data_dir: Path, tmp_path: Path, bertc_cli
) -> None:
    _, built = compiled_at_64
    artifact = tmp_path / "artifact"
    shutil.copytree(built, artifact)  # verify writes its reports into the artifact
    result = bertc_cli(
        "verify", artifact, "--data-dir", glue_data_dir, "--max-drop", "100", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == "sst2"
    assert report["headline_metric"] == "accuracy"


def test_verify_without_task_is_refused_when_the_manifest_has_none(
    compiled_at_64, tmp_path: Path, bertc_cli
) -> None:
    _, built = compiled_at_64
    artifact = tmp_path / "artifact"
    shutil.copytree(built, artifact)
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    write_manifest(artifact, {**manifest, "task": None})  # resealed: bertc wrote no task
    started = time.perf_counter()
    result = bertc_cli("verify", artifact)
    elapsed = time.perf_counter() - started
    assert result.returncode == errors.UsageError.exit_code
    assert result.stderr.splitlines() == [
        f"error: {artifact}'s manifest records no GLUE task to score on; pass --task "
        "(e.g. --task stsb for a sentence encoder)"
    ]
    assert elapsed < EARLY_REFUSAL_S, elapsed


# ---- 5. a sequence length past the checkpoint's position table ----

LONGER_THAN_POSITIONS = {
    "compile": ["compile", "--target", "onnx", "--task", "sst2"],
    "finetune": ["finetune", "--task", "sst2"],
    "prune": ["prune", "--pattern", "2:4", "--task", "sst2"],
}


@pytest.mark.parametrize("command", list(LONGER_THAN_POSITIONS))
def test_a_sequence_length_past_the_position_table_is_refused(
    command: str, tmp_path: Path, tiny_classifier: Path, glue_data_dir: Path, bertc_cli
) -> None:
    positions = json.loads((tiny_classifier / "config.json").read_text())["max_position_embeddings"]
    name, *flags = LONGER_THAN_POSITIONS[command]
    result = bertc_cli(
        name, tiny_classifier, *flags, "--data-dir", glue_data_dir, "--out", tmp_path / "out",
        "--max-sequence-length", positions + 1,
    )  # fmt: skip
    assert result.returncode == errors.UsageError.exit_code, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: --max-sequence-length {positions + 1} is longer than the checkpoint's "
        f"max_position_embeddings ({positions}); give at most {positions}"
    )
    assert list(tmp_path.iterdir()) == []


# ---- the accuracy budget's flags: one line, exit 2, before any model is read ----


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--max-drop", "-1"], "--max-drop must be a number of points >= 0"),
        (["--max-drop", "nan"], "--max-drop must be a number of points >= 0"),
        (["--max-drop", "inf"], "--max-drop must be a number of points >= 0"),
        (["--max-drop", "half"], "--max-drop must be a number of points >= 0"),
        (["--max-drop", ""], "--max-drop must be a number of points >= 0"),
        (["--min-agreement", "1.5"], "--min-agreement must be a fraction between 0 and 1"),
        (["--min-agreement", "-0.1"], "--min-agreement must be a fraction between 0 and 1"),
        (["--min-agreement", "nan"], "--min-agreement must be a fraction between 0 and 1"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_bad_budget_flag_is_one_line_and_exit_2(
    flags: list[str], says: str, tmp_path: Path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    result = bertc_cli("compile", tmp_path / "missing", "--target", "onnx", "--out", out, *flags)
    assert result.returncode == errors.UsageError.exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not out.exists()
    assert "missing" not in lines[0]  # refused while parsing, before the model is looked at
