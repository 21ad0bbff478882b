"""Bounded work and aligned output.

- `bertc unpack` reads the manifest first and restores only what it lists, each stream inflated
  in blocks and capped at its recorded size: a pack that claims, hides or smuggles anything else
  is one ArtifactError (exit 11), with nothing written outside its staging directory and memory
  far below what the hostile stream would inflate to.
- `bertc run --file` streams fixed-size chunks, splits at `\\n` only, so output line N answers
  input line N whatever characters a line holds, and refuses an empty, blank, ragged or non-UTF-8
  line by its number (exit 7) before printing anything.
- A runtime's failure on an input is one line naming the input (exit 11), with none of ONNX
  Runtime's own log lines on stderr; an empty pair on OpenVINO is refused in one line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import ArtifactError, DataError, OutputExistsError, UsageError
from bertc.compiler.core.manifest import MANIFEST_FILE
from bertc.compiler.packing import (
    MAX_ARTIFACT_BYTES,
    MAX_MANIFEST_BYTES,
    pack_artifact,
    pack_bytes,
    unpack_artifact,
)
from bertc.compiler.running import (
    BATCH_SIZE,
    CHUNK_LINES,
    MAX_LINE_BYTES,
    InputLine,
    read_lines,
    run_artifact,
)
from bertc.targets import loader

# The CLI as a user runs it (no BERTC_DEBUG traceback on top of the one line).
QUIET_ENV = {key: value for key, value in os.environ.items() if key != "BERTC_DEBUG"}
HEADER = struct.Struct("<8sQQQ")  # the zero-bitmap stream's header (packing._HEADER)
MAGIC = b"BERTCZB1"

# ---------------------------------------------------------------- unpack: crafted packs


@pytest.fixture(scope="module")
def artifact(compile_once, tiny_classifier) -> Path:
    return compile_once(tiny_classifier, "onnx", quantization="dynamic").artifact_dir


@pytest.fixture(scope="module")
def members(artifact: Path, tmp_path_factory) -> dict[str, bytes]:
    """The packed payload of each member of the tiny artifact's pack, by name."""
    pack = pack_artifact(artifact, tmp_path_factory.mktemp("pack") / "tiny.bertcpack")
    with tarfile.open(pack) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def manifest_of(members: dict[str, bytes]) -> dict:
    from bertc.compiler.packing import unpack_bytes

    return json.loads(unpack_bytes(members[MANIFEST_FILE]))


def with_manifest(members: dict[str, bytes], manifest: dict) -> dict[str, bytes]:
    return {**members, MANIFEST_FILE: pack_bytes(json.dumps(manifest).encode())}


def model_name(members: dict[str, bytes]) -> str:
    manifest = manifest_of(members)
    return max(manifest["files"], key=lambda name: manifest["files"][name]["bytes"])


def write_pack(path: Path, entries, compress: bool = False) -> Path:
    """A tar of (name, payload) pairs, or of ready TarInfo objects with their payloads."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, payload in entries:
            info = name if isinstance(name, tarfile.TarInfo) else tarfile.TarInfo(name)
            if info.isfile():
                info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def zero_stream(size: int, block: int = 1 << 20) -> bytes:
    """zlib of `size` zero bytes, built a block at a time (a bomb: ~1000:1)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(bytes(min(block, size - done))) for done in range(0, size, block)]
    return b"".join(parts) + compressor.flush()


def stream(length: int, bitmap: bytes, values: bytes) -> bytes:
    return HEADER.pack(MAGIC, length, len(bitmap), len(values)) + bitmap + values


BOMB_BYTES = 256 << 20  # what the bomb streams below would inflate to


def bitmap_bomb(members: dict[str, bytes]) -> dict[str, bytes]:
    """The model's bitmap stream replaced by one that inflates to BOMB_BYTES (all zero: every
    byte of the file would be zero), its header claiming the recorded length."""
    name = model_name(members)
    length = manifest_of(members)["files"][name]["bytes"]
    return {**members, name: stream(length, zero_stream(BOMB_BYTES), zlib.compress(b""))}


def header_claims_a_tebibyte(members: dict[str, bytes]) -> dict[str, bytes]:
    name = model_name(members)
    _, _, bitmap_length, values_length = HEADER.unpack_from(members[name])
    body = members[name][HEADER.size :]
    return {**members, name: HEADER.pack(MAGIC, 1 << 40, bitmap_length, values_length) + body}


def manifest_claims_a_tebibyte(members: dict[str, bytes]) -> dict[str, bytes]:
    manifest = manifest_of(members)
    manifest["files"][model_name(members)]["bytes"] = 1 << 40
    return with_manifest(members, manifest)


def manifest_bomb(members: dict[str, bytes]) -> dict[str, bytes]:
    size = MAX_MANIFEST_BYTES + 1
    bitmap = zero_stream(-(-size // 8))
    return {**members, MANIFEST_FILE: stream(size, bitmap, zlib.compress(b""))}


def unlisted_member(members: dict[str, bytes]) -> dict[str, bytes]:
    return {**members, "extra.bin": pack_bytes(b"smuggled")}


def missing_member(members: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in members.items() if name != model_name(members)}


def changed_member(members: dict[str, bytes]) -> dict[str, bytes]:
    """A valid stream of the recorded length whose bytes differ: only the hash can tell."""
    name = model_name(members)
    from bertc.compiler.packing import unpack_bytes

    data = bytearray(unpack_bytes(members[name]))
    data[len(data) // 2] ^= 0xFF
    return {**members, name: pack_bytes(bytes(data))}


def longer_member(members: dict[str, bytes]) -> dict[str, bytes]:
    """The recorded length in the header, but streams holding one more byte."""
    name = model_name(members)
    from bertc.compiler.packing import unpack_bytes

    longer = pack_bytes(unpack_bytes(members[name]) + b"\x01")
    _, _, bitmap_length, values_length = HEADER.unpack_from(longer)
    length = HEADER.unpack_from(members[name])[1]
    return {**members, name: HEADER.pack(MAGIC, length, bitmap_length, values_length) + longer[32:]}


def trailing_bytes(members: dict[str, bytes]) -> dict[str, bytes]:
    name = model_name(members)
    magic, length, bitmap_length, values_length = HEADER.unpack_from(members[name])
    body = members[name][HEADER.size :] + b"tail"
    return {**members, name: HEADER.pack(magic, length, bitmap_length, values_length + 4) + body}


def unsafe_listed_name(members: dict[str, bytes]) -> dict[str, bytes]:
    manifest = manifest_of(members)
    manifest["files"]["../escaped"] = {"bytes": 1, "sha256": "0" * 64}
    return with_manifest(members, manifest)


def not_a_stream(members: dict[str, bytes]) -> dict[str, bytes]:
    return {**members, model_name(members): b"plain bytes, no header" * 4}


MUTATIONS: dict[str, tuple[Callable, str]] = {
    "bitmap bomb": (bitmap_bomb, "holds more than the file's recorded size"),
    "header claims 1 TiB": (header_claims_a_tebibyte, "claims 1099511627776 bytes"),
    "manifest lists 1 TiB": (manifest_claims_a_tebibyte, "more than an artifact may hold"),
    "manifest bomb": (manifest_bomb, f"at most {MAX_MANIFEST_BYTES:,}"),
    "unlisted member": (unlisted_member, "extra.bin, which its manifest does not list"),
    "missing member": (missing_member, "which its manifest lists"),
    "changed bytes": (changed_member, "sha256 differs"),
    "stream longer than recorded": (longer_member, "more than the file's recorded size"),
    "bytes after a stream": (trailing_bytes, "bytes after its end|more than the file's"),
    "unsafe name in the manifest": (unsafe_listed_name, "unsafe entry: ../escaped"),
    "member not a stream": (not_a_stream, "not a bertc zero-bitmap stream|shorter"),
}


def assert_refused(pack: Path, tmp_path: Path, match: str) -> ArtifactError:
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ArtifactError, match=match) as refused:
        unpack_artifact(pack, out)
    assert refused.value.exit_code == 11
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out, no staging, no escape
    return refused.value


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_a_hostile_pack_is_refused_before_it_costs_anything(
    case: str, members: dict[str, bytes], tmp_path: Path
) -> None:
    mutate, match = MUTATIONS[case]
    pack = write_pack(tmp_path / "hostile.bertcpack", sorted(mutate(members).items()))
    tracemalloc.start()
    try:
        assert_refused(pack, tmp_path, match)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python-side memory stays near a block, whatever the streams would inflate to.
    assert peak < BOMB_BYTES // 16, peak


def tar_entry(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


ENTRIES: dict[str, tuple[Callable[[dict], list], str]] = {
    "parent path": (lambda m: [*m.items(), ("../escaped", pack_bytes(b"x"))], "unsafe entry"),
    "absolute path": (
        lambda m: [*m.items(), ("/tmp/escaped", pack_bytes(b"x"))],
        "unsafe entry|does not list",
    ),
    "symlink": (
        lambda m: [*m.items(), (tar_entry("link", tarfile.SYMTYPE, "/etc/passwd"), b"")],
        "not a regular file",
    ),
    "hard link": (
        lambda m: [*m.items(), (tar_entry("hard", tarfile.LNKTYPE, MANIFEST_FILE), b"")],
        "not a regular file",
    ),
    "directory": (
        lambda m: [*m.items(), (tar_entry("tokenizer", tarfile.DIRTYPE), b"")],
        "not a regular file",
    ),
    "member twice": (
        lambda m: [*m.items(), (MANIFEST_FILE, m[MANIFEST_FILE])],
        "manifest.json twice",
    ),
    "no manifest": (
        lambda m: [(n, d) for n, d in m.items() if n != MANIFEST_FILE],
        "holds no manifest.json",
    ),
}


@pytest.mark.parametrize("case", list(ENTRIES))
def test_a_pack_with_unsafe_or_unlisted_entries_is_refused(
    case: str, members: dict[str, bytes], tmp_path: Path
) -> None:
    entries, match = ENTRIES[case]
    pack = write_pack(tmp_path / "hostile.bertcpack", entries(members))
    assert_refused(pack, tmp_path, match)
    assert not (tmp_path.parent / "escaped").exists()


def test_a_compressed_tar_is_refused_without_inflating_it(
    members: dict[str, bytes], tmp_path: Path
) -> None:
    pack = write_pack(tmp_path / "gzipped.bertcpack", sorted(members.items()), compress=True)
    assert_refused(pack, tmp_path, "not a readable bertc pack")


def test_the_caps_are_sane() -> None:
    """Far above a real artifact (bert-base fp32 is 0.44 GB), far below what a bomb claims."""
    assert 1 << 30 < MAX_ARTIFACT_BYTES < 1 << 40
    assert 1 << 20 < MAX_MANIFEST_BYTES < 1 << 30


def test_an_intact_crafted_pack_unpacks_byte_identical(
    members: dict[str, bytes], artifact: Path, tmp_path: Path
) -> None:
    """The control: the same members, re-tarred by this test's writer, restore the artifact."""
    pack = write_pack(tmp_path / "same.bertcpack", sorted(members.items()))
    out = unpack_artifact(pack, tmp_path / "out")
    for name in manifest_of(members)["files"]:
        assert (out / name).read_bytes() == (artifact / name).read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes it, not mkdtemp's 0700


def test_the_cli_refuses_a_damaged_pack_in_one_line(
    members: dict[str, bytes], tmp_path: Path, bertc_cli
) -> None:
    pack = write_pack(tmp_path / "bomb.bertcpack", sorted(bitmap_bomb(members).items()))
    result = bertc_cli("unpack", pack, "--out", tmp_path / "out")
    assert result.returncode == 11, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and "recorded size" in result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- run --file: lines


# Characters str.splitlines() breaks at, besides \n: each stays inside its line here.
LINE_BREAKERS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.fixture(scope="module")
def fused(compile_once, tiny_classifier) -> Path:
    """Strings in, one text an example, on OpenVINO: `--file` runs padded batches."""
    return compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED).artifact_dir


@pytest.fixture(scope="module")
def ids_in(compile_once, tiny_classifier) -> Path:
    """Token ids in on ONNX Runtime: the shipped tokenizer.json, one example a run."""
    return compile_once(tiny_classifier, "ort-mobile").artifact_dir


@pytest.mark.parametrize("breaker", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_only_newline_ends_a_line(breaker: str, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(f"one{breaker}two\nthree\r\n".encode())
    texts = [example.text for example in read_lines(inputs)]
    # A \r right before \n is a CRLF line end; anywhere else it is a character of the line.
    assert texts == [f"one{breaker}two", "three"]


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty line": (b"good\n\nalso good\n", "line 2 is empty"),
    "blank pair": (b"good\nalso good\n \t \n", "the first text of line 3 is empty"),
    "whitespace line": (b"good\n   \n", "line 2 is empty"),
    "trailing empty line": (b"good\nbad\n\n", "line 3 is empty"),
    "CRLF empty line": (b"good\r\n\r\nx\r\n", "line 2 is empty"),
    "invalid UTF-8": (b"good\nalso good\nbad \xff byte\n", "line 3 is not valid UTF-8"),
    "truncated UTF-8": (b"good\n\xe2\x80", "line 2 is not valid UTF-8"),
    "three texts": (b"a\tb\tc\n", "line 1 holds 3 tab-separated texts"),
    "ragged texts": (b"a\tb\nc\td\ne\n", "line 3 holds 1 tab-separated text"),
    "empty second text": (b"a\tb\nc\t\n", "the second text of line 2 is empty"),
    "empty first text": (b"\tb\n", "the first text of line 1 is empty"),
    "empty file": (b"", "holds no examples"),
    "line too long": (b"ok\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n", "line 2 is longer"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_line_is_refused_by_its_number(case: str, tmp_path: Path) -> None:
    content, match = BAD_FILES[case]
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(content)
    with pytest.raises(DataError, match=match) as refused:
        list(read_lines(inputs))
    assert refused.value.exit_code == 7 and "\n" not in str(refused.value)


@pytest.mark.parametrize("case", ["empty line", "invalid UTF-8", "ragged texts"])
def test_the_cli_refuses_before_printing_anything(
    case: str, fused: Path, tmp_path: Path, bertc_cli
) -> None:
    content, match = BAD_FILES[case]
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(content)
    result = bertc_cli("run", fused, "--file", inputs)
    assert result.returncode == 7, result.stderr
    assert result.stdout == ""  # the good lines before the bad one are not half a result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and any(part in line for part in match.split("|"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["", "x"], "TEXT is empty"),
        ([" \t "], "TEXT is empty"),
        (["fine", "  "], "the second text is empty"),
        (["bad \udcff byte"], "TEXT is not valid UTF-8 (byte 0xff at character 5)"),
        (["fine", "\udcc3"], "the second text is not valid UTF-8 (byte 0xc3 at character 1)"),
    ],
    ids=["empty", "blank", "empty pair", "invalid UTF-8", "invalid UTF-8 pair"],
)
def test_a_bad_text_argument_is_one_usage_error(arguments: list[str], message: str) -> None:
    from bertc.compiler.running import argument_inputs

    with pytest.raises(UsageError, match=re.escape(message)) as refused:
        argument_inputs(*arguments, *([None] * (2 - len(arguments))))
    assert refused.value.exit_code == 2


def test_invalid_utf8_on_the_command_line_is_one_line(fused: Path, bertc_cli) -> None:
    result = subprocess.run(
        [Path(sys.executable).with_name("bertc"), "run", fused, b"bad \xff byte"],
        capture_output=True,
        env=QUIET_ENV,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().strip().splitlines() == [
        "error: TEXT is not valid UTF-8 (byte 0xff at character 5)"
    ]


def mixed_lines(count: int) -> list[str]:
    """Texts of very different lengths in a shuffled order, with the odd characters above."""
    rng = np.random.default_rng(0)
    words = ["a", "gorgeous", "witty", "movie", "the", "film", "is", "dull", "tedious", "slow"]
    lines = []
    for index in range(count):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 40))))
        lines.append(f"{index} {LINE_BREAKERS[index % len(LINE_BREAKERS)]} {text}")
    return lines


@pytest.mark.parametrize("artifact_name", ["fused", "ids_in"])
def test_output_line_n_answers_input_line_n(
    artifact_name: str, request, tmp_path: Path, bertc_cli
) -> None:
    """More lines than a chunk, lengths shuffled (each chunk is sorted by length to run): the
    output comes back in input order, and each line's label is the one it gets alone."""
    artifact = request.getfixturevalue(artifact_name)
    lines = mixed_lines(CHUNK_LINES + BATCH_SIZE + 3)
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    result = bertc_cli("run", artifact, "--file", inputs, "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.split("\n") if line]
    assert [row["text"] for row in rows] == lines
    model = loader.load(artifact, threads=1)
    for row, text in zip(rows[: BATCH_SIZE + 1], lines, strict=False):
        alone = model.predict([text])[0]
        np.testing.assert_allclose(row["scores"], alone.scores, atol=2e-2)


def test_the_file_is_read_a_chunk_at_a_time(ids_in: Path) -> None:
    """When the first output line is ready, at most one chunk of input has been read."""
    consumed = []

    def examples():
        for number in range(1, 5 * CHUNK_LINES + 1):
            consumed.append(number)
            yield InputLine(number, f"line {number} of a long file")

    outputs = run_artifact(ids_in, examples(), threads=1, as_json=False)
    next(outputs)
    assert len(consumed) <= CHUNK_LINES + 1
    assert len(list(outputs)) == 5 * CHUNK_LINES - 1


# ---------------------------------------------------------------- runtime failures


BOOM = "boom"


def out_of_vocabulary(real_call):
    """HfTokenizer.__call__, but the text BOOM gets a token id past the vocabulary, which makes
    ONNX Runtime's Gather fail (a real runtime error, raised and logged by ORT itself)."""

    def call(self, text, pair):
        arrays = real_call(self, text, pair)
        if text == BOOM:
            arrays["input_ids"][0, 1] = 1_000_000
        return arrays

    return call


def test_a_runtime_failure_names_the_line_it_failed_on(
    ids_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        loader.HfTokenizer, "__call__", out_of_vocabulary(loader.HfTokenizer.__call__)
    )
    failing = CHUNK_LINES + 5  # in the second chunk, inside a batch of others
    examples = [
        InputLine(number, BOOM if number == failing else f"fine line {number}")
        for number in range(1, CHUNK_LINES + 20)
    ]
    with pytest.raises(ArtifactError, match=f"the runtime failed on line {failing}: ") as failed:
        list(run_artifact(ids_in, examples, threads=1, as_json=False))
    assert failed.value.exit_code == 11
    assert "\n" not in str(failed.value) and "Gather" in str(failed.value)
    assert isinstance(failed.value.__cause__, loader.RuntimeFailure)


CLI_DRIVER = """
import sys
from bertc.targets import loader
real = loader.HfTokenizer.__call__
def call(self, text, pair):
    arrays = real(self, text, pair)
    if text == "boom":
        arrays["input_ids"][0, 1] = 1_000_000
    return arrays
loader.HfTokenizer.__call__ = call
sys.argv = ["bertc", *sys.argv[1:]]
from bertc.compiler.cli import main
main()
"""


def test_the_cli_says_one_line_and_onnx_runtime_logs_nothing(ids_in: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("fine\nboom\nfine again\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", CLI_DRIVER, "run", str(ids_in), "--file", str(inputs)],
        capture_output=True,
        env=QUIET_ENV,
        text=True,
        timeout=300,
    )
    assert result.returncode == 11, result.stderr
    (line,) = result.stderr.strip().splitlines()  # no "[E:onnxruntime:...]" log line
    assert line.startswith("error: the runtime failed on line 2: ")


@pytest.fixture(scope="module")
def fused_pair(compile_once, tmp_path_factory) -> Path:
    from model_factory import make_checkpoint

    regressor = make_checkpoint(tmp_path_factory.mktemp("stsb"), head="regression")
    return compile_once(
        regressor,
        "openvino",
        task="stsb",
        tokenizer=TokenizerMode.FUSED,
        allow_tokenizer_mismatch=True,
    ).artifact_dir


def test_an_empty_pair_on_openvino_is_one_line(fused_pair: Path, tmp_path: Path, bertc_cli) -> None:
    """Two empty texts make OpenVINO's tokenizer graph fail (a Broadcast of a 0-length shape):
    the CLI refuses empty texts first; the loader turns the runtime's error into one line."""
    refused = bertc_cli("run", fused_pair, "", "")
    assert refused.returncode == UsageError.exit_code
    assert refused.stderr.strip().splitlines() == ["error: TEXT is empty: give a text to label"]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a man plays\ta man is playing\n\t\n", encoding="utf-8")
    from_file = bertc_cli("run", fused_pair, "--file", pairs)
    assert from_file.returncode == DataError.exit_code and from_file.stdout == ""
    assert from_file.stderr.strip().splitlines() == [
        f"error: {pairs}: the first text of line 2 is empty"
    ]
    model = loader.load(fused_pair, threads=1)
    with pytest.raises(loader.RuntimeFailure) as failed:
        model.predict(["", ""], ["", ""])
    assert "\n" not in str(failed.value) and len(str(failed.value)) < 400


class FailingRunner:
    """A runner whose runtime fails on the example numbered `failing` (its `n`)."""

    def __init__(self, failing: int) -> None:
        self.failing = failing

    def run(self, inputs):
        if self.failing in inputs["n"]:
            raise loader.RuntimeFailure("Non-zero status code returned while running Gather node")
        return [np.zeros((len(inputs["n"]), 2))]


def test_verify_names_the_example_and_the_batch_its_runtime_failed_on() -> None:
    from bertc.calibration.readers import Example
    from bertc.compiler.verify import measure

    examples = [Example(f"text {n}", None, 0, n + 1) for n in range(1, 11)]  # header on line 1
    singles = [{"n": [n]} for n in range(1, 11)]
    places = [f"example {n} (line {e.line})" for n, e in enumerate(examples, start=1)]
    with pytest.raises(ArtifactError, match=r"failed on example 7 \(line 8\): Non-zero") as one:
        measure._run_timed(FailingRunner(7), singles, 0, places)
    assert one.value.exit_code == 11 and "\n" not in str(one.value)
    batches = [{"n": list(range(start, min(start + 4, 11)))} for start in (1, 5, 9)]
    batch_places = [measure._batch_place(examples, start, 4) for start in (0, 4, 8)]
    with pytest.raises(ArtifactError, match=r"the batch of examples 5-8 \(lines 6-9\)"):
        measure._throughput(FailingRunner(7), batches, 10, 0, batch_places)


# ---------------------------------------------------------------- packs: colliding names


def listing(members: dict[str, bytes], extra: dict[str, bytes]) -> list:
    """The members plus `extra`, each listed in the manifest with its true size and sha256."""
    from bertc.compiler.packing import unpack_bytes

    manifest = manifest_of(members)
    for name, payload in extra.items():
        raw = unpack_bytes(payload)
        manifest["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    return sorted({**with_manifest(members, manifest), **extra}.items())


COLLISIONS: dict[str, tuple[dict[str, bytes], str]] = {
    "file and folder": ({"zz": pack_bytes(b"a"), "zz/a": pack_bytes(b"b")}, "file and as a folder"),
    "deep file and folder": (
        {"x/y": pack_bytes(b"a"), "x/y/z/w": pack_bytes(b"b")},
        "file and as a folder",
    ),
    "names differing in case": (
        {"Notes.txt": pack_bytes(b"a"), "notes.txt": pack_bytes(b"b")},
        "but for case",
    ),
    "file and folder differing in case": (
        {"ZZ": pack_bytes(b"a"), "zz/a": pack_bytes(b"b")},
        "file and as a folder",
    ),
    "under the manifest's name": ({"manifest.json/a": pack_bytes(b"a")}, "own manifest.json"),
    "the signature's name": ({"model.sig": pack_bytes(b"a")}, "own model.sig"),
}


@pytest.mark.parametrize("case", list(COLLISIONS))
def test_a_pack_whose_manifest_lists_colliding_names_is_damaged(
    case: str, members: dict[str, bytes], tmp_path: Path
) -> None:
    extra, match = COLLISIONS[case]
    pack = write_pack(tmp_path / "collide.bertcpack", listing(members, extra))
    error = assert_refused(pack, tmp_path, match)
    assert str(error).startswith(f"{pack} is a damaged bertc pack")


def test_a_damaged_manifest_is_named_by_the_pack_not_the_staging_folder(
    members: dict[str, bytes], tmp_path: Path
) -> None:
    pack = write_pack(
        tmp_path / "badman.bertcpack", sorted({**members, MANIFEST_FILE: pack_bytes(b"{")}.items())
    )
    error = assert_refused(pack, tmp_path, "not valid JSON|JSON")
    assert str(error).startswith(f"{pack} is a damaged bertc pack")
    assert ".partial-" not in str(error)


@pytest.mark.parametrize("where", ["inside", "equal", "deep inside"])
def test_pack_refuses_an_out_inside_its_artifact(
    where: str, artifact: Path, tmp_path: Path, bertc_cli
) -> None:
    copy = Path(shutil.copytree(artifact, tmp_path / "art"))
    out = {"inside": copy / "x.bertcpack", "equal": copy, "deep inside": copy / "a" / "b.pack"}
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    result = bertc_cli("pack", copy, "--out", out[where])
    assert result.returncode == 13, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_unpack_refuses_an_out_at_or_inside_its_pack_file(
    where: str, artifact: Path, tmp_path: Path
) -> None:
    pack = pack_artifact(artifact, tmp_path / "p.bertcpack")
    data = pack.read_bytes()
    out = pack if where == "equal" else pack / "out"
    with pytest.raises((OutputExistsError, UsageError)) as refused:
        unpack_artifact(pack, out)
    assert refused.value.exit_code in (13, 2)
    assert pack.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.bertcpack"]


# ---- a line with another number of texts than the model takes


@pytest.mark.parametrize(
    "content",
    [b"good\tmovie\n", b"good\tmovie\nbad\tfilm\n", b"a\tb\r\n"],
    ids=["one pair line", "every line a pair", "CRLF pair line"],
)
def test_a_pair_line_for_a_one_text_model_is_a_data_error_naming_the_line(
    content: bytes, fused: Path, tmp_path: Path, bertc_cli
) -> None:
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(content)
    result = bertc_cli("run", fused, "--file", inputs)
    assert result.returncode == 7, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "line 1" in line and "one text" in line


SHAPE_MISMATCHES = {
    "pair line, one-text model": (False, ("good", "movie")),
    "one-text line, pair model": (True, ("good", None)),
}


@pytest.mark.parametrize("case", list(SHAPE_MISMATCHES))
@pytest.mark.parametrize("line", [0, 1, 42], ids=["TEXT argument", "line 1", "line 42"])
def test_a_text_count_mismatch_is_exit_7_for_a_file_line_and_2_for_arguments(
    case: str, line: int
) -> None:
    from types import SimpleNamespace

    from bertc.compiler.running import InputLine, _check_text_count

    pair, (text, text_pair) = SHAPE_MISMATCHES[case]
    model = SimpleNamespace(head="classifier", pair=pair)
    expected = DataError if line else UsageError
    with pytest.raises(expected) as refused:
        _check_text_count(Path("art"), model, InputLine(line, text, text_pair))
    assert refused.value.exit_code == (7 if line else 2)
    assert (f"line {line}" in str(refused.value)) == bool(line)
    assert "\n" not in str(refused.value)
