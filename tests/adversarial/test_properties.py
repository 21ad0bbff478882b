"""Property-based tests (hypothesis) of the readers of untrusted bytes: the GLUE TSV reader, the
`bertc run --file` reader and `unpack`. Whatever the input, each gives either the right answer or
one BertcError naming where the input went wrong; never another exception, never a wrong line
number, never a file outside the output directory."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from bertc.calibration import get_task
from bertc.calibration.readers import read_glue_tsv
from bertc.compiler.core.errors import ArtifactError, DataError
from bertc.compiler.packing import pack_artifact, unpack_artifact
from bertc.compiler.running import read_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Modest, so the suite stays fast on two cores; no deadline (a loaded CI machine is slow).
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SST2 = get_task("sst2")
HEADER = b"sentence\tlabel\n"


def named_lines(message: str) -> list[int]:
    return [int(number) for number in re.findall(r"\bline (\d+)", message)]


def read_sst2(body: bytes) -> list:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "SST-2"
        folder.mkdir()
        (folder / "dev.tsv").write_bytes(HEADER + body)
        return read_glue_tsv(SST2, Path(root), "dev")


# ---- the GLUE TSV reader

# A sentence as GLUE could hold it: any characters but a tab or \n, and no \r at its end (a CRLF
# line end); quotes, U+2028, form feeds, NEL are plain characters of the sentence.
sentences = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n"),
    min_size=0,
    max_size=30,
).filter(lambda text: not text.endswith("\r"))
rows = st.lists(st.tuples(sentences, st.sampled_from(["0", "1"])), min_size=1, max_size=20)


def tsv(rows: list[tuple[str, str]], line_end: bytes) -> bytes:
    return b"".join(f"{text}\t{label}".encode() + line_end for text, label in rows)


@PROPERTY_SETTINGS
@given(rows=rows, line_end=st.sampled_from([b"\n", b"\r\n"]))
def test_tsv_rows_come_back_as_written(rows, line_end) -> None:
    examples = read_sst2(tsv(rows, line_end))
    assert [(e.text_a, e.label, e.line) for e in examples] == [
        (text, int(label), number) for number, (text, label) in enumerate(rows, start=2)
    ]


@PROPERTY_SETTINGS
@given(rows=rows, data=st.data())
def test_a_tsv_line_that_is_not_utf8_is_named(rows, data) -> None:
    bad = data.draw(st.integers(0, len(rows) - 1))
    body = tsv(rows[:bad], b"\n") + b"bad \xff\xfe\t1\n" + tsv(rows[bad + 1 :], b"\n")
    with pytest.raises(DataError) as refused:
        read_sst2(body)
    assert named_lines(str(refused.value)) == [bad + 2]  # line 1 is the header


@PROPERTY_SETTINGS
@given(rows=rows, data=st.data())
def test_a_tsv_row_with_a_bad_label_is_named(rows, data) -> None:
    bad = data.draw(st.integers(0, len(rows) - 1))
    rows = [*rows[:bad], ("a sentence", "maybe"), *rows[bad + 1 :]]
    with pytest.raises(DataError) as refused:
        read_sst2(tsv(rows, b"\n"))
    assert f"at lines {bad + 2} (line {bad + 2}: label 'maybe'" in str(refused.value)


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=400))
def test_any_tsv_bytes_parse_or_fail_with_a_real_line_number(body: bytes) -> None:
    lines = (HEADER + body).count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    try:
        examples = read_sst2(body)
    except DataError as error:
        assert all(1 <= line <= max(lines, 1) for line in named_lines(str(error))), str(error)
        return
    assert 1 <= len(examples) <= lines - 1
    assert all(2 <= e.line <= lines for e in examples)


# ---- the --file reader


def expected_file_lines(data: bytes) -> tuple[list[tuple[str, str | None]], int | None]:
    """What `read_lines` must give for `data`: the examples, or the first bad line's number
    (0: the file is empty). Lines end at \\n; one \\r before it and a BOM on line 1 go."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if not lines:
        return [], 0
    examples: list[tuple[str, str | None]] = []
    for number, raw in enumerate(lines, start=1):
        raw = raw.removesuffix(b"\r")
        raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        try:
            fields = raw.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            return examples, number
        if len(fields) > 2 or not all(field.strip() for field in fields):
            return examples, number
        if examples and (examples[0][1] is None) != (len(fields) == 1):
            return examples, number
        examples.append((fields[0], fields[1] if len(fields) == 2 else None))
    return examples, None


def check_read_lines(data: bytes) -> None:
    expected, bad_line = expected_file_lines(data)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "inputs.txt"
        path.write_bytes(data)
        if bad_line is None:
            got = [(line.text, line.text_pair) for line in read_lines(path)]
            assert got == expected
            assert [line.line for line in read_lines(path)] == list(range(1, len(got) + 1))
            return
        with pytest.raises(DataError) as refused:
            list(read_lines(path))
    message = str(refused.value)
    assert named_lines(message) == ([bad_line] if bad_line else []), message
    assert refused.value.exit_code == 7 and "\n" not in message


# Text with the characters that used to split or drop lines, and tabs, CRs, blanks.
file_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ab \t\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufeff")),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=200,
)


@PROPERTY_SETTINGS
@given(text=file_text)
def test_file_text_gives_one_example_per_line_or_names_the_bad_line(text: str) -> None:
    check_read_lines(text.encode("utf-8"))


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=200))
def test_file_bytes_give_one_example_per_line_or_name_the_bad_line(data: bytes) -> None:
    check_read_lines(data)


@PROPERTY_SETTINGS
@given(
    lines=st.lists(st.text(alphabet="abc é\u2028\x0c", min_size=1).filter(str.strip), min_size=1)
)
def test_good_lines_are_all_kept_in_order(lines: list[str]) -> None:
    check_read_lines(("\n".join(lines) + "\n").encode())


# ---- unpack


@pytest.fixture(scope="module")
def packed(compile_once, tiny_classifier, tmp_path_factory) -> tuple[Path, bytes]:
    """A real artifact and its pack's bytes."""
    artifact = compile_once(tiny_classifier, "onnx", quantization="dynamic").artifact_dir
    pack = pack_artifact(artifact, tmp_path_factory.mktemp("packed") / "tiny.bertcpack")
    return artifact, pack.read_bytes()


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@st.composite
def damage(draw, size: int) -> tuple[str, int, bytes]:
    """(how, where, bytes): flip a byte, truncate, insert or overwrite bytes, anywhere."""
    how = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    where = draw(st.integers(0, size - 1))
    payload = draw(st.binary(min_size=1, max_size=64))
    return how, where, payload


def damaged(data: bytes, how: str, where: int, payload: bytes) -> bytes:
    if how == "flip":
        return data[:where] + bytes([data[where] ^ (payload[0] or 1)]) + data[where + 1 :]
    if how == "truncate":
        return data[:where]
    if how == "insert":
        return data[:where] + payload + data[where:]
    return data[:where] + payload + data[where + len(payload) :]


def test_unpack_property(packed) -> None:
    artifact, pack = packed
    original = tree(artifact)

    @PROPERTY_SETTINGS
    @given(change=damage(len(pack)))
    def unpack_damaged(change) -> None:
        with tempfile.TemporaryDirectory() as root:
            root = Path(root)
            source = root / "damaged.bertcpack"
            source.write_bytes(damaged(pack, *change))
            out = root / "out"
            try:
                unpack_artifact(source, out)
            except ArtifactError as error:
                assert error.exit_code == 11 and "\n" not in str(error)
                assert sorted(p.name for p in root.iterdir()) == ["damaged.bertcpack"]
                return
            assert tree(out) == original  # accepted only when every byte is the original's
            assert sorted(p.name for p in root.iterdir()) == ["damaged.bertcpack", "out"]

    unpack_damaged()
