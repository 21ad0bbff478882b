"""Golden files that lie: damaged, edited, resealed by a hostile hand, or borrowed from another
model, and artifacts without one.

Every case is answered by every reader of the golden set — `loader.check()` (the API), the
loader run as a script (`loader.main([ARTIFACT, "--check"])`) and `bertc run ARTIFACT --check` —
with its documented code and one line: 11 when the golden file is missing, edited (its sha256
differs from the manifest's), malformed, or named by a path that leaves the artifact; 12 when a
well-formed golden set is not reproduced (the hostile edits below reseal the manifest the way an
attacker without a signing key would: recompute golden.json's sha256 and `manifest_sha256`, so
that only the recomputation itself can tell). The last is what shows that check() compares.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import ArtifactError, GateFailedError
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.manifest import MANIFEST_FILE, write_manifest
from bertc.compiler.golden import GOLDEN_FILE
from bertc.targets import loader
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from model_factory import make_checkpoint

# target -> (quantization, options): an artifact that takes token ids, one that takes text.
BUILDS: dict[str, tuple[str, dict[str, Any]]] = {
    "ort-mobile": ("dynamic", {}),
    "openvino": ("static", {"tokenizer": TokenizerMode.FUSED}),
}
TARGETS = sorted(BUILDS)
READERS = ("api", "script", "cli")
EXIT_BROKEN = ArtifactError.exit_code  # 11
EXIT_NOT_REPRODUCED = GateFailedError.exit_code  # 12


@pytest.fixture
def artifact(compile_once, tiny_classifier, tmp_path: Path) -> Callable[[str], Path]:
    """`artifact(target)`: a private copy of that target's tiny artifact, inside its own folder
    (so `../` lands beside it, in the test's tmp_path)."""

    def copy(target: str) -> Path:
        quantization, options = BUILDS[target]
        built = compile_once(tiny_classifier, target, quantization, **options).artifact_dir
        destination = tmp_path / "store" / f"artifact-{target}"
        shutil.copytree(built, destination)
        return destination

    return copy


def read_manifest(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact / MANIFEST_FILE).read_text(encoding="utf-8"))


def read_golden(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact / GOLDEN_FILE).read_text(encoding="utf-8"))


def write_golden(artifact: Path, document: dict[str, Any]) -> None:
    (artifact / GOLDEN_FILE).write_text(json.dumps(document), encoding="utf-8")


def reseal(artifact: Path, manifest: dict[str, Any] | None = None) -> None:
    """What a hostile user without a key can do: list golden.json's new sha256 and bytes and
    recompute the manifest's own digest."""
    manifest = read_manifest(artifact) if manifest is None else manifest
    path = artifact / GOLDEN_FILE
    if path.is_file() and GOLDEN_FILE in manifest["files"]:
        manifest["files"][GOLDEN_FILE] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    write_manifest(artifact, manifest)


def cli(monkeypatch, capsys, *args: Any) -> tuple[int, str, str]:
    """`bertc ARGS` in this process: (exit code, stdout, stderr)."""
    from bertc.compiler.cli import main

    monkeypatch.setattr(sys, "argv", ["bertc", *map(str, args)])
    capsys.readouterr()  # what fixtures printed before (compile progress bars)
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def answer(reader: str, artifact: Path, monkeypatch, capsys) -> tuple[int, str]:
    """(exit code, the one-line message) of `reader` checking the artifact: the API's exception
    or report mapped to the codes the script and the CLI use."""
    if reader == "api":
        try:
            report = loader.check(artifact)
        except loader.ArtifactLoadError as error:
            return EXIT_BROKEN, str(error)
        return (0, "") if report.passed else (EXIT_NOT_REPRODUCED, report.problems[0])
    if reader == "script":
        capsys.readouterr()
        code = loader.main([str(artifact), "--check"])
        stderr = capsys.readouterr().err
    else:
        code, _, stderr = cli(monkeypatch, capsys, "run", artifact, "--check")
    assert len(stderr.strip().splitlines()) <= 1, stderr
    return code, stderr.strip()


def assert_answer(reader, artifact, monkeypatch, capsys, code: int, says: str) -> None:
    got, message = answer(reader, artifact, monkeypatch, capsys)
    assert got == code, message
    assert "\n" not in message and says in message, message


# ---- a naive edit of golden.json: its sha256 no longer matches the manifest's (exit 11)


def bump_output(document: dict[str, Any]) -> None:
    document["examples"][0]["output"][0] += 1.0


def swap_inputs(document: dict[str, Any]) -> None:
    """Exchange the inputs (text, and ids where recorded) of the first two examples the build
    labelled differently: each now claims the other's output."""
    examples = document["examples"]
    first = examples[0]
    sign = first["output"][0] > first["output"][1]
    other = next(e for e in examples[1:] if (e["output"][0] > e["output"][1]) != sign)
    for key in ("text", "text_pair", "ids"):
        if key in first:
            first[key], other[key] = other[key], first[key]


def swap_ids(document: dict[str, Any]) -> None:
    """Exchange only the recorded token ids (an ids artifact): the texts stay."""
    examples = document["examples"]
    sign = examples[0]["output"][0] > examples[0]["output"][1]
    other = next(e for e in examples[1:] if (e["output"][0] > e["output"][1]) != sign)
    examples[0]["ids"], other["ids"] = other["ids"], examples[0]["ids"]


NAIVE_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "output value": bump_output,
    "input": swap_inputs,
    "tolerance": lambda d: d.update(tolerance=0.9),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("edit", sorted(NAIVE_EDITS))
@pytest.mark.parametrize("target", TARGETS)
def test_an_edited_golden_file_fails_its_integrity_check(
    artifact, monkeypatch, capsys, target: str, edit: str, reader: str
) -> None:
    directory = artifact(target)
    document = read_golden(directory)
    NAIVE_EDITS[edit](document)
    write_golden(directory, document)
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, "golden.json has changed")


# ---- a resealed edit that is still a well-formed golden set: not reproduced (exit 12)

RESEALED_LIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "output value": (
        bump_output,
        f"exceeds the tolerance {loader.GOLDEN_TOLERANCE:g} (example 1, run alone)",
    ),
    "batch output value": (
        lambda d: d["examples"][2]["batch_output"].__setitem__(
            1, d["examples"][2]["batch_output"][1] - 1.0
        ),
        f"exceeds the tolerance {loader.GOLDEN_TOLERANCE:g} (example 3, in one batch of 16)",
    ),
    "input": (swap_inputs, "exceeds the tolerance"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("lie", sorted(RESEALED_LIES))
@pytest.mark.parametrize("target", TARGETS)
def test_a_resealed_golden_file_that_lies_is_not_reproduced(
    artifact, monkeypatch, capsys, target: str, lie: str, reader: str
) -> None:
    directory = artifact(target)
    document = read_golden(directory)
    edit, says = RESEALED_LIES[lie]
    edit(document)
    write_golden(directory, document)
    reseal(directory)
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_NOT_REPRODUCED, says)


def test_resealed_ids_that_are_not_the_tokenizers_are_not_reproduced(
    artifact, monkeypatch, capsys
) -> None:
    """An ids artifact: other ids under the same texts give other outputs, and where the
    `tokenizers` package is installed the shipped tokenizer disagrees with them too."""
    directory = artifact("ort-mobile")
    document = read_golden(directory)
    swap_ids(document)
    write_golden(directory, document)
    reseal(directory)
    report = loader.check(directory)
    assert not report.passed
    assert any("exceeds the tolerance" in p for p in report.problems)
    assert any(
        "tokenizer's ids differ from the build's on 2 example(s)" in p for p in report.problems
    )


def test_golden_outputs_of_another_model_are_not_reproduced(
    artifact, compile_once, tmp_path_factory, monkeypatch, capsys
) -> None:
    """Borrow a golden set (and reseal its hash) from another model's artifact for the same
    task: check() runs this model and finds it does not give those outputs."""
    other = make_checkpoint(tmp_path_factory.mktemp("other-model"), seed=1, train_steps=20)
    borrowed = compile_once(other, "ort-mobile", "dynamic").artifact_dir
    directory = artifact("ort-mobile")
    shutil.copyfile(borrowed / GOLDEN_FILE, directory / GOLDEN_FILE)
    reseal(directory)
    report = loader.check(directory)
    assert not report.passed and report.max_abs_error > report.tolerance
    assert_answer("cli", directory, monkeypatch, capsys, EXIT_NOT_REPRODUCED, "not reproduced")


# ---- a resealed golden set that is malformed: refused before anything runs (exit 11)


def set_example(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["examples"][0].update({key: value})


def set_ids(name: str, change: Callable[[list[int]], list[int]]) -> Callable:
    def edit(document: dict[str, Any]) -> None:
        ids = document["examples"][0]["ids"]
        ids[name] = change(ids[name])

    return edit


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str, tuple[str, ...]]] = {
    # name: (edit, what the message says, targets it applies to)
    "output NaN": (set_example("output", [float("nan"), 1.0]), "non-finite", tuple(TARGETS)),
    "reference infinite": (
        set_example("reference", [float("inf"), 1.0]),
        "non-finite",
        tuple(TARGETS),
    ),
    "output past float32": (set_example("output", [1e39, 1.0]), "non-finite", tuple(TARGETS)),
    "output a string": (set_example("output", ["2.0", 1.0]), "list of numbers", tuple(TARGETS)),
    "output too wide": (
        lambda d: d["examples"][0].update(
            output=[1.0, 2.0, 3.0], reference=[1.0, 2.0, 3.0], batch_output=[1.0, 2.0, 3.0]
        ),
        "output has 3 values for the manifest's 2 labels",
        tuple(TARGETS),
    ),
    "batch output missing": (
        lambda d: d["examples"][3].pop("batch_output"),
        "example 4: field 'batch_output' is missing",
        tuple(TARGETS),
    ),
    "batch output NaN": (
        set_example("batch_output", [float("nan"), 1.0]),
        "non-finite",
        tuple(TARGETS),
    ),
    "batch output too short": (
        set_example("batch_output", [1.0]),
        "batch_output has 1 values",
        tuple(TARGETS),
    ),
    "reference too short": (set_example("reference", [1.0]), "reference has 1", tuple(TARGETS)),
    "output too short everywhere": (
        lambda d: [
            e.update(
                output=e["output"][:1],
                reference=e["reference"][:1],
                batch_output=e["batch_output"][:1],
            )
            for e in d["examples"]
        ],
        "1 values for the manifest's 2 labels",
        tuple(TARGETS),
    ),
    "no examples": (lambda d: d.update(examples=[]), "0 examples", tuple(TARGETS)),
    "empty text": (set_example("text", " "), "a text is empty", tuple(TARGETS)),
    "a pair for a single-text model": (
        set_example("text_pair", "and more"),
        "takes one text",
        tuple(TARGETS),
    ),
    "tolerance too lax": (lambda d: d.update(tolerance=1e6), "tolerance", tuple(TARGETS)),
    "tolerance zero": (lambda d: d.update(tolerance=0), "tolerance", tuple(TARGETS)),
    "tolerance missing": (lambda d: d.pop("tolerance"), "'tolerance' is missing", tuple(TARGETS)),
    "another format": (
        lambda d: d.update(format="bertc-golden/99"),
        "not a bertc-golden/1",
        tuple(TARGETS),
    ),
    "another output": (lambda d: d.update(output="pooler_output"), "'output' is", tuple(TARGETS)),
    "text claimed for ids": (lambda d: d.update(inputs="text"), "'inputs' is", ("ort-mobile",)),
    "ids claimed for text": (lambda d: d.update(inputs="token ids"), "'inputs' is", ("openvino",)),
    "ids for a text artifact": (
        set_example("ids", {"input_ids": [2, 3]}),
        "token ids recorded",
        ("openvino",),
    ),
    "ids of unequal lengths": (
        set_ids("attention_mask", lambda ids: ids[:-1]),
        "lengths",
        ("ort-mobile",),
    ),
    "ids past the maximum length": (
        lambda d: d["examples"][0].update(
            ids={name: ids * 100 for name, ids in d["examples"][0]["ids"].items()}
        ),
        "not one length of 1 to 128",
        ("ort-mobile",),
    ),
    "negative id": (
        set_ids("input_ids", lambda ids: [-1, *ids[1:]]),
        "not a list of token ids",
        ("ort-mobile",),
    ),
    "an id that is true": (
        set_ids("input_ids", lambda ids: [True, *ids[1:]]),
        "not a list of token ids",
        ("ort-mobile",),
    ),
    "an input name missing": (
        lambda d: d["examples"][0]["ids"].pop("token_type_ids"),
        "ids are named",
        ("ort-mobile",),
    ),
}
MALFORMED_CASES = [
    pytest.param(target, name, id=f"{target}-{name}")
    for name, (_, _, targets) in MALFORMED.items()
    for target in targets
]


@pytest.mark.parametrize(("target", "case"), MALFORMED_CASES)
def test_a_resealed_malformed_golden_set_is_refused(
    artifact, monkeypatch, capsys, target: str, case: str
) -> None:
    directory = artifact(target)
    document = read_golden(directory)
    edit, says, _ = MALFORMED[case]
    edit(document)
    write_golden(directory, document)
    reseal(directory)
    assert_answer("api", directory, monkeypatch, capsys, EXIT_BROKEN, says)


@pytest.mark.parametrize("reader", READERS)
def test_a_resealed_non_finite_golden_set_is_refused_by_every_reader(
    artifact, monkeypatch, capsys, reader: str
) -> None:
    directory = artifact("ort-mobile")
    text = (directory / GOLDEN_FILE).read_text(encoding="utf-8")
    first = json.dumps(read_golden(directory)["examples"][0]["output"][0])
    (directory / GOLDEN_FILE).write_text(text.replace(first, "NaN", 1), encoding="utf-8")
    reseal(directory)
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, "non-finite number NaN")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[1, 2]", "is not a bertc-golden/1 document"),
        (b"[" * 100_000 + b"]" * 100_000, "golden.json"),
    ],
    ids=["not-json", "not-utf8", "a-list", "nested-deep"],
)
def test_a_resealed_golden_file_that_is_not_a_golden_document_is_refused(
    artifact, monkeypatch, capsys, content: bytes, says: str
) -> None:
    directory = artifact("openvino")
    (directory / GOLDEN_FILE).write_bytes(content)
    reseal(directory)
    assert_answer("api", directory, monkeypatch, capsys, EXIT_BROKEN, says)


def test_a_golden_file_past_the_size_cap_is_refused_unread(artifact, monkeypatch, capsys) -> None:
    directory = artifact("ort-mobile")
    monkeypatch.setattr(loader, "MAX_GOLDEN_BYTES", 1000)
    assert_answer("api", directory, monkeypatch, capsys, EXIT_BROKEN, "larger than 1,000 bytes")


# ---- where the manifest says the golden set is


def outside(directory: Path, how: str) -> str:
    """Put a copy of golden.json where `how` says; the manifest's new golden.file value."""
    source = directory / GOLDEN_FILE
    elsewhere = directory.parent.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    if how == "parent":
        shutil.copyfile(source, directory.parent / GOLDEN_FILE)
        return f"../{GOLDEN_FILE}"
    if how == "absolute":
        shutil.copyfile(source, elsewhere / GOLDEN_FILE)
        return str((elsewhere / GOLDEN_FILE).resolve())
    if how == "symlink-out":
        shutil.copyfile(source, elsewhere / GOLDEN_FILE)
        (directory / "linked.json").symlink_to(elsewhere / GOLDEN_FILE)
        return "linked.json"
    shutil.copyfile(source, directory / "unlisted.json")  # inside, but not in the files list
    return "unlisted.json"


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("how", ["parent", "absolute", "symlink-out", "unlisted"])
def test_a_golden_file_outside_the_artifact_is_refused(
    artifact, monkeypatch, capsys, how: str, reader: str
) -> None:
    directory = artifact("ort-mobile")
    manifest = read_manifest(directory)
    manifest["golden"]["file"] = outside(directory, how)
    if how == "symlink-out":  # listed with the right hashes: only containment refuses it
        link = directory / "linked.json"
        manifest["files"]["linked.json"] = {
            "bytes": link.stat().st_size,
            "sha256": sha256_file(link),
        }
    reseal(directory, manifest)
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, "golden.file")


@pytest.mark.parametrize("reader", READERS)
def test_a_removed_golden_file_is_refused(artifact, monkeypatch, capsys, reader: str) -> None:
    directory = artifact("openvino")
    (directory / GOLDEN_FILE).unlink()
    says = "golden.json is missing"
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, says)


@pytest.mark.parametrize("reader", READERS)
def test_a_golden_file_dropped_from_the_files_list_is_refused(
    artifact, monkeypatch, capsys, reader: str
) -> None:
    directory = artifact("openvino")
    manifest = read_manifest(directory)
    del manifest["files"][GOLDEN_FILE]
    (directory / GOLDEN_FILE).unlink()
    reseal(directory, manifest)
    says = "'golden.json' is not in the manifest's files section"
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, says)


@pytest.mark.parametrize("reader", READERS)
def test_an_artifact_without_golden_outputs_says_to_recompile(
    artifact, monkeypatch, capsys, reader: str
) -> None:
    """What a bertc from before golden outputs wrote: no section, no file."""
    directory = artifact("ort-mobile")
    manifest = read_manifest(directory)
    del manifest["golden"], manifest["files"][GOLDEN_FILE]
    (directory / GOLDEN_FILE).unlink()
    reseal(directory, manifest)
    says = "no golden outputs in this artifact (built before bertc recorded them); recompile it"
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, says)
    with pytest.raises(loader.GoldenMissingError):
        loader.check(directory)
    assert loader.load(directory).predict(["a fine film"])  # it still labels text


def test_a_changed_model_file_is_refused_before_it_runs(artifact, monkeypatch, capsys) -> None:
    """check() hashes every listed file, so a model edited under its golden set is an edited
    artifact (11), not a failed reproduction."""
    directory = artifact("ort-mobile")
    with open(directory / "model.ort", "r+b") as handle:
        handle.seek(-64, 2)
        byte = handle.read(1)
        handle.seek(-64, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert_answer("api", directory, monkeypatch, capsys, EXIT_BROKEN, "model.ort has changed")


# ---- the gate itself: any recorded value moved past the tolerance fails, within it passes


@pytest.fixture(scope="module")
def loaded_ids_artifact(compile_once, tiny_classifier) -> tuple[loader.TextModel, loader.Golden]:
    quantization, options = BUILDS["ort-mobile"]
    directory = compile_once(tiny_classifier, "ort-mobile", quantization, **options).artifact_dir
    return loader.load(directory), loader.read_golden(directory)


@settings(max_examples=40, deadline=None)
@given(
    example=st.integers(0, 15),
    column=st.integers(0, 1),
    delta=st.floats(-1.0, 1.0, allow_nan=False),
    run=st.sampled_from(["output", "batch_output"]),
)
def test_a_recorded_value_moved_past_the_tolerance_fails_and_within_it_passes(
    loaded_ids_artifact, example: int, column: int, delta: float, run: str
) -> None:
    """The golden set as recorded, one value of one run moved by `delta`: check() passes
    exactly when |delta| is within the tolerance (the tiny model's margins, about 5, are far
    from any label change)."""
    model, golden = loaded_ids_artifact
    # float32 rounding of the moved value blurs the edge by ~1e-7: stay clear of it.
    assume(abs(abs(delta) - golden.tolerance) > 1e-4)
    chosen = golden.examples[example]
    values = list(getattr(chosen, run))
    values[column] += delta
    moved = dataclasses.replace(chosen, **{run: tuple(values)})
    examples = golden.examples[:example] + (moved,) + golden.examples[example + 1 :]
    report = loader._check_loaded(model, dataclasses.replace(golden, examples=examples), 0)
    assert report.passed == (abs(delta) <= golden.tolerance), report.problems


@pytest.mark.parametrize("reader", READERS)
def test_a_listed_file_linked_out_of_the_artifact_is_refused(
    artifact, monkeypatch, capsys, reader: str
) -> None:
    """The same bytes (so the same sha256) outside, linked in: check() hashes files inside the
    artifact only, as bertc's integrity check does."""
    directory = artifact("ort-mobile")
    name = "tokenizer/tokenizer_config.json"
    outside_copy = directory.parent / "tokenizer_config.json"
    shutil.copyfile(directory / name, outside_copy)
    (directory / name).unlink()
    (directory / name).symlink_to(outside_copy)
    assert_answer(reader, directory, monkeypatch, capsys, EXIT_BROKEN, "outside the artifact")
