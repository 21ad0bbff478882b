"""The README runs as printed.

Its fenced ```bash / ```console blocks are the quick start and the CLI examples; python blocks
preceded by `<!-- app snippet -->` are what an app runs. This module runs them all on a tiny
seeded model in a scratch directory that stands in for the repository root, with the real paths
swapped for the tiny ones (`TINY_PATHS`, `TINY_BUDGETS`), and checks the set-up and test commands
against `.ci/run`. Blocks fenced as ```text (usage synopses, output samples) are not run.
The quick start as printed, on the real model, is `-m slow` and needs `../shared/assets`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
CI_RUN = REPO_ROOT / ".ci" / "run"
MAX_README_LINES = 300
SHELL_LANGUAGES = ("bash", "console")
APP_SNIPPET_MARKER = "<!-- app snippet -->"
QUICK_START_SECTION = "Quick start"
CLI_SECTION = "CLI"
COMMAND_TIMEOUT_S = 600

# What the README's real paths become on the tiny model (placeholders: fixture names).
TINY_PATHS = {
    "../shared/assets/models/minilm-l6-sst2": "tiny_classifier",  # a fine-tuned SST-2 classifier
    "../shared/assets/models/all-MiniLM-L6-v2": "tiny_encoder",  # a bare sentence encoder
    "../shared/assets/glue": "glue_data_dir",  # 40 SST-2 / STS-B rows per split
}
# Training budgets shrink to a moment; the tiny model has 2 layers, so 3 kept layers become 1.
TINY_BUDGETS = (
    (r"--max-steps \d+", "--max-steps 2"),
    (r"--train-samples \d+", "--train-samples 32"),
    (r"--keep-layers \d+", "--keep-layers 1"),
)
# The README's app section promises snippets that need the runtime alone: they run with these
# packages made unimportable, as in an app's environment (bertc.targets.loader stays: it is the
# vendorable single-file loader).
RUNTIME_ONLY_SECTION = "Embedding an artifact in an app"
RUNTIME_ONLY_PRELUDE = """
import importlib.abc, sys
class _AbsentInAnApp(importlib.abc.MetaPathFinder):
    BLOCKED = ("torch", "transformers", "nncf", "sklearn", "scipy", "safetensors", "typer")
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in self.BLOCKED or name.startswith(("bertc.compiler", "bertc.calibration")):
            raise ModuleNotFoundError(f"No module named {name!r} (runtime-only app)", name=name)
        return None
sys.meta_path.insert(0, _AbsentInAnApp())
"""
# Each example script and the quick-start artifacts it is documented for.
EXAMPLE_RUNS = {
    "openvino_app.py": ("openvino",),
    "onnxruntime_app.py": ("ort-mobile",),
    "classify.py": ("openvino", "ort-mobile"),
    "check_on_device.py": ("openvino", "ort-mobile"),
}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # 1-based line of the opening fence
    section: str  # the `## ` heading the block sits under
    app_snippet: bool

    def commands(self) -> list[str]:
        """One command per line (`$ ` prompts of a console block; its other lines are output)."""
        lines = self.text.splitlines()
        if self.language == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def read_blocks(markdown: str) -> list[Block]:
    blocks, section, fence, body, previous = [], "", None, [], ""
    for number, line in enumerate(markdown.splitlines(), start=1):
        if fence is not None:
            if line.strip() == "```":
                blocks.append(Block(fence[0], "\n".join(body), fence[1], section, fence[2]))
                fence, body = None, []
            else:
                body.append(line)
            continue
        if line.startswith("```"):
            language = line[3:].strip().split(" ")[0]
            fence = (language, number, previous.strip() == APP_SNIPPET_MARKER)
        elif line.startswith("## "):
            section = line[3:].strip()
        if line.strip():
            previous = line
    assert fence is None, f"README.md: the fence opened on line {fence[1]} is never closed"
    return blocks


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
SHELL_BLOCKS = [block for block in BLOCKS if block.language in SHELL_LANGUAGES]
# compiler/README.md (the code layout and the Python API) holds app snippets too.
LAYOUT_README = REPO_ROOT / "compiler" / "README.md"
APP_SNIPPETS = [
    block
    for block in BLOCKS + read_blocks(LAYOUT_README.read_text(encoding="utf-8"))
    if block.app_snippet
]


def _section_commands(section: str) -> list[str]:
    return [
        cmd
        for block in SHELL_BLOCKS
        if block.section.startswith(section)
        for cmd in block.commands()
    ]


def ci_commands() -> dict[str, str]:
    """`.ci/run`'s command under each `# README: <name>` comment."""
    lines = CI_RUN.read_text(encoding="utf-8").splitlines()
    found = {}
    for index, line in enumerate(lines):
        match = re.match(r"#\s*README:\s*(\w+)", line.strip())
        if match:
            found[match.group(1)] = lines[index + 1].strip()
    return found


def split_setup(command: str) -> tuple[str, str]:
    """The quick start's first command: CI's set-up line, then `&& ` and the compile loop."""
    setup = ci_commands()["setup"]
    assert command.startswith(setup + " && "), (command, setup)
    return setup, command[len(setup) + len(" && ") :]


def _param(text: str, name: str):
    return pytest.param(text, id=name)


def _command_id(index: int, command: str) -> str:
    words = shlex.split(command.split("&&")[0])
    bertc_words = [word for word in words if not word.startswith(("HF_", "."))]
    return f"{index}-{'-'.join(bertc_words[:1]) or 'command'}"


CLI_EXAMPLES = _section_commands(CLI_SECTION)
CLI_PARAMS = [_param(cmd, _command_id(i, cmd)) for i, cmd in enumerate(CLI_EXAMPLES)]
SNIPPET_PARAMS = [
    _param(
        RUNTIME_ONLY_PRELUDE + block.text if block.section == RUNTIME_ONLY_SECTION else block.text,
        f"line{block.line}-{block.section.split()[0].lower()}",
    )
    for block in APP_SNIPPETS
]


# ---- the README's shape and its agreement with CI


def test_readme_is_at_most_300_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_every_shell_block_is_the_quick_start_or_the_cli_examples() -> None:
    """Any other ```bash block would go unrun: fence it as ```text or put it in a tested section."""
    sections = {block.section for block in SHELL_BLOCKS}
    assert sections <= {"Quick start (fresh machine, offline)", CLI_SECTION}, sections
    assert CLI_EXAMPLES, "the CLI section has no ```bash examples"
    assert len(APP_SNIPPETS) >= 3 and all(b.language == "python" for b in APP_SNIPPETS)


def test_setup_and_test_commands_are_exactly_what_ci_runs() -> None:
    ci = ci_commands()
    quick_start = _section_commands(QUICK_START_SECTION)
    setup, compile_loop = split_setup(quick_start[0])
    assert setup == ci["setup"]
    assert "bertc compile ../shared/assets/models/minilm-l6-sst2" in compile_loop
    assert "HF_HUB_OFFLINE=1" in compile_loop  # the main job runs offline
    assert ci["tests"] in quick_start, "README's test command differs from .ci/run's"
    assert quick_start[-1] == ci["tests"]


def test_the_layout_block_is_the_sorted_file_list() -> None:
    listed = _layout_listing()
    assert listed == sorted(listed) and all(path.startswith("artifacts/") for path in listed)


# ---- running the README on the tiny model


def _layout_listing() -> list[str]:
    (block,) = [b for b in BLOCKS if b.section == "Artifact layout" and b.language == "text"]
    return block.text.split()


def _files_under(root: Path, folder: str) -> list[str]:
    return sorted(
        str(path.relative_to(root)) for path in (root / folder).rglob("*") if path.is_file()
    )


def bertc_command() -> list[str]:
    """The console script installed beside this interpreter, else `python -m` (as conftest's)."""
    script = Path(sys.executable).with_name("bertc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bertc.compiler.cli"]


def _tiny(text: str, paths: dict[str, Path], quote=shlex.quote) -> str:
    """The README text with the tiny model's paths, the test's bertc and python, small budgets."""
    for real, name in sorted(TINY_PATHS.items(), key=lambda item: -len(item[0])):
        text = text.replace(real, quote(str(paths[name])))
    for pattern, budget in TINY_BUDGETS:
        text = re.sub(pattern, budget, text)
    return _tools(text)


def _tools(text: str) -> str:
    """The README's `.venv/bin/` tools are this test's interpreter and its bertc."""
    text = text.replace(".venv/bin/bertc", shlex.join(bertc_command()))
    return text.replace(".venv/bin/python", shlex.quote(sys.executable))


def _environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "BERTC_DEBUG"}
    environment.update({"COLUMNS": "200", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return environment


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -eo pipefail; {command}"],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def _python(source: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", source],
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def tiny_paths(tiny_classifier: Path, tiny_encoder: Path, glue_data_dir: Path) -> dict[str, Path]:
    return {
        "tiny_classifier": tiny_classifier,
        "tiny_encoder": tiny_encoder,
        "glue_data_dir": glue_data_dir,
    }


@dataclass(frozen=True)
class QuickStart:
    root: Path  # stands in for the repository root
    files: list[str]  # `find artifacts -type f | sort` right after the compile loop
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def quick_start(tiny_paths, tmp_path_factory: pytest.TempPathFactory) -> QuickStart:
    """The quick start's compile loop (its set-up is CI's, checked above) on the tiny model."""
    root = tmp_path_factory.mktemp("readme-root")
    _, compile_loop = split_setup(_section_commands(QUICK_START_SECTION)[0])
    result = _shell(_tiny(compile_loop, tiny_paths), root)
    assert result.returncode == 0, result.stderr
    return QuickStart(root, _files_under(root, "artifacts"), result)


def test_quick_start_compiles_both_targets_and_labels_a_sentence(
    quick_start: QuickStart, tiny_paths
) -> None:
    root = quick_start.root
    for target in ("openvino", "ort-mobile"):
        manifest = json.loads(
            (root / f"artifacts/minilm-l6-sst2-{target}/manifest.json").read_text()
        )
        assert manifest["target"] == target
    assert "compiled" in quick_start.result.stdout
    run_lines = [cmd for cmd in _section_commands(QUICK_START_SECTION) if " run " in cmd]
    assert run_lines, "the quick start labels no sentence"
    for command in run_lines:
        result = _shell(_tiny(command, tiny_paths), root)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"(positive|negative)\t[01]\.\d{4}", result.stdout.strip())


def test_artifact_layout_is_what_the_quick_start_writes(quick_start: QuickStart) -> None:
    assert quick_start.files == _layout_listing()


def _outputs(command: str) -> list[str]:
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--out"]


def _check_output(command: str, stdout: str, root: Path) -> None:
    for out in _outputs(command):
        path = root / out
        if out.endswith(".bertcpack"):
            assert path.is_file() and path.stat().st_size > 0, out
        else:
            assert (path / "manifest.json").is_file() or (path / "config.json").is_file(), out
    if " verify " in command and "--json" in command:
        assert json.loads(stdout)["gate"]["passed"] is True
    elif " verify " in command:
        assert "95% CI" in stdout and "gate passed" in stdout  # the table, and the gate
    if " inspect " in command:
        assert "integrity ok" in stdout
    if " unpack " in command:
        assert "integrity ok" in stdout
    if " --verify" in command:
        assert "gate passed" in stdout
    if re.search(r"\bbertc --version$", command):
        assert metadata.version("bertc") in stdout


@pytest.mark.parametrize("command", CLI_PARAMS)
def test_cli_example_runs_on_the_tiny_model(
    command: str, quick_start: QuickStart, tiny_paths
) -> None:
    result = _shell(_tiny(command, tiny_paths), quick_start.root)
    assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    _check_output(command, result.stdout, quick_start.root)


@pytest.mark.parametrize("source", SNIPPET_PARAMS)
def test_app_snippet_runs_on_the_quick_start_artifacts(
    source: str, quick_start: QuickStart, tiny_paths
) -> None:
    result = _python(_tiny(source, tiny_paths, quote=str), quick_start.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the snippet printed nothing"
    last_line = result.stdout.strip().splitlines()[-1]
    if 'manifest["model"]["labels"]' in source:
        assert last_line in {"positive", "negative"}
    if "prediction.label" in source:
        assert re.fullmatch(r"(positive|negative) [01]\.\d+", last_line)


# ---- the quick start as printed, on the real model


def _assets() -> Path:
    default = REPO_ROOT / ".." / "shared" / "assets"
    return Path(os.environ.get("BERTC_ASSETS", default)).resolve()


@pytest.mark.slow
def test_quick_start_as_printed_on_the_real_model(tmp_path: Path) -> None:
    assets = _assets()
    if not (assets / "models/minilm-l6-sst2").is_dir() or not (assets / "glue/SST-2").is_dir():
        pytest.skip(f"minilm-l6-sst2 or GLUE SST-2 not found under {assets}; set BERTC_ASSETS")
    quick_start = _section_commands(QUICK_START_SECTION)
    _, compile_loop = split_setup(quick_start[0])
    # The scratch root is not beside ../shared, so the asset root is spelled out; nothing else.
    real = _tools(compile_loop.replace("../shared/assets", shlex.quote(str(assets))))
    result = _shell(real, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _files_under(tmp_path, "artifacts") == _layout_listing()
    run = _shell(_tools(next(cmd for cmd in quick_start if " run " in cmd)), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("positive\t")


# ---- examples/: each script, runtime-only, on the artifacts the quick start builds


def test_every_example_is_run_by_this_suite() -> None:
    assert sorted(path.name for path in (REPO_ROOT / "examples").glob("*.py")) == sorted(
        EXAMPLE_RUNS
    )


@pytest.mark.parametrize(
    ("script", "target"),
    [(script, target) for script, targets in EXAMPLE_RUNS.items() for target in targets],
)
def test_example_runs_runtime_only_on_the_quick_start_artifact(
    script: str, target: str, quick_start: QuickStart
) -> None:
    artifact = f"artifacts/minilm-l6-sst2-{target}"
    runner = RUNTIME_ONLY_PRELUDE + (
        "import runpy\n"
        f"sys.argv = [{script!r}, {artifact!r}, 'a gorgeous, witty, seductive movie.']\n"
        f"runpy.run_path({str(REPO_ROOT / 'examples' / script)!r}, run_name='__main__')\n"
    )
    result = _python(runner, quick_start.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] in {"positive", "negative"}, result.stdout
