"""The tokenizer inside the artifact: fused and separate graphs, the parity gate, verify on text,
`bertc run`, and the library limits bertc works around (each shown, so an upgrade that fixes one
fails here and the workaround can go)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import TokenizerConversionError, TokenizerMismatchError
from bertc.compiler.tokenization import (
    builtin_set,
    check_tokenizer_parity,
    describe_mismatch,
    hard_set,
)
from bertc.targets import loader as runtime_app
from model_factory import read_sst2_dev

SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "the movie is a desperate , tedious journey",
    "fun",
    " ".join(["long"] * 400),  # past the artifact's 128 tokens: truncated in the graph
    "",
]


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_classifier: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_classifier))


def _ids_logits(artifact: Path, hf_tokenizer, texts: list[str]) -> np.ndarray:
    """The ids-in artifact fed HF token ids one sentence at a time."""
    from bertc.compiler.core.manifest import read_manifest
    from bertc.targets import get_target

    manifest = read_manifest(artifact)
    runner = get_target(manifest["target"]).load(artifact, manifest, threads=1)
    rows = []
    for text in texts:
        encoded = hf_tokenizer(text, truncation=True, max_length=128, return_tensors="np")
        feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in runner.input_names}
        rows.append(runner.run(feeds)[0].reshape(1, -1))
    return np.concatenate(rows)


@pytest.mark.parametrize("target", ["openvino", "ort-mobile"])
def test_fused_artifact_takes_text_and_matches_ids_in_artifact(
    compile_once, tiny_classifier, hf_tokenizer, target
) -> None:
    """Same INT8 model behind both: strings through the fused graph give the ids-in logits."""
    options = {"allow_tokenizer_mismatch": True} if target == "ort-mobile" else {}
    fused = compile_once(tiny_classifier, target, tokenizer=TokenizerMode.FUSED, **options)
    ids_in = compile_once(tiny_classifier, target)
    model = runtime_app.load(fused.artifact_dir, threads=1)
    fused_logits = model.logits(SENTENCES)
    expected = _ids_logits(ids_in.artifact_dir, hf_tokenizer, SENTENCES)
    np.testing.assert_allclose(fused_logits, expected, atol=1e-4)
    assert fused.manifest["tokenizer"]["mode"] == "fused"
    assert ids_in.manifest["tokenizer"] == {
        "mode": "none",
        "inputs": "token ids",
        "pair": False,
        "text_in": "bertc.targets.loader tokenizes with tokenizer/tokenizer.json (tokenizers)",
    }
    predictions = model.predict(SENTENCES[:2])
    assert [p.label for p in predictions] == [
        model.labels[int(row.argmax())] for row in expected[:2]
    ]
    assert all(abs(sum(p.scores) - 1) < 1e-6 for p in predictions)


def test_openvino_fused_batch_of_mixed_lengths_equals_one_by_one(
    compile_once, tiny_classifier
) -> None:
    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    model = runtime_app.load(fused.artifact_dir, threads=1)
    batched = model.logits(SENTENCES)
    single = np.concatenate([model.logits([text]) for text in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_openvino_fused_manifest_and_parity_counts(compile_once, tiny_classifier, glue_data_dir):
    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    tokenizer = fused.manifest["tokenizer"]
    dev = len(read_sst2_dev(glue_data_dir))
    assert tokenizer["parity"]["sets"] == {"sst2-dev": dev, "hard": len(hard_set(False))}
    assert tokenizer["parity"]["checked"] == dev + len(hard_set(False))
    assert tokenizer["parity"]["mismatched"] == 0 and tokenizer["parity"]["passed"]
    assert tokenizer["inputs"] == ["text"]
    assert fused.manifest["runtime"]["compile_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert "tokenizer.xml" not in fused.manifest["files"]
    import openvino
    import openvino_tokenizers  # noqa: F401

    model = openvino.Core().read_model(str(fused.artifact_dir / "model.xml"))
    assert [port.get_element_type().get_type_name() for port in model.inputs] == ["string"]
    kinds = {op.get_type_name() for op in model.get_ordered_ops()}
    assert "WordpieceTokenizer" in kinds and "FakeQuantize" in kinds


def test_separate_tokenizer_ships_beside_the_ids_model(compile_once, tiny_classifier) -> None:
    separate = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.SEPARATE)
    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    assert {"tokenizer.xml", "tokenizer.bin"} <= set(separate.manifest["files"])
    logits = runtime_app.load(separate.artifact_dir, threads=1).logits(SENTENCES)
    expected = runtime_app.load(fused.artifact_dir, threads=1).logits(SENTENCES)
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize("mode", [TokenizerMode.SEPARATE, TokenizerMode.FUSED])
def test_single_texts_run_on_static_buckets(compile_once, tiny_classifier, mode) -> None:
    """One text at a time runs on [1, bucket] encoders and agrees with the dynamic batch."""
    artifact = compile_once(tiny_classifier, "openvino", tokenizer=mode)
    static_shapes = artifact.manifest["runtime"]["static_shapes"]
    assert static_shapes["sequence_buckets"] == [16, 32, 64, 128]
    # A fused IR takes strings: the manifest names where to cut it to pad the token ids.
    expected_split = ["input_ids", "attention_mask", "token_type_ids"]
    assert sorted(static_shapes.get("split_at", [])) == (
        sorted(expected_split) if mode is TokenizerMode.FUSED else []
    )
    model = runtime_app.load(artifact.artifact_dir, threads=1)
    one_by_one = np.concatenate([model.logits([text]) for text in SENTENCES])
    assert model.backend._compiled is None  # single texts never compiled the dynamic-shape IR
    np.testing.assert_allclose(one_by_one, model.logits(SENTENCES), atol=1e-4)
    # "fun" and "" fit 16 tokens; the 400-word text is truncated to 128; the others fit 16.
    assert sorted(model.backend.static.compiled) == [16, 128]


def test_split_fused_model_cuts_at_the_token_ids(compile_once, tiny_classifier, hf_tokenizer):
    """The tokenizer part returns HF's ids; the encoder part turns them into the fused logits."""
    import openvino
    import openvino_tokenizers  # noqa: F401

    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    split_at = fused.manifest["runtime"]["static_shapes"]["split_at"]
    core = openvino.Core()
    whole = core.read_model(str(fused.artifact_dir / "model.xml"))
    tokenizer, encoder = runtime_app.split_fused_model(whole, split_at)
    assert [port.get_element_type().get_type_name() for port in tokenizer.inputs] == ["string"]
    assert sorted(port.get_any_name() for port in encoder.inputs) == sorted(split_at)
    encoder_kinds = {op.get_type_name() for op in encoder.get_ordered_ops()}
    assert "WordpieceTokenizer" not in encoder_kinds and "FakeQuantize" in encoder_kinds
    text = SENTENCES[0]
    compiled_tokenizer = core.compile_model(tokenizer, "CPU")
    tokens = compiled_tokenizer([np.array([text])])
    ids = {port.get_any_name(): tokens[port] for port in compiled_tokenizer.outputs}
    assert ids["input_ids"][0].tolist() == hf_tokenizer(text)["input_ids"]
    config = fused.manifest["runtime"]["compile_config"]
    logits = core.compile_model(encoder, "CPU", config)(ids)[0]
    whole_logits = core.compile_model(whole, "CPU", config)([np.array([text])])[0]
    np.testing.assert_allclose(logits, whole_logits, atol=1e-4)
    with pytest.raises(runtime_app.ArtifactLoadError, match="no tensors named"):
        runtime_app.split_fused_model(whole, ["not_a_tensor"])


def test_ort_mobile_fused_needs_and_declares_the_extensions(compile_once, tiny_classifier):
    fused = compile_once(
        tiny_classifier, "ort-mobile", tokenizer=TokenizerMode.FUSED, allow_tokenizer_mismatch=True
    )
    manifest = fused.manifest
    config = (fused.artifact_dir / "required_operators.config").read_text(encoding="utf-8")
    assert any(
        line.startswith("ai.onnx.contrib;") and "BertTokenizer" in line
        for line in config.splitlines()
    )
    packages = manifest["tokenizer"]["runtime_packages"]
    assert "onnxruntime-extensions" in packages["python"]
    assert "com.microsoft.onnxruntime:onnxruntime-extensions-android" in packages["android"]
    assert "onnxruntime-extensions-c" in packages["ios"]
    assert manifest["tokenizer"]["requires_custom_op_library"] is True
    # The tiny vocabulary makes the extensions' BertTokenizer differ on some hard sentences;
    # allowed here, so they are listed in the manifest.
    parity = manifest["tokenizer"]["parity"]
    assert parity["mismatch_allowed"] and parity["mismatched"] == len(parity["mismatches"]) > 0
    assert all(item["set_name"] == "hard" for item in parity["mismatches"])


def test_tokenizer_mismatch_fails_the_build(tmp_path, tiny_classifier, glue_data_dir) -> None:
    from bertc.compiler.pipeline import CompileOptions, compile_model

    out = tmp_path / "artifact"
    options = CompileOptions(
        target="onnx",
        task="sst2",
        data_dir=glue_data_dir,
        calibration_samples=8,
        tokenizer=TokenizerMode.FUSED,
    )
    with pytest.raises(TokenizerMismatchError, match=r"differs from the HF tokenizer on \d+ of"):
        compile_model(str(tiny_classifier), out, options)
    assert TokenizerMismatchError.exit_code == 14
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unconvertible_tokenizer(tmp_path, tiny_classifier, glue_data_dir, monkeypatch) -> None:
    """Default: ids-in with a note. Explicit --tokenizer fused: a one-line error (exit 15)."""
    import bertc.targets.ort.tokenizer as tokenizer_onnx
    from bertc.compiler.pipeline import CompileOptions, compile_model

    def refuse(*args, **kwargs):
        raise TokenizerConversionError("onnxruntime-extensions could not convert: test")

    monkeypatch.setattr(tokenizer_onnx, "preprocessing_model", refuse)
    options = CompileOptions(
        target="onnx", task="sst2", data_dir=glue_data_dir, calibration_samples=8
    )
    result = compile_model(str(tiny_classifier), tmp_path / "auto", options)
    assert result.manifest["tokenizer"]["mode"] == "none"
    assert any(note.startswith("token ids in") for note in result.manifest["notes"])
    assert set(result.manifest["files"]) == {
        "golden.json",
        "model.int8-qdq.onnx",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
    }
    explicit = CompileOptions(**{**options.__dict__, "tokenizer": TokenizerMode.FUSED})
    with pytest.raises(TokenizerConversionError):
        compile_model(str(tiny_classifier), tmp_path / "explicit", explicit)
    assert not (tmp_path / "explicit").exists()


def test_verify_scores_the_in_graph_tokenizer(
    compile_once, tiny_classifier, glue_data_dir, artifact_copy
):
    """(verify writes reports/ into the artifact: it runs on private copies.)"""
    from bertc.compiler.verify import verify_artifact

    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    ids_in = compile_once(tiny_classifier, "openvino")
    reports = [
        verify_artifact(
            artifact_copy(result.artifact_dir),
            "sst2",
            data_dir=glue_data_dir,
            threads=1,
            bootstrap_samples=50,
            max_drop=100,
        )
        for result in (fused, ids_in)
    ]
    assert reports[0].headline.artifact == reports[1].headline.artifact
    assert reports[0].agreement.rate == reports[1].agreement.rate
    assert reports[0].environment.precision == "f32"
    assert reports[0].latency.batch1_median_ms > 0


def test_bertc_run_labels_text(compile_once, tiny_classifier, bertc_cli, tmp_path) -> None:
    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("a gorgeous movie\nthe movie is tedious\n", encoding="utf-8")
    done = bertc_cli("run", fused.artifact_dir, "--file", inputs, "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    labels = set(fused.manifest["model"]["labels"].values())
    assert [row["text"] for row in rows] == ["a gorgeous movie", "the movie is tedious"]
    assert all(row["label"] in labels and len(row["scores"]) == 2 for row in rows)
    wrong = bertc_cli("run", fused.artifact_dir, "one", "two")
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        f"error: {fused.artifact_dir} takes one text per example, but a second text was given: "
        "'two'"
    )


@pytest.mark.parametrize("target", ["openvino", "ort-mobile", "onnx"])
def test_bertc_run_labels_text_on_an_ids_in_artifact(
    compile_once, tiny_classifier, bertc_cli, target
) -> None:
    """An ids-in artifact tokenizes with its shipped HF tokenizer files (the `tokenizers`
    package) and gives the label and scores of the fused artifact, which tokenizes in-graph."""
    ids_in = compile_once(tiny_classifier, target)
    assert ids_in.manifest["tokenizer"]["mode"] == "none"
    fused = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    texts = ("a gorgeous movie", "the movie is tedious")
    for text in texts:
        done = bertc_cli("run", ids_in.artifact_dir, text, "--json")
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout)
        assert row["label"] in set(ids_in.manifest["model"]["labels"].values())
        if target == "openvino":  # same runtime, same INT8 graph: the same numbers
            want = json.loads(bertc_cli("run", fused.artifact_dir, text, "--json").stdout)
            assert row["label"] == want["label"]
            np.testing.assert_allclose(row["scores"], want["scores"], atol=1e-3)


RUNTIME_ONLY_SCRIPT = r"""
import importlib.abc, importlib.util, json, sys
BLOCKED = {"torch", "transformers", "tokenizers", "nncf", "onnx", "sklearn", "scipy", "typer",
           "rich", "safetensors"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        compiler = name.startswith(("bertc.compiler", "bertc.calibration"))
        if name.split(".")[0] in BLOCKED or compiler:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Blocker())
spec = importlib.util.spec_from_file_location("bertc_runtime", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["bertc_runtime"] = module
spec.loader.exec_module(module)
model = module.load(sys.argv[2], threads=1)
prediction = model.predict(["a gorgeous movie"])[0]
print(json.dumps({"label": prediction.label,
                  "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


@pytest.mark.parametrize("target", ["openvino", "ort-mobile"])
def test_runtime_app_needs_only_the_runtime(compile_once, tiny_classifier, tmp_path, target):
    """The vendored loader runs with torch, transformers, onnx and the compiler unimportable."""
    import subprocess
    import sys

    options = {"allow_tokenizer_mismatch": True} if target == "ort-mobile" else {}
    fused = compile_once(tiny_classifier, target, tokenizer=TokenizerMode.FUSED, **options)
    script = tmp_path / "check.py"
    script.write_text(RUNTIME_ONLY_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), runtime_app.__file__, str(fused.artifact_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["label"] in fused.manifest["model"]["labels"].values()
    forbidden = {"torch", "transformers", "tokenizers", "nncf", "onnx", "sklearn", "scipy"}
    assert not forbidden & set(result["modules"])


# ---- library limits bertc works around ---------------------------------------------------------


def test_openvino_connect_models_drops_the_tokenizer_sinks(
    hf_tokenizer, compile_once, tiny_classifier
):
    """openvino-tokenizers 2026.4.1: connect_models loses the Assign sink; bertc re-adds it."""
    import openvino
    from bertc.targets.ov.tokenizer import convert_hf_tokenizer
    from openvino_tokenizers import connect_models

    ids_in = compile_once(tiny_classifier, "openvino")
    tokenizer = convert_hf_tokenizer(hf_tokenizer, 128, pair=False)
    encoder = openvino.Core().read_model(str(ids_in.artifact_dir / "model.xml"))
    assert tokenizer.get_sinks()
    connected = connect_models(tokenizer, encoder)
    assert not connected.get_sinks()


def test_onnxruntime_extensions_limits(hf_tokenizer) -> None:
    """onnxruntime-extensions 0.15.2: accents kept unless told, and pairs are not truncated."""
    import onnx
    from bertc.targets.ort.tokenizer import OrtTokenizer, hf_normalization, preprocessing_model
    from onnxruntime_extensions import gen_processing_models

    like = onnx.helper.make_model(
        onnx.helper.make_graph([], "g", [], []), opset_imports=[onnx.helper.make_opsetid("", 17)]
    )
    bare, _ = gen_processing_models(hf_tokenizer, pre_kwargs={"max_length": 128})
    strip = next(a.i for a in bare.graph.node[0].attribute if a.name == "strip_accents")
    assert strip == 0 and hf_normalization(hf_tokenizer)["strip_accents"] == 1
    tokenizer = OrtTokenizer(preprocessing_model(hf_tokenizer, 128, like))
    long_pair = check_tokenizer_parity(
        hf_tokenizer, tokenizer, {"pairs": [(" ".join(["word"] * 300), "fun")]}, 128
    )
    assert long_pair.mismatched == 1  # the pair comes out longer than max_length
    single = check_tokenizer_parity(hf_tokenizer, tokenizer, {"b": builtin_set(False)}, 128)
    assert single.passed


def test_default_takes_ids_when_the_tokenizer_fails_parity(
    tmp_path, tiny_classifier, glue_data_dir
):
    """No --tokenizer: never ship a tokenizer that differs; ids in, and a note that says why."""
    from bertc.compiler.pipeline import CompileOptions, compile_model

    options = CompileOptions(
        target="onnx", task="sst2", data_dir=glue_data_dir, calibration_samples=8
    )
    result = compile_model(str(tiny_classifier), tmp_path / "artifact", options)
    tokenizer = result.manifest["tokenizer"]
    assert tokenizer["mode"] == "none"
    assert tokenizer["fused_refused"]["parity"]["mismatched"] > 0
    assert any("differs from the HF tokenizer" in note for note in result.manifest["notes"])


@pytest.fixture(scope="module")
def tiny_regressor(tmp_path_factory) -> Path:
    from model_factory import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("tiny-stsb"), head="regression")


PAIRS = (
    ["A man is playing a guitar.", "fun", " ".join(["long"] * 300)],
    ["A man plays the guitar.", "the movie is a desperate , tedious journey", "short"],
)


@pytest.mark.parametrize("target", ["openvino"])
def test_sentence_pairs_through_the_in_graph_tokenizer(compile_once, tiny_regressor, target):
    """STS-B: two texts per example, truncated longest-first as HF does, same scores as ids-in."""
    from transformers import AutoTokenizer

    fused = compile_once(
        tiny_regressor,
        target,
        task="stsb",
        tokenizer=TokenizerMode.FUSED,
        allow_tokenizer_mismatch=True,
    )
    ids_in = compile_once(tiny_regressor, target, task="stsb")
    tokenizer = fused.manifest["tokenizer"]
    assert tokenizer["pair"] and "stsb-dev" in tokenizer["parity"]["sets"]
    model = runtime_app.load(fused.artifact_dir, threads=1)
    hf = AutoTokenizer.from_pretrained(str(tiny_regressor))
    texts, pairs = PAIRS
    logits = model.logits(texts, pairs)
    from bertc.compiler.core.manifest import read_manifest
    from bertc.targets import get_target

    manifest = read_manifest(ids_in.artifact_dir)
    runner = get_target(target).load(ids_in.artifact_dir, manifest, threads=1)
    expected = []
    for text, pair in zip(texts, pairs, strict=True):
        encoded = hf(text, pair, truncation=True, max_length=128, return_tensors="np")
        feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in runner.input_names}
        expected.append(runner.run(feeds)[0].reshape(1, -1))
    np.testing.assert_allclose(logits, np.concatenate(expected), atol=1e-4)
    # One pair at a time (OpenVINO: the cut fused IR on static buckets) agrees with the batch.
    one_by_one = [model.logits([text], [pair]) for text, pair in zip(texts, pairs, strict=True)]
    np.testing.assert_allclose(np.concatenate(one_by_one), logits, atol=1e-4)
    assert [p.label for p in model.predict(texts, pairs)] == [None] * len(texts)
    with pytest.raises(ValueError, match="sentence pairs"):
        model.logits(texts)
    # What the converters get wrong on pairs (library limits, listed in the manifest):
    failing = {(m["text_a"], m["text_b"]) for m in tokenizer["parity"]["mismatches"]}
    if target == "openvino":  # empty sides (HF treats "" as no pair) and the longest-first tie
        assert failing <= {
            ("first only", ""),
            ("", ""),
            ("", "second only"),
            (" ".join(["left"] * 200), " ".join(["right"] * 200)),
        }


@pytest.mark.parametrize("target", ["onnx", "ort-mobile"])
def test_onnx_runtime_targets_keep_pairs_as_token_ids(
    tmp_path, tiny_regressor, glue_data_dir, target
):
    """onnxruntime-extensions 0.15.2 does not truncate pairs at max_length: asked for, a fused
    pair tokenizer is refused (exit 15); by default the artifact takes token ids, with a note."""
    from bertc.compiler.pipeline import CompileOptions, compile_model

    settings = dict(target=target, task="stsb", data_dir=glue_data_dir, calibration_samples=8)
    with pytest.raises(TokenizerConversionError, match="does not truncate a sentence pair") as e:
        compile_model(
            str(tiny_regressor),
            tmp_path / "fused",
            CompileOptions(**settings, tokenizer="fused", allow_tokenizer_mismatch=True),
        )
    assert e.value.exit_code == 15 and not (tmp_path / "fused").exists()
    result = compile_model(str(tiny_regressor), tmp_path / "default", CompileOptions(**settings))
    assert result.manifest["tokenizer"]["mode"] == "none"
    assert any("does not truncate" in note for note in result.manifest["notes"])


def test_the_gate_counts_ids_past_the_maximum_length(hf_tokenizer) -> None:
    """An in-graph tokenizer that returns more ids than the maximum length fails the gate on
    that field, whatever the ids."""
    from bertc.compiler.core.graph import InGraphTokenizer

    class Untruncated(InGraphTokenizer):
        def encode(self, text_a, text_b):
            encoded = hf_tokenizer(text_a, text_b)
            return {name: np.asarray(values) for name, values in encoded.items()}

    pairs = [(" ".join(["long"] * 300), "short"), ("short", "pair")]
    parity = check_tokenizer_parity(hf_tokenizer, Untruncated(), {"p": pairs}, 16)
    assert parity.over_length == 1 and parity.mismatched == 1
    assert parity.mismatches[0].field == "length"
    assert "more than the maximum length" in describe_mismatch(parity.mismatches[0])
