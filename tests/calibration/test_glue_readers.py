"""GLUE readers on the real glue_data files and on small TSVs of the real layout."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from bertc.calibration import get_task, load_examples, read_glue_tsv, read_hf_glue
from bertc.compiler.core.errors import (
    DataFileMissingError,
    EmptySplitError,
    MalformedRowsError,
    UsageError,
)

# The real MNLI headers: train has one annotator label, dev five; gold_label is last in both.
MNLI_TRAIN_HEADER = [
    *("index", "promptID", "pairID", "genre"),
    *("sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"),
    *("sentence1", "sentence2", "label1", "gold_label"),
]
MNLI_DEV_HEADER = [*MNLI_TRAIN_HEADER[:-1], "label2", "label3", "label4", "label5", "gold_label"]


def write_tsv(path: Path, rows: list[list[str]], final_newline: bool = True) -> Path:
    """A TSV the way glue_data writes it: tab-separated, LF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(row) for row in rows)
    path.write_text(text + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def mnli_row(index: int, premise: str, hypothesis: str, gold: str, header: list[str]) -> list[str]:
    """One MNLI row: parses and annotator labels filled, gold label last."""
    row = [str(index), f"{index}1", f"{index}1e", "fiction"]
    row += ["( x )", "( y )", "(ROOT x)", "(ROOT y)", premise, hypothesis]
    row += [gold] * (len(header) - len(row))
    return row


# Real files (skipped where the assets are absent) ------------------------------------------


def test_sst2_dev(read_real) -> None:
    examples = read_real("sst2", "dev")
    assert len(examples) == 872
    first = examples[0]
    assert first.text_a == "it 's a charming and often affecting journey . "
    assert (first.text_b, first.label, first.line) == (None, 1, 2)
    assert {e.label for e in examples} == {0, 1}


def test_sst2_train_whole_file(read_real) -> None:
    examples = read_real("sst2", "train")
    assert len(examples) == 67349
    assert examples[0].text_a == "hide new secretions from the parental units "
    assert examples[-1].line == 67350


def test_mrpc_dev_with_byte_order_mark(read_real) -> None:
    examples = read_real("mrpc", "dev")
    assert len(examples) == 408
    first = examples[0]
    # the Quality column sits right after the BOM: its label parses only if the BOM is stripped
    assert first.label == 1
    assert first.text_a.startswith("He said the foodservice pie business doesn 't fit")
    assert first.text_b == (
        '" The foodservice pie business does not fit our long-term growth strategy .'
    )
    assert {e.label for e in examples} == {0, 1}


def test_task_folder_itself_is_accepted(glue_dir: Path, read_real) -> None:
    from_root = read_real("mrpc", "dev")
    assert read_glue_tsv(get_task("mrpc"), glue_dir / "MRPC", "dev") == from_root


def test_cola_dev_without_header_or_final_newline(read_real) -> None:
    examples = read_real("cola", "dev")
    assert len(examples) == 1043
    assert examples[0].text_a == "The sailors rode the breeze clear of the rocks."
    assert (examples[0].label, examples[0].line) == (1, 1)
    assert examples[-1].text_a == "John talked to Bill about himself."
    assert examples[-1].line == 1043
    assert {e.label for e in examples} == {0, 1}


def test_stsb_dev_scores(read_real) -> None:
    examples = read_real("stsb", "dev")
    assert len(examples) == 1500
    assert examples[0].text_a == "A man with a hard hat is dancing."
    assert examples[0].text_b == "A man wearing a hard hat is dancing."
    assert examples[0].label == 5.0
    assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in examples)
    assert len({e.label for e in examples}) > 2


def test_rte_dev(read_real) -> None:
    examples = read_real("rte", "dev")
    assert len(examples) == 277
    assert examples[0].text_b == "Christopher Reeve had an accident."
    assert examples[0].label == get_task("rte").labels.index("not_entailment") == 1


def test_wnli_dev(read_real) -> None:
    examples = read_real("wnli", "dev")
    assert len(examples) == 71
    assert examples[0].text_a == "The drain is clogged with hair. It has to be cleaned."
    assert {e.label for e in examples} == {0, 1}


def test_qnli_dev(read_real) -> None:
    examples = read_real("qnli", "dev")
    assert len(examples) == 5463
    assert examples[0].text_a == "What came into force after the new constitution was herald?"
    assert examples[0].label == 0  # entailment
    assert {e.label for e in examples} == {0, 1}


def test_missing_split_names_the_expected_file(glue_dir: Path) -> None:
    if (glue_dir / "QNLI" / "train.tsv").exists():
        pytest.skip("QNLI train.tsv is present in these assets")
    with pytest.raises(DataFileMissingError) as caught:
        read_glue_tsv(get_task("qnli"), glue_dir, "train")
    message = str(caught.value)
    assert str(glue_dir / "QNLI" / "train.tsv") in message
    assert "<root>/<TaskFolder>/<split>.tsv" in message


def test_another_tasks_folder_is_not_read_by_mistake(glue_dir: Path) -> None:
    with pytest.raises(DataFileMissingError, match=re.escape(str(glue_dir / "SST-2" / "CoLA"))):
        read_glue_tsv(get_task("cola"), glue_dir / "SST-2", "dev")


# Synthetic files of the real layout ---------------------------------------------------------


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    header = MNLI_DEV_HEADER
    write_tsv(
        tmp_path / "MNLI" / "dev_matched.tsv",
        [header, mnli_row(0, "A man sleeps.", "A person rests.", "entailment", header)],
    )
    write_tsv(
        tmp_path / "MNLI" / "dev_mismatched.tsv",
        [
            header,
            mnli_row(0, "It rained.", "It was dry.", "contradiction", header),
            mnli_row(1, "She sang.", "She sang well.", "neutral", header),
        ],
    )
    matched = read_glue_tsv(get_task("mnli"), tmp_path, "dev")
    mismatched = read_glue_tsv(get_task("mnli-mm"), tmp_path, "dev")
    assert [(e.text_a, e.text_b, e.label) for e in matched] == [
        ("A man sleeps.", "A person rests.", 1)
    ]
    assert [(e.text_a, e.label, e.line) for e in mismatched] == [
        ("It rained.", 0, 2),
        ("She sang.", 2, 3),
    ]


def test_mnli_train_label_is_found_by_header_even_with_extra_columns(tmp_path: Path) -> None:
    header = MNLI_TRAIN_HEADER
    extra = [*mnli_row(1, "Cats purr.", "Cats are silent.", "contradiction", header), "junk"]
    write_tsv(
        tmp_path / "MNLI" / "train.tsv",
        [header, mnli_row(0, "Dogs bark.", "Dogs make noise.", "entailment", header), extra],
    )
    examples = read_glue_tsv(get_task("mnli"), tmp_path, "train")
    assert [(e.text_a, e.label) for e in examples] == [("Dogs bark.", 1), ("Cats purr.", 0)]


def test_qqp(tmp_path: Path) -> None:
    write_tsv(
        tmp_path / "QQP" / "dev.tsv",
        [
            ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            ["201359", "303345", "303346", "Why are people so obsessed?", "Why obsess?", "1"],
            ["263843", "69383", "380476", "Is it safe?", "Is this red?", "0"],
        ],
    )
    examples = read_glue_tsv(get_task("qqp"), tmp_path, "dev")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("Why are people so obsessed?", "Why obsess?", 1),
        ("Is it safe?", "Is this red?", 0),
    ]


def test_qnli_train(tmp_path: Path) -> None:
    write_tsv(
        tmp_path / "QNLI" / "train.tsv",
        [
            ["index", "question", "sentence", "label"],
            ["0", "When did it open?", "It opened in 1901.", "entailment"],
            ["1", "Who built it?", "It is tall.", "not_entailment"],
        ],
    )
    examples = read_glue_tsv(get_task("qnli"), tmp_path, "train")
    assert [(e.text_a, e.label) for e in examples] == [
        ("When did it open?", 0),
        ("Who built it?", 1),
    ]


def test_quotes_are_plain_characters(tmp_path: Path) -> None:
    # QUOTE_NONE: a lone quote must not swallow the following lines into one field
    write_tsv(
        tmp_path / "SST-2" / "dev.tsv",
        [["sentence", "label"], ['" a quote opens', "1"], ["and never closes", "0"]],
    )
    examples = read_glue_tsv(get_task("sst2"), tmp_path)
    assert [(e.text_a, e.label) for e in examples] == [
        ('" a quote opens', 1),
        ("and never closes", 0),
    ]


def test_malformed_rows_are_all_reported_with_line_numbers(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "SST-2" / "dev.tsv",
        [
            ["sentence", "label"],  # line 1
            ["good", "1"],  # line 2
            ["bad label", "2"],  # line 3
            ["fine", "0"],  # line 4
            ["no label column"],  # line 5
            ["ok", "1"],  # line 6
        ],
    )
    with pytest.raises(MalformedRowsError) as caught:
        read_glue_tsv(get_task("sst2"), tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "2 malformed row(s) at lines 3, 5 " in message
    assert "line 3: label '2'" in message and "line 5: 1 column(s)" in message


def test_many_malformed_rows_are_counted(tmp_path: Path) -> None:
    rows = [["index", "sentence1", "sentence2", "score"]]
    rows += [[str(i), "a", "b", "n/a"] for i in range(15)]  # lines 2..16
    write_tsv(tmp_path / "STS-B" / "dev.tsv", rows)
    with pytest.raises(MalformedRowsError) as caught:
        read_glue_tsv(get_task("stsb"), tmp_path)
    message = str(caught.value)
    assert "15 malformed row(s) at lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 5 more" in message
    assert "score 'n/a' is not a number" in message


def test_headerless_cola_short_row(tmp_path: Path) -> None:
    write_tsv(
        tmp_path / "CoLA" / "dev.tsv",
        [["gj04", "1", "", "Fine."], ["gj04", "0", "*"], ["gj04", "0", "*", "Bad it."]],
        final_newline=False,
    )
    expected = "at lines 2 (line 2: 3 column(s), need at least 4)"
    with pytest.raises(MalformedRowsError, match=re.escape(expected)):
        read_glue_tsv(get_task("cola"), tmp_path)


def test_header_without_the_expected_columns(tmp_path: Path) -> None:
    write_tsv(tmp_path / "RTE" / "dev.tsv", [["index", "premise", "hypothesis", "label"]])
    with pytest.raises(MalformedRowsError, match="lacks column\\(s\\) sentence1, sentence2"):
        read_glue_tsv(get_task("rte"), tmp_path)


def test_header_only_is_an_empty_split(tmp_path: Path) -> None:
    write_tsv(tmp_path / "WNLI" / "dev.tsv", [["index", "sentence1", "sentence2", "label"]])
    with pytest.raises(EmptySplitError, match="no examples"):
        read_glue_tsv(get_task("wnli"), tmp_path)


def test_empty_file_is_an_empty_split(tmp_path: Path) -> None:
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "dev.tsv").write_text("")
    with pytest.raises(EmptySplitError):
        read_glue_tsv(get_task("cola"), tmp_path)


def test_missing_file_names_path_and_what_the_folder_holds(tmp_path: Path) -> None:
    write_tsv(tmp_path / "MNLI" / "train.tsv", [MNLI_TRAIN_HEADER])
    with pytest.raises(DataFileMissingError) as caught:
        read_glue_tsv(get_task("mnli-mm"), tmp_path, "dev")
    message = str(caught.value)
    assert f"expected {tmp_path / 'MNLI' / 'dev_mismatched.tsv'}" in message
    assert "holds: train.tsv" in message


def test_unknown_split_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="known: dev, train"):
        read_glue_tsv(get_task("sst2"), tmp_path, "test")


def test_validation_is_an_alias_of_dev(tmp_path: Path) -> None:
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["fine", "1"]])
    assert read_glue_tsv(get_task("sst2"), tmp_path, "validation")[0].label == 1


# Hugging Face datasets, faked (datasets is an optional dependency) ----------------------------


SST2_HF_NAMES = ["negative", "positive"]


class FakeHfSplit(list):
    """A list of records with the ``features`` attribute an HF Dataset has."""

    def __init__(self, records: list[dict], label_names: list[str] | None) -> None:
        super().__init__(records)
        self.features = {"label": SimpleNamespace(names=label_names)}


def fake_datasets(monkeypatch: pytest.MonkeyPatch, split: FakeHfSplit) -> list[tuple]:
    """Install a fake ``datasets`` module; returns the calls made to load_dataset."""
    calls: list[tuple] = []

    def load_dataset(path: str, config: str, split: str) -> FakeHfSplit:
        calls.append((path, config, split))
        return fake_split

    fake_split = split
    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hf_mnli_labels_are_remapped_to_bertc_order(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        {"premise": "p0", "hypothesis": "h0", "label": 0},  # HF entailment
        {"premise": "p1", "hypothesis": "h1", "label": 1},  # HF neutral
        {"premise": "p2", "hypothesis": "h2", "label": 2},  # HF contradiction
        {"premise": "p3", "hypothesis": "h3", "label": -1},  # hidden test label
    ]
    calls = fake_datasets(
        monkeypatch, FakeHfSplit(records, ["entailment", "neutral", "contradiction"])
    )
    examples = read_hf_glue(get_task("mnli-mm"), "dev")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    labels = get_task("mnli").labels
    assert [labels[e.label] for e in examples[:3]] == ["entailment", "neutral", "contradiction"]
    assert examples[3].label is None
    assert [(e.text_a, e.text_b, e.line) for e in examples[:2]] == [
        ("p0", "h0", 1),
        ("p1", "h1", 2),
    ]


def test_hf_single_sentence_and_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_datasets(monkeypatch, FakeHfSplit([{"sentence": "s", "label": 1}], SST2_HF_NAMES))
    assert read_hf_glue(get_task("sst2"), "train")[0] == read_hf_glue(get_task("sst2"))[0]
    example = read_hf_glue(get_task("sst2"))[0]
    assert (example.text_a, example.text_b, example.label) == ("s", None, 1)

    fake_datasets(
        monkeypatch, FakeHfSplit([{"sentence1": "a", "sentence2": "b", "label": 3.8}], None)
    )
    assert read_hf_glue(get_task("stsb"))[0].label == pytest.approx(3.8)


def test_hf_without_datasets_points_to_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataFileMissingError, match="not installed.*--data-dir"):
        read_hf_glue(get_task("cola"))


def test_hf_offline_points_to_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataFileMissingError) as caught:
        read_hf_glue(get_task("rte"))
    message = str(caught.value)
    assert "Couldn't reach" in message and "--data-dir" in message and "\n" not in message


def test_load_examples_dispatches_on_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["from tsv", "0"]])
    fake_datasets(monkeypatch, FakeHfSplit([{"sentence": "from hub", "label": 1}], SST2_HF_NAMES))
    assert load_examples(get_task("sst2"), "dev", tmp_path)[0].text_a == "from tsv"
    assert load_examples(get_task("sst2"), "dev", None)[0].text_a == "from hub"


@pytest.mark.parametrize("bad_line", [2, 3, 500, 4000])  # in the first read block, and past it
@pytest.mark.parametrize(
    ("bad_bytes", "offset", "byte"),
    [(b"\xff", 0, 0xFF), (b"caf\xe9", 3, 0xE9), (b"\xe2\x82", 0, 0xE2)],
    ids=["stray", "latin-1", "cut-short"],
)
def test_a_line_that_is_not_utf8_is_named_by_its_number(
    tmp_path: Path, bad_line: int, bad_bytes: bytes, offset: int, byte: int
) -> None:
    rows = [b"sentence\tlabel"] + [b"a fine enough row of text\t1"] * (bad_line + 5)
    rows[bad_line - 1] = b"a row with " + bad_bytes + b" in it\t0"
    path = tmp_path / "SST-2" / "dev.tsv"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(rows) + b"\n")
    column = len(b"a row with ") + offset + 1
    with pytest.raises(MalformedRowsError) as caught:
        read_glue_tsv(get_task("sst2"), tmp_path)
    assert str(caught.value) == (
        f"{path}: line {bad_line} is not valid UTF-8 (byte 0x{byte:02x} at byte {column} of the "
        "line); save the file as UTF-8"
    )
