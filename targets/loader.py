"""The one loader of bertc artifacts, for apps, `bertc run`, `bertc verify` and the bench:
text in, label (or embedding) out, on the artifact's runtime alone.

This one file needs numpy and one runtime: `openvino` (+ `openvino-tokenizers` for an artifact
with its tokenizer inside) or `onnxruntime` (+ `onnxruntime-extensions` for the same), and for an
artifact that takes token ids (`--tokenizer none`) the small `tokenizers` package, which reads
the artifact's `tokenizer/tokenizer.json`. Nothing else: no torch, no transformers, no other part
of bertc, so an app can vendor it. `load(...)` takes text; `load_ids(...)` runs named token-id
arrays (what `bertc verify` feeds). Both refuse (ArtifactLoadError; the script exits 11) a
manifest edited since the build (its `manifest_sha256`), a field of the wrong type, and a path
that is not a listed file inside the artifact; file hashes and signatures are `bertc verify`'s.

    import bertc_runtime          # or: from bertc.targets import loader as bertc_runtime
    model = bertc_runtime.load("artifacts/minilm-l6-sst2-openvino")
    print(model.predict(["a gorgeous, witty, seductive movie."])[0].label)

Run as a script: `python loader.py ARTIFACT "text" ["second text"] [--json]`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_FILE = "manifest.json"
# sha256 of the manifest's canonical JSON without this field (bertc.compiler.core.manifest).
MANIFEST_DIGEST_FIELD = "manifest_sha256"
TEXT_MODES = ("fused", "separate")
ORT_LOG_SEVERITY_FATAL = 4  # ONNX Runtime's log levels: 0 verbose ... 3 error, 4 fatal
IDS_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _remove_script_folder_from_path() -> None:
    """Run as `python targets/loader.py` inside the repo, the script's folder comes first on
    sys.path and its `openvino.py` / `onnx.py` would shadow the runtimes: drop that folder."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]


class ArtifactLoadError(RuntimeError):
    """The directory is not an artifact this loader can run (no tokenizer inside, bad manifest)."""


class RuntimeFailure(RuntimeError):
    """The runtime (OpenVINO, ONNX Runtime) failed on an input: its message, cut to one line.
    The runtime's own exception is the `__cause__`."""


# Longest runtime message kept: OpenVINO's are one line of nested "Exception from ..." frames,
# whose start says where and whose end says why.
_MESSAGE_CHARS = 300


def runtime_message(error: BaseException) -> str:
    """A runtime exception's message as one line of at most about _MESSAGE_CHARS characters:
    its first line, the middle elided when long (the end of OpenVINO's says what failed)."""
    lines = str(error).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else type(error).__name__
    half = _MESSAGE_CHARS // 2
    return text if len(text) <= _MESSAGE_CHARS else f"{text[:half]} ... {text[-half:]}"


def _is_runtime_error(error: Exception) -> bool:
    """Raised by a runtime: OpenVINO raises RuntimeError, ONNX Runtime its own pybind types."""
    if isinstance(error, (ValueError, ArtifactLoadError)):
        return False
    module = type(error).__module__ or ""
    return isinstance(error, RuntimeError) or module.startswith(("onnxruntime", "openvino"))


def _guarded(run: Any, *args: Any) -> Any:
    """`run(*args)`, a runtime's failure raised as one RuntimeFailure."""
    try:
        return run(*args)
    except Exception as error:
        if not _is_runtime_error(error) or isinstance(error, RuntimeFailure):
            raise
        raise RuntimeFailure(runtime_message(error)) from error


@dataclass(frozen=True)
class Prediction:
    """One example's result: the label (None for regression) and its scores.

    Multi-label heads (manifest `head.problem_type` "multi_label_classification"): `scores` are
    each label's sigmoid, `labels` every label over the threshold (in label-id order), and
    `label` / `label_id` the highest-scoring of them (None when no label passes).
    """

    label: str | None
    label_id: int | None
    # softmax of the logits (single-label), each label's sigmoid (multi-label), or the score
    scores: list[float]
    labels: tuple[str, ...] = ()
    label_ids: tuple[int, ...] = ()


SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
DEFAULT_MULTI_LABEL_THRESHOLD = 0.5


def head_semantics(manifest: dict[str, Any]) -> tuple[str | None, float]:
    """(problem type, multi-label threshold) from the manifest's `head` section; an artifact
    from before it has a single-label classifier, a regression head or an encoder."""
    head = manifest.get("head")
    if isinstance(head, dict) and "problem_type" in head:
        return head["problem_type"], float(head.get("threshold", DEFAULT_MULTI_LABEL_THRESHOLD))
    kind = (manifest.get("model") or {}).get("head")
    legacy = {"classifier": SINGLE_LABEL, "regression": "regression"}
    return legacy.get(kind), DEFAULT_MULTI_LABEL_THRESHOLD


def predictions_from_scores(
    logits: np.ndarray, problem_type: str | None, labels: dict[int, str], threshold: float
) -> list[Prediction]:
    """Each row of logits [examples, outputs] as the head's problem type reads it."""
    scores = np.asarray(logits, dtype=np.float64)
    if problem_type == "regression":
        return [Prediction(None, None, [float(row[0])]) for row in scores]
    if problem_type == MULTI_LABEL:
        probabilities = 1.0 / (1.0 + np.exp(-scores))
        results = []
        for row in probabilities:
            chosen = tuple(int(index) for index in np.flatnonzero(row > threshold))
            top = max(chosen, key=lambda index: row[index], default=None)
            results.append(
                Prediction(
                    None if top is None else labels.get(top, str(top)),
                    top,
                    row.tolist(),
                    tuple(labels.get(index, str(index)) for index in chosen),
                    chosen,
                )
            )
        return results
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    results = []
    for row in probabilities:
        index = int(row.argmax())
        name = labels.get(index, str(index))
        results.append(Prediction(name, index, row.tolist(), (name,), (index,)))
    return results


class TextModel:
    """An artifact that takes text: `logits(texts, text_pairs)`, `predict(...)` for a task head,
    `embed(texts)` and `similarity(a, b)` for a sentence encoder.

    `tokenizer` says which tokenizer runs: the one in the graph ("in-graph (fused)", "in-graph
    (separate)") or, for an ids-in artifact, the HF tokenizer files shipped in `tokenizer/`
    through the `tokenizers` package.
    """

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], backend: Any) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = manifest
        self.backend = backend
        model = manifest["model"]
        self.head = model["head"]
        self.labels = {int(key): value for key, value in (model.get("labels") or {}).items()}
        # single_label_classification, multi_label_classification, regression, or None
        self.problem_type, self.threshold = head_semantics(manifest)
        self.tokenizer = backend.tokenizer_name
        self.pair = backend.pair
        # What the verify code looks at: ORT's session (OpenVINO's compiled model: `compiled`).
        self.session = getattr(backend, "session", None)

    @property
    def compiled(self) -> Any:
        """OpenVINO's whole compiled IR (compiled when first asked for), None on ONNX Runtime."""
        return getattr(self.backend, "compiled", None)

    def outputs(self, texts: list[str], text_pairs: list[str] | None = None) -> list[np.ndarray]:
        """Every output of the model for each example (first axis: the examples). `texts` is a
        list of strings (a single string is one example, not a list of characters).
        RuntimeFailure when the runtime fails on them; ValueError for a bad argument."""
        texts = _as_texts(texts, "texts")
        if text_pairs is not None:
            text_pairs = _as_texts(text_pairs, "text_pairs")
        if self.pair and text_pairs is None:
            raise ValueError("this artifact classifies sentence pairs: pass text_pairs too")
        if not self.pair and text_pairs is not None:
            raise ValueError("this artifact takes single sentences, not pairs")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text_pairs")
        pairs = None if text_pairs is None else [str(text) for text in text_pairs]
        results = [np.asarray(output) for output in _guarded(self.backend.run, texts, pairs)]
        for result in results:  # e.g. OpenVINO's tokenizer on empty pairs: zero rows, no error
            if result.ndim == 0 or result.shape[0] != len(texts) or not result.size:
                raise RuntimeFailure(
                    f"the runtime returned an output of shape {list(result.shape)} for "
                    f"{len(texts)} example(s)"
                )
        return results

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> np.ndarray:
        """The model's first output for each example, shape [len(texts), outputs].
        ArtifactLoadError when a classifier's outputs are not as many as its labels."""
        texts = _as_texts(texts, "texts")
        if not texts:
            return np.zeros((0, max(len(self.labels), 1)), dtype=np.float32)
        output = self.outputs(texts, text_pairs)[0]
        if self.head == "encoder":
            return output
        scores = output.reshape(len(texts), -1)
        if self.labels and scores.shape[1] != len(self.labels):
            raise ArtifactLoadError(
                f"{self.artifact_dir}: the model has {scores.shape[1]} outputs, but the manifest "
                f"names {len(self.labels)} labels"
            )
        return scores

    def embed(self, texts: list[str]) -> np.ndarray:
        """A sentence encoder's embeddings, shape [len(texts), hidden]: the mean of the last
        hidden state over real tokens (the manifest's `model.sentence_embedding`)."""
        if self.head != "encoder":
            raise ValueError(f"a {self.head} artifact gives labels, not embeddings: use predict()")
        names = list(self.manifest["model"]["outputs"])
        index = names.index("sentence_embedding") if "sentence_embedding" in names else -1
        texts = _as_texts(texts, "texts")
        return self.outputs(texts)[index].reshape(len(texts), -1)

    def similarity(self, text_a: str, text_b: str) -> float:
        """Cosine similarity of two texts' sentence embeddings, in [-1, 1]."""
        first, second = self.embed([text_a, text_b]).astype(np.float64)
        norms = float(np.linalg.norm(first) * np.linalg.norm(second))
        return float(first @ second / norms) if norms else 0.0

    def predict(self, texts: list[str], text_pairs: list[str] | None = None) -> list[Prediction]:
        """One Prediction per example, as the head's problem type says (manifest `head`):
        softmax and argmax, a sigmoid per label and every label over the threshold, or the
        regression score."""
        if self.head == "encoder":
            raise ValueError("an encoder artifact has no labels: use embed() or similarity()")
        return predictions_from_scores(
            self.logits(texts, text_pairs), self.problem_type, self.labels, self.threshold
        )


def _as_texts(values: Any, name: str) -> list[str]:
    """A list of texts from a list (or one string); ValueError for anything else."""
    if isinstance(values, str):
        return [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a string or a list of strings")
    return list(values)


class HfTokenizer:
    """The artifact's `tokenizer/` files through the `tokenizers` package (no torch): token ids
    exactly as the checkpoint's fast tokenizer makes them, truncated to the artifact's length."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        try:
            import tokenizers
        except ImportError as error:
            raise ArtifactLoadError(
                "this artifact takes token ids: `pip install tokenizers` to give it text"
            ) from error
        folder = directory / manifest["model"].get("tokenizer_dir", "tokenizer")
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ArtifactLoadError(f"{path} is missing: the artifact's tokenizer cannot run")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(int(manifest["model"]["max_sequence_length"]))
        self.tokenizer.no_padding()
        self.input_names = list(manifest["model"]["inputs"])
        # A checkpoint whose tokenizer gives no token_type_ids was compiled (and checked) with
        # zeros there; tokenizer.json's template would still mark a pair's second text 1.
        self.zero_token_types = manifest["model"].get("token_type_ids") == "zeros"

    def __call__(self, text: str, pair: str | None) -> dict[str, np.ndarray]:
        """One example as [1, length] int64 arrays named like the model's inputs."""
        encoding = self.tokenizer.encode(text, pair)
        arrays = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": [0] * len(encoding.ids)
            if self.zero_token_types
            else encoding.type_ids,
        }
        return {name: np.asarray([arrays[name]], dtype=np.int64) for name in self.input_names}


class StaticShapeBuckets:
    """Single inputs of token ids on static [1, bucket] copies of an OpenVINO model.

    Each copy is compiled the first time its bucket is used; the input is right-padded with
    zeros (attention_mask 0 hides the padding) and outputs with a sequence axis are cut back.
    Static shapes are faster than dynamic ones on short inputs (the CPU plugin's fused attention
    wants them); the manifest's `runtime.static_shapes` lists the buckets.
    """

    def __init__(self, core: Any, model: Any, config: dict[str, Any], buckets: list[int]) -> None:
        self.core, self.model, self.config = core, model, config
        self.buckets = sorted(buckets)
        self.compiled: dict[int, Any] = {}
        self.sequence_outputs = [
            port.get_partial_shape().rank.get_length() > 1
            and port.get_partial_shape()[1].is_dynamic
            for port in model.outputs
        ]

    def bucket_for(self, shape: tuple[int, ...]) -> int | None:
        """The bucket for one row of token ids; None for batches, strings, or longer inputs."""
        if len(shape) != 2 or shape[0] != 1:
            return None
        return next((bucket for bucket in self.buckets if bucket >= shape[1]), None)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        """The model's outputs for one input, or None when it has no bucket."""
        length = next(iter(feeds.values())).shape[-1]
        bucket = self.bucket_for(next(iter(feeds.values())).shape)
        if bucket is None:
            return None
        if bucket not in self.compiled:
            model = self.model.clone()
            model.reshape({port.get_any_name(): [1, bucket] for port in model.inputs})
            self.compiled[bucket] = self.core.compile_model(model, "CPU", self.config)
        compiled = self.compiled[bucket]
        padded = {name: np.pad(ids, ((0, 0), (0, bucket - length))) for name, ids in feeds.items()}
        results = compiled(padded)
        return [
            np.asarray(results[port])[:, :length] if is_sequence else np.asarray(results[port])
            for port, is_sequence in zip(compiled.outputs, self.sequence_outputs, strict=True)
        ]


def split_fused_model(model: Any, hand_over: list[str]) -> tuple[Any, Any]:
    """A fused text-in IR cut where the tokenizer hands over token ids: (tokenizer, encoder).

    The fused IR runs on dynamic shapes (its input is strings); cut in two, the encoder part can
    run on static [1, bucket] shapes like an ids-in artifact. The tensors named in `hand_over`
    (the manifest's `runtime.static_shapes.split_at`) are the tokenizer part's outputs and become
    the encoder part's parameters of the same names.
    """
    import openvino

    def named_ports(graph: Any) -> dict[str, Any]:
        ports = {}
        for node in graph.get_ordered_ops():
            for port in node.outputs():
                ports.update({name: port for name in hand_over if name in port.get_names()})
        missing = sorted(set(hand_over) - set(ports))
        if missing:
            raise ArtifactLoadError(f"the fused model has no tensors named {missing}")
        return ports

    ports = named_ports(model)
    tokenizer = openvino.Model(
        [ports[name] for name in hand_over], model.get_sinks(), model.get_parameters(), "tokenizer"
    )
    encoder = model.clone()
    parameters = []
    for name, port in named_ports(encoder).items():
        parameter = openvino.op.Parameter(port.get_element_type(), port.get_partial_shape())
        parameter.output(0).get_tensor().set_names({name})
        for target in list(port.get_target_inputs()):
            target.replace_source_output(parameter.output(0))
        parameters.append(parameter)
    return tokenizer, openvino.Model(encoder.get_results(), parameters, "encoder")


class _OpenVinoBackend:
    """The IR on the CPU plugin: strings into the fused IR, or the tokenizer IR then the ids-in
    IR, or (ids-in artifact) token ids from the HF tokenizer files; single inputs of ids run on
    static [1, bucket] shapes."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int | None) -> None:
        import openvino

        runtime = manifest["runtime"]
        mode = (manifest.get("tokenizer") or {}).get("mode", "none")
        if mode in TEXT_MODES:
            import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops with OpenVINO)
        config = dict(runtime.get("compile_config", {}))
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.core = openvino.Core()
        self.config = config
        self.model = self.core.read_model(str(directory / runtime["model"]))
        self._compiled: Any = None
        self._request: Any = None
        static_shapes = runtime.get("static_shapes", {})
        # The separate tokenizer IR, or the tokenizer part of a fused IR cut at its hand-over.
        self.fused = mode == "fused"
        self.tokenizer = None
        self.hf_tokenizer = None
        encoder = self.model
        if mode == "separate":
            path = directory / manifest["tokenizer"]["model"]
            self.tokenizer = self.core.compile_model(str(path), "CPU")
        elif self.fused and static_shapes.get("split_at"):
            tokenizer, encoder = split_fused_model(self.model, static_shapes["split_at"])
            self.tokenizer = self.core.compile_model(tokenizer, "CPU")
        self.pair, self.tokenizer_name = _text_side(manifest, mode)
        self.input_names = tuple(port.get_any_name() for port in encoder.inputs)
        # The tokenizer's outputs that the encoder takes, found once rather than on every call.
        self.hand_over = [
            port
            for port in (self.tokenizer.outputs if self.tokenizer is not None else [])
            if port.get_any_name() in set(self.input_names)
        ]
        self.static = StaticShapeBuckets(
            self.core, encoder, config, static_shapes.get("sequence_buckets", [])
        )
        if mode not in TEXT_MODES:
            self._hf_directory, self._manifest = directory, manifest

    @property
    def compiled(self) -> Any:
        """The whole IR on dynamic shapes, compiled on first use: a process that only labels
        single inputs never needs it (`bertc run` on MiniLM-L6's fused IR: 1.10 -> 0.77 s and
        317 -> 249 MB peak RSS)."""
        if self._compiled is None:
            self._compiled = self.core.compile_model(self.model, "CPU", self.config)
            self._request = self._compiled.create_infer_request()
        return self._compiled

    def _whole(self, inputs: Any) -> list[np.ndarray]:
        compiled = self.compiled
        results = self._request.infer(inputs)
        return [np.array(results[port]) for port in compiled.outputs]

    def run_ids(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for named int64 token-id arrays [batch, length]."""
        feeds = {name: feeds[name] for name in self.input_names}
        outputs = self.static.run(feeds)
        return self._whole(feeds) if outputs is None else outputs

    def run(self, texts: list[str], pairs: list[str] | None) -> list[np.ndarray]:
        if self.tokenizer is None and not self.fused:
            return _one_at_a_time(self, texts, pairs)
        strings = [np.array(texts)] + ([np.array(pairs)] if pairs is not None else [])
        if self.tokenizer is None or (self.fused and len(texts) > 1):
            return self._whole(strings)
        tokens = self.tokenizer(strings)
        feeds = {port.get_any_name(): tokens[port] for port in self.hand_over}
        outputs = self.static.run(feeds)
        if outputs is not None:
            return outputs
        return self._whole(strings if self.fused else feeds)  # no bucket: dynamic shapes

    def encode(self, text: str, pair: str | None) -> dict[str, np.ndarray]:
        if self.hf_tokenizer is None:
            self.hf_tokenizer = HfTokenizer(self._hf_directory, self._manifest)
        return self.hf_tokenizer(text, pair)


class _OnnxRuntimeBackend:
    """A session (with onnxruntime-extensions' ops when the tokenizer is in the graph; the
    BertTokenizer op takes one example a run), or token ids from the HF tokenizer files."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int | None) -> None:
        import onnxruntime

        mode = (manifest.get("tokenizer") or {}).get("mode", "none")
        options = onnxruntime.SessionOptions()
        # A failed run raises with the same message ORT also logs in colour on stderr: keep one.
        options.log_severity_level = ORT_LOG_SEVERITY_FATAL
        if mode in TEXT_MODES:
            options.register_custom_ops_library(extensions_library())
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        model_path = str(directory / manifest["runtime"]["model"])
        self.session = onnxruntime.InferenceSession(model_path, options, providers=providers)
        self.input_names = tuple(item.name for item in self.session.get_inputs())
        self.tokenizer = None
        self.hf_tokenizer = None
        self.pair, self.tokenizer_name = _text_side(manifest, mode)
        if mode == "separate":
            path = str(directory / manifest["tokenizer"]["model"])
            self.tokenizer = onnxruntime.InferenceSession(path, options, providers=providers)
        if mode in TEXT_MODES:
            self.text_input = manifest["tokenizer"]["inputs"][0]
        else:
            self._hf_directory, self._manifest = directory, manifest

    def run_ids(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for named int64 token-id arrays [batch, length]."""
        return self.session.run(None, {name: feeds[name] for name in self.input_names})

    def encode(self, text: str, pair: str | None) -> dict[str, np.ndarray]:
        """Token ids for one example: the in-graph tokenizer's, or the HF files'."""
        if self.hf_tokenizer is None and self.tokenizer is None:
            self.hf_tokenizer = HfTokenizer(self._hf_directory, self._manifest)
        if self.hf_tokenizer is not None:
            return self.hf_tokenizer(text, pair)
        strings = np.array([text] if pair is None else [text, pair])
        names = [output.name for output in self.tokenizer.get_outputs()]
        tokens = dict(
            zip(names, self.tokenizer.run(None, {self.text_input: strings}), strict=False)
        )
        return {name: tokens[name][np.newaxis, :] for name in self.input_names}

    def run(self, texts: list[str], pairs: list[str] | None) -> list[np.ndarray]:
        if self.tokenizer is None and self.hf_tokenizer is None and hasattr(self, "text_input"):
            rows = []
            for index, text in enumerate(texts):
                pair = None if pairs is None else pairs[index]
                strings = np.array([text] if pair is None else [text, pair])
                rows.append(self.session.run(None, {self.text_input: strings}))
            return _stack_rows(rows)
        return _one_at_a_time(self, texts, pairs)


def _one_at_a_time(backend: Any, texts: list[str], pairs: list[str] | None) -> list[np.ndarray]:
    """Tokenize and run each example alone at its real length (what the artifact was calibrated
    and verified on), then stack each output along the first axis."""
    rows = [
        backend.run_ids(backend.encode(text, None if pairs is None else pairs[index]))
        for index, text in enumerate(texts)
    ]
    return _stack_rows(rows)


def _stack_rows(rows: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Each output of examples run alone, stacked along the first axis; an output with a sequence
    axis (an encoder's last_hidden_state) is right-padded with zeros to the longest example, as a
    padded batch would give it."""
    stacked = []
    for column in zip(*rows, strict=True):
        if len({part.shape[1:] for part in column}) > 1:
            longest = max(part.shape[1] for part in column)
            column = tuple(
                np.pad(part, [(0, 0), (0, longest - part.shape[1])] + [(0, 0)] * (part.ndim - 2))
                for part in column
            )
        stacked.append(np.concatenate(column, axis=0))
    return stacked


def _text_side(manifest: dict[str, Any], mode: str) -> tuple[bool, str]:
    """(takes pairs, which tokenizer runs) from the manifest's tokenizer section."""
    section = manifest.get("tokenizer") or {}
    if mode in TEXT_MODES:
        # ONNX Runtime takes a pair in its one string input: the manifest says which it is.
        return bool(section.get("pair", len(section["inputs"]) == 2)), f"in-graph ({mode})"
    calibration = manifest.get("calibration") or {}
    task = manifest.get("task") or calibration.get("task")
    pair = bool(section.get("pair", task in PAIR_TASKS))
    return pair, "tokenizer/tokenizer.json (tokenizers package)"


# GLUE tasks whose examples are two texts (bertc's calibration.tasks names).
PAIR_TASKS = ("mrpc", "rte", "qnli", "mnli", "qqp", "stsb", "wnli")


def extensions_library() -> str:
    """Path of onnxruntime-extensions' custom-op library, found without importing the package
    (its __init__ imports torch and transformers when they are installed: 4.5 s, 366 MB)."""
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactLoadError(
            "this artifact's tokenizer runs on onnxruntime-extensions: "
            "`pip install onnxruntime-extensions`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("_extensions_pydll*"))
    if not found:
        raise ArtifactLoadError(f"no onnxruntime-extensions library in {folder}")
    return str(found[0])


_BACKENDS = {"openvino": _OpenVinoBackend, "onnxruntime": _OnnxRuntimeBackend}


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    """The artifact's manifest, checked before anything reads it: its own digest matches (an
    edited label, task or path is refused), every field the loader reads has its type, and every
    file it names is listed, relative and inside the artifact. ArtifactLoadError (one line,
    naming the field) otherwise. File hashes are `bertc verify`'s check, not this one's."""
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactLoadError(
            f"{artifact_dir} has no {MANIFEST_FILE}: not a bertc artifact"
        ) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactLoadError(f"{path} is not valid JSON: {error}") from error
    except (OSError, RecursionError) as error:
        raise ArtifactLoadError(f"cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or not all(
        isinstance(manifest.get(section), dict) for section in ("model", "runtime")
    ):
        raise ArtifactLoadError(f"{path} is not a bertc manifest (no model and runtime sections)")
    if MANIFEST_DIGEST_FIELD not in manifest:
        raise ArtifactLoadError(
            f"{path} has no {MANIFEST_DIGEST_FIELD}: it was written by an older bertc or edited; "
            "recompile the artifact"
        )
    if manifest.get(MANIFEST_DIGEST_FIELD) != manifest_digest(manifest):
        raise ArtifactLoadError(
            f"{path} has changed since the build (its sha256 differs from "
            f"{MANIFEST_DIGEST_FIELD}): the artifact is damaged or was edited"
        )
    _check_fields(manifest, str(path))
    _check_paths(Path(artifact_dir), manifest)
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """Hex sha256 of the manifest's canonical JSON: every field but `manifest_sha256`, keys
    sorted, separators `,` and `:`, non-ASCII escaped, UTF-8."""
    body = {key: value for key, value in manifest.items() if key != MANIFEST_DIGEST_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_NONE = type(None)
# The manifest schema versions this loader reads (bertc's SUPPORTED_SCHEMA_VERSIONS).
SUPPORTED_SCHEMA_VERSIONS = range(1, 2)
_PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, "regression", None)
# Characters a label name may not hold (bertc's FORBIDDEN_LABEL_CATEGORIES): control, format,
# line and paragraph separators; a tab or newline would break one-line-per-example output.
_FORBIDDEN_LABEL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# The fields this loader reads: (section, key, allowed types, required, allowed values).
_FIELDS: tuple[tuple[str, str, tuple[type, ...], bool, tuple[str, ...]], ...] = (
    ("", "schema_version", (int,), True, ()),
    ("", "task", (str, _NONE), False, ()),
    ("", "head", (dict,), False, ()),
    ("head", "problem_type", (str, _NONE), False, _PROBLEM_TYPES),
    ("head", "labels", (dict, _NONE), False, ()),
    ("head", "threshold", (float,), False, ()),
    ("", "files", (dict,), True, ()),
    ("", "tokenizer", (dict, _NONE), False, ()),
    ("", "calibration", (dict, _NONE), False, ()),
    ("model", "head", (str,), True, ("classifier", "regression", "encoder")),
    ("model", "labels", (dict, _NONE), False, ()),
    ("model", "max_sequence_length", (int,), True, ()),
    ("model", "inputs", (list,), True, ()),
    ("model", "outputs", (list,), True, ()),
    ("model", "tokenizer_dir", (str,), True, ()),
    ("runtime", "name", (str,), True, ("openvino", "onnxruntime")),
    ("runtime", "model", (str,), True, ()),
    ("runtime", "compile_config", (dict,), False, ()),
    ("runtime", "static_shapes", (dict,), False, ()),
    ("tokenizer", "mode", (str,), True, ("fused", "separate", "none")),
    ("tokenizer", "model", (str,), False, ()),
    ("tokenizer", "inputs", (list, str), False, ()),
    ("tokenizer", "pair", (bool,), False, ()),
    ("calibration", "task", (str, _NONE), False, ()),
    ("runtime.static_shapes", "sequence_buckets", (list,), False, ()),
    ("runtime.static_shapes", "split_at", (list, _NONE), False, ()),
)
# Files the manifest names (the tokenizer folder: `model.tokenizer_dir`), bertc's PATH_FIELDS.
_PATH_FIELDS = (
    ("runtime", "model"),
    ("runtime", "weights"),
    ("runtime", "operator_config"),
    ("tokenizer", "model"),
)
_MAX_LENGTH = 1 << 16


def _section(manifest: dict[str, Any], dotted: str) -> Any:
    """The section a dotted name ("", "model", "runtime.static_shapes") names, or None."""
    section: Any = manifest
    for key in filter(None, dotted.split(".")):
        section = section.get(key) if isinstance(section, dict) else None
    return section


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    """JSON typing: true/false are not integers, an integer is a number."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (isinstance(value, int) and float in types)


def _check_fields(manifest: dict[str, Any], where: str) -> None:
    """ArtifactLoadError naming the first field the loader reads that is missing, of the wrong
    JSON type, or a value it does not know."""
    for section_name, key, types, required, choices in _FIELDS:
        section = _section(manifest, section_name)
        field = f"{section_name}.{key}".lstrip(".")
        if not isinstance(section, dict):
            continue
        if key not in section:
            if required:
                raise ArtifactLoadError(f"{where}: field {field!r} is missing")
            continue
        value = section[key]
        if not _is_type(value, types):
            names = " or ".join("null" if kind is _NONE else kind.__name__ for kind in types)
            raise ArtifactLoadError(
                f"{where}: field {field!r} must be {names}, not {type(value).__name__}"
            )
        if choices and value not in choices:
            raise ArtifactLoadError(f"{where}: field {field!r} is {value!r}, not one of {choices}")
    model = manifest["model"]
    lists = {
        "model.inputs": (model["inputs"], str, IDS_INPUTS),
        "model.outputs": (model["outputs"], str, ()),
        "runtime.static_shapes.sequence_buckets": (
            (manifest["runtime"].get("static_shapes") or {}).get("sequence_buckets") or [],
            int,
            (),
        ),
        "runtime.static_shapes.split_at": (
            (manifest["runtime"].get("static_shapes") or {}).get("split_at") or [],
            str,
            (),
        ),
    }
    for field, (items, kind, choices) in lists.items():
        for item in items:
            if (
                isinstance(item, bool)
                or not isinstance(item, kind)
                or (choices and item not in choices)
            ):
                raise ArtifactLoadError(f"{where}: field {field!r} holds {item!r}")
            if kind is int and not 1 <= item <= _MAX_LENGTH:
                raise ArtifactLoadError(f"{where}: field {field!r} holds {item!r}")
    length = model["max_sequence_length"]
    if isinstance(length, bool) or not 1 <= length <= _MAX_LENGTH:
        raise ArtifactLoadError(f"{where}: field 'model.max_sequence_length' is {length!r}")
    for key, value in (model.get("labels") or {}).items():
        if not (key.isascii() and key.isdigit()) or not isinstance(value, str):
            raise ArtifactLoadError(f"{where}: field 'model.labels' holds {key!r}: {value!r}")
    _check_version_and_files(manifest, where)
    _check_labels(manifest, where)
    for key, value in (manifest["runtime"].get("compile_config") or {}).items():
        if not isinstance(value, (str, int, float)):
            raise ArtifactLoadError(f"{where}: field 'runtime.compile_config.{key}' is {value!r}")


def _check_version_and_files(manifest: dict[str, Any], where: str) -> None:
    """A schema version this loader reads, and plain relative names in the files section."""
    version = manifest["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ArtifactLoadError(
            f"{where}: field 'schema_version' is {version}; this loader reads "
            f"{SUPPORTED_SCHEMA_VERSIONS.start} to {SUPPORTED_SCHEMA_VERSIONS.stop - 1}"
        )
    for name in manifest["files"]:
        if not _plain_relative(name):
            raise ArtifactLoadError(
                f"{where}: the files section names {name!r}, not a plain relative path inside "
                "the artifact"
            )


def label_name_problem(name: Any) -> str | None:
    """Why `name` cannot be a label name (None: it can): not a string, empty or blank, or
    holding a control, format, line or paragraph separator character."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name.strip():
        return "is empty"
    bad = next((c for c in name if unicodedata.category(c) in _FORBIDDEN_LABEL_CATEGORIES), None)
    return None if bad is None else f"holds the control character U+{ord(bad):04X}"


def _check_labels(manifest: dict[str, Any], where: str) -> None:
    """Every label name fit to print on one line, no name twice, keys 0..N-1 with N the
    model's outputs (its config's id2label), and the head section's map the same."""
    model = manifest["model"]
    labels = model.get("labels") or {}
    head = manifest.get("head")
    head_labels = head.get("labels") if isinstance(head, dict) else None
    for field, mapping in (("model.labels", labels), ("head.labels", head_labels or {})):
        seen: dict[Any, str] = {}
        for key, name in mapping.items():
            problem = label_name_problem(name)
            if problem is None and name in seen:
                problem = f"has the name of label {seen[name]!r}"
            if problem is not None:
                raise ArtifactLoadError(f"{where}: field {field!r}: label {key!r} {problem}")
            seen[name] = key
    if not labels or model["head"] == "encoder":
        return
    if set(labels) != {str(index) for index in range(len(labels))}:
        raise ArtifactLoadError(
            f"{where}: field 'model.labels' keys are not 0 to {len(labels) - 1}"
        )
    config = model.get("config")
    id2label = config.get("id2label") if isinstance(config, dict) else None
    if isinstance(id2label, dict) and len(id2label) != len(labels):
        raise ArtifactLoadError(
            f"{where}: field 'model.labels' names {len(labels)} labels, but the model has "
            f"{len(id2label)} outputs"
        )
    if head_labels is not None and head_labels != labels:
        raise ArtifactLoadError(f"{where}: field 'head.labels' differs from 'model.labels'")


def _plain_relative(value: str) -> bool:
    """A relative POSIX path with no empty, `.` or `..` part, no backslash, drive or NUL."""
    parts = value.split("/")
    return (
        bool(value)
        and "\\" not in value
        and "\0" not in value
        and ":" not in parts[0]
        and all(part not in ("", ".", "..") for part in parts)
    )


def _check_paths(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names is a plain relative path, listed in its files section, and
    resolves (symbolic links followed) inside the artifact; else ArtifactLoadError."""
    listed = manifest["files"]
    named = [
        (f"{section}.{key}", manifest[section][key])
        for section, key in _PATH_FIELDS
        if isinstance(manifest.get(section), dict) and manifest[section].get(key) is not None
    ]
    folder = manifest["model"]["tokenizer_dir"]
    named.append(("model.tokenizer_dir", folder))
    root = directory.resolve()
    try:
        _check_named(directory, root, listed, named)
        tokenizer_json = root / folder / "tokenizer.json"
        if tokenizer_json.is_symlink() and not tokenizer_json.resolve().is_relative_to(root):
            raise ArtifactLoadError(
                f"{directory}: {folder}/tokenizer.json resolves outside the artifact"
            )
    except ArtifactLoadError:
        raise
    except (OSError, RuntimeError) as error:  # Python 3.11 raises RuntimeError on a link loop
        raise ArtifactLoadError(f"{directory}: a path cannot be resolved: {error}") from error


def _check_named(
    directory: Path, root: Path, listed: dict[str, Any], named: list[tuple[str, Any]]
) -> None:
    """Each (field, path): plain and relative, listed (a folder: holds a listed file), inside."""
    for field, value in named:
        if not isinstance(value, str) or not _plain_relative(value):
            raise ArtifactLoadError(
                f"{directory}: {field} {value!r} is not a plain relative path inside the artifact"
            )
        if field != "model.tokenizer_dir" and value not in listed:
            raise ArtifactLoadError(
                f"{directory}: {field} {value!r} is not in the manifest's files section"
            )
        if field == "model.tokenizer_dir" and not any(
            isinstance(name, str) and name.startswith(f"{value}/") for name in listed
        ):
            raise ArtifactLoadError(
                f"{directory}: {field} {value!r} holds no file of the manifest's files section"
            )
        if not (root / value).resolve().is_relative_to(root):
            raise ArtifactLoadError(f"{directory}: {field} {value!r} resolves outside the artifact")


def backend_for(directory: Path, manifest: dict[str, Any], threads: int | None) -> Any:
    """The runtime's session for the artifact; ArtifactLoadError (one line) when the runtime
    rejects a model file, or the model's inputs are not those the manifest lists."""
    runtime = (manifest.get("runtime") or {}).get("name")
    if runtime not in _BACKENDS:
        raise ArtifactLoadError(f"{directory} is for runtime {runtime!r}, which this loader lacks")
    try:
        backend = _BACKENDS[runtime](directory, manifest, threads)
    except ArtifactLoadError:
        raise
    except Exception as error:  # noqa: BLE001  (each runtime raises its own exception types)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArtifactLoadError(
            f"{directory}: {runtime} cannot load this artifact: {first_line}"
        ) from error
    # Token ids reach the model under the names the manifest lists (a fused IR takes strings).
    fused = (manifest.get("tokenizer") or {}).get("mode") == "fused"
    if not fused and not set(backend.input_names) <= set(manifest["model"]["inputs"]):
        raise ArtifactLoadError(
            f"{directory}: the model takes inputs {sorted(backend.input_names)}, "
            f"but the manifest's model.inputs lists {manifest['model']['inputs']}"
        )
    return backend


# More threads only cost memory (each keeps its own scratch); bertc's CLI has the same cap.
MAX_THREADS = 256


def _check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ValueError(
            f"threads must be 1 to {MAX_THREADS} (None: the runtime's default), got {threads}"
        )


def load(artifact_dir: str | Path, threads: int | None = None) -> TextModel:
    """The artifact ready to take strings, whatever its tokenizer mode (an ids-in artifact
    tokenizes with its `tokenizer/` files). `threads`: the runtime's intra-op threads (None: its
    default). ArtifactLoadError when it cannot run here; ValueError for a bad `threads`."""
    _check_threads(threads)
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    return TextModel(directory, manifest, backend_for(directory, manifest, threads))


def load_ids(artifact_dir: str | Path, threads: int | None = None) -> Any:
    """The artifact's token-ids model: `.run({name: int64 [batch, length]})` → every output,
    `.input_names`. For an ids-in artifact (`--tokenizer none`; a fused IR takes strings)."""
    _check_threads(threads)
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    return IdsModel(backend_for(directory, manifest, threads))


class IdsModel:
    """Token ids in, every output out, in the manifest's output order."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.input_names = backend.input_names
        self.session = getattr(backend, "session", None)

    @property
    def compiled(self) -> Any:
        """OpenVINO's whole IR on dynamic shapes (compiled on first use); None on ORT."""
        return getattr(self.backend, "compiled", None)

    @property
    def static(self) -> Any:
        """OpenVINO's static-shape buckets (`StaticShapeBuckets`); None on ORT."""
        return getattr(self.backend, "static", None)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output; RuntimeFailure when the runtime fails on these inputs."""
        return _guarded(self.backend.run_ids, dict(inputs))

    def run_dynamic(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """OpenVINO: the dynamic-shape IR whatever the input's shape (no bucket)."""
        return _guarded(self.backend._whole, {name: inputs[name] for name in self.input_names})


def main(argv: list[str] | None = None) -> int:
    """`python loader.py ARTIFACT TEXT [TEXT_PAIR] [--json]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [arg for arg in args if arg != "--json"]
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        model = load(args[0])
    except ArtifactLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 11
    try:
        if model.head == "encoder":
            texts = args[1:]
            if len(texts) == 2:
                print(json.dumps({"cosine_similarity": model.similarity(*texts)}))
            else:
                print(json.dumps({"embedding": model.embed(texts)[0].tolist()}))
            return 0
        prediction = model.predict([args[1]], [args[2]] if len(args) == 3 else None)[0]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeFailure as error:
        print(f"error: the runtime failed on this input: {error}", file=sys.stderr)
        return 11
    if as_json:
        print(json.dumps(prediction.__dict__))
    elif model.problem_type == MULTI_LABEL:
        print(",".join(prediction.labels))
    else:
        print(prediction.label if prediction.label is not None else prediction.scores[0])
    return 0


if __name__ == "__main__":
    _remove_script_folder_from_path()
    sys.exit(main())
