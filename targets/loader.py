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

    def check(self) -> CheckReport:
        """Recompute the artifact's golden outputs on this machine and compare them with the
        build machine's (see the module function `check`, which loads the artifact first)."""
        return check_model(self)


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
    ("", "golden", (dict, _NONE), False, ()),
    ("golden", "file", (str,), True, ()),
)
# Files the manifest names (the tokenizer folder: `model.tokenizer_dir`), bertc's PATH_FIELDS.
_PATH_FIELDS = (
    ("runtime", "model"),
    ("runtime", "weights"),
    ("runtime", "operator_config"),
    ("tokenizer", "model"),
    ("golden", "file"),
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


# ---- golden outputs: prove on the device that this runtime build gives what bertc verified

GOLDEN_FORMAT = "bertc-golden/1"
# Max |output - build machine's output| a device may show and still reproduce the artifact, on any
# value of the compared output. Measured cross-ISA drift of INT8 MiniLM-L6 SST-2 logits, x86
# (AVX-512 VNNI) vs emulated aarch64 (QEMU, Cortex-A76), the same inputs run alone, over 200 seeded
# SST-2 dev sentences (bench/README.md, "Golden outputs"): ONNX Runtime dynamic INT8 max 0.079 (p99
# 0.052), OpenVINO static INT8 on static shapes max 0.100 (p99 0.061); FIELD-NOTES.md's smaller
# figures (0.0056, 0.028) came from fewer inputs. 0.2 is twice the worst seen, and under 0.4 of the
# 0.514 that OpenVINO's known aarch64 dynamic-shape fault gives on MiniLM-L6's golden batch, which
# must fail.
GOLDEN_TOLERANCE = 0.2
# A recorded tolerance above this would let a different model pass: refused as tampering.
MAX_GOLDEN_TOLERANCE = 1.0
# Examples whose build-machine margin (top logit minus the next; multi-label: distance from the
# threshold) exceeds DECIDED_MARGINS × tolerance must keep their label on the device.
DECIDED_MARGINS = 2.0
MAX_GOLDEN_BYTES = 16 << 20
MAX_GOLDEN_EXAMPLES = 1024
# What golden examples feed: text (an artifact that tokenizes inside), or recorded token ids.
GOLDEN_INPUTS = ("text", "token ids")
SENTENCE_EMBEDDING = "sentence_embedding"
# CPU features that decide whether an INT8 model is fast, or even accurate (bertc's ISA_FLAGS).
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)
# The script's exit codes (bertc's): an artifact that is incomplete or edited; a failed gate.
EXIT_ARTIFACT = 11
EXIT_NOT_REPRODUCED = 12


class GoldenMissingError(ArtifactLoadError):
    """The artifact holds no golden outputs (built by a bertc before they were recorded)."""


@dataclass(frozen=True)
class GoldenExample:
    """One golden input and the compared output for it (float32 values, as JSON numbers).

    `ids`: for an artifact that takes token ids, the ids the build fed it, one list per model
    input name (so a device without the `tokenizers` package can still check it); None for an
    artifact that takes text. `output`: the artifact's on the build machine, the example run
    alone; `batch_output`: the same with every golden example in one call (`golden_outputs`);
    `reference`: fp32 PyTorch's on the same token ids, alone.
    """

    text: str
    text_pair: str | None
    output: tuple[float, ...]
    reference: tuple[float, ...]
    ids: dict[str, tuple[int, ...]] | None = None
    batch_output: tuple[float, ...] = ()

    def feeds(self) -> dict[str, np.ndarray]:
        """The recorded token ids as int64 arrays of shape [1, length]."""
        return {name: np.asarray([ids], dtype=np.int64) for name, ids in (self.ids or {}).items()}


@dataclass(frozen=True)
class Golden:
    """The artifact's `golden.json`: a small seeded set of inputs, the compared output (the
    first one; a sentence encoder's `sentence_embedding`) of the artifact on the build machine
    and of the fp32 PyTorch reference, and the tolerance a device is held to."""

    source: str
    task: str | None
    split: str | None
    seed: int | None
    inputs: str  # "text" or "token ids"
    output: str
    tolerance: float
    build: dict[str, Any]
    examples: tuple[GoldenExample, ...]

    def to_json(self) -> dict[str, Any]:
        """The file's JSON document (floats written as float32's shortest repr)."""
        examples = []
        for example in self.examples:
            item: dict[str, Any] = {"text": example.text, "text_pair": example.text_pair}
            if example.ids is not None:
                item["ids"] = {name: list(ids) for name, ids in example.ids.items()}
            item["output"] = list(example.output)
            item["batch_output"] = list(example.batch_output)
            item["reference"] = list(example.reference)
            examples.append(item)
        return {
            "format": GOLDEN_FORMAT,
            "source": self.source,
            "task": self.task,
            "split": self.split,
            "seed": self.seed,
            "inputs": self.inputs,
            "output": self.output,
            "tolerance": self.tolerance,
            "tolerance_means": (
                "max |output - build output| over every value, each example run alone "
                "(output) and all in one batch (batch_output); and examples whose build margin "
                f"is over {DECIDED_MARGINS:g}x the tolerance keep their label"
            ),
            "build": self.build,
            "examples": examples,
        }

    def to_text(self) -> str:
        """The file's bytes as text: the JSON document, keys sorted, one example a line."""
        document = self.to_json()
        examples = ",\n  ".join(
            json.dumps(example, sort_keys=True, ensure_ascii=False, allow_nan=False)
            for example in document["examples"]
        )
        # Inside a JSON string a quote is escaped, so only the key itself can match.
        head = json.dumps({**document, "examples": []}, indent=1, sort_keys=True)
        return head.replace('"examples": []', f'"examples": [\n  {examples}\n ]', 1) + "\n"


def float32_values(values: Any) -> tuple[float, ...]:
    """Values as float32, each written back as the shortest decimal that reads as it."""
    return tuple(float(str(value)) for value in np.asarray(values, dtype=np.float32).ravel())


def compared_output(manifest: dict[str, Any]) -> str:
    """The output the golden set records: a sentence encoder's embedding, else the first."""
    names = list(manifest["model"]["outputs"])
    return SENTENCE_EMBEDDING if SENTENCE_EMBEDDING in names else names[0]


def golden_outputs(
    model: TextModel, examples: tuple[GoldenExample, ...] | list, batch: bool = False
) -> np.ndarray:
    """The compared output for each example, float64 [examples, values]: raw text into an
    artifact that tokenizes inside, else the recorded token ids. Each example alone (batch 1),
    or with `batch` all of them in one call: the texts as one list (`TextModel.outputs`), the
    ids right-padded with zeros to the longest (attention_mask 0), as `load_ids(...).run` takes
    a batch. The two take different paths through a runtime (OpenVINO: static shape buckets for
    one input, dynamic shapes for a batch), so the golden set records both. The build records
    what this gives and `check` recomputes it the same way, so on the build machine they are
    equal. RuntimeFailure when the runtime fails on them."""
    index = list(model.manifest["model"]["outputs"]).index(compared_output(model.manifest))
    if not examples:
        return np.zeros((0, 0))
    groups = [list(examples)] if batch else [[example] for example in examples]
    rows = []
    for group in groups:
        if group[0].ids is not None:
            outputs = _guarded(model.backend.run_ids, _padded([e.feeds() for e in group]))
        else:
            pairs = None if group[0].text_pair is None else [str(e.text_pair) for e in group]
            outputs = model.outputs([e.text for e in group], pairs)
        rows.append(np.asarray(outputs[index], dtype=np.float64).reshape(len(group), -1))
    return np.concatenate(rows)


def _padded(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """[1, length] id arrays stacked into [examples, longest], right-padded with zeros."""
    longest = max(next(iter(feed.values())).shape[1] for feed in feeds)
    return {
        name: np.concatenate(
            [np.pad(feed[name], ((0, 0), (0, longest - feed[name].shape[1]))) for feed in feeds]
        )
        for name in feeds[0]
    }


def runtime_version(runtime: str) -> str:
    """The installed version of the artifact's runtime (`openvino` or `onnxruntime`)."""
    module = __import__(runtime)
    return str(getattr(module, "__version__", "unknown"))


def machine_description() -> dict[str, Any]:
    """This machine's architecture and the INT8-relevant ISA flags /proc/cpuinfo lists (none
    where there is no /proc/cpuinfo)."""
    import platform

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"machine": platform.machine(), "isa": sorted(f for f in ISA_FLAGS if f in flags)}


def platform_description(manifest: dict[str, Any]) -> dict[str, Any]:
    """Where outputs are computed: runtime, its version, machine and ISA flags."""
    runtime = manifest["runtime"]["name"]
    return {"runtime": runtime, "runtime_version": runtime_version(runtime)} | (
        machine_description()
    )


def check_files(directory: Path, manifest: dict[str, Any]) -> int:
    """Every file the manifest lists is there with its recorded sha256 (the model's too: the
    golden outputs prove nothing about other files); ArtifactLoadError naming the first that
    is missing, changed or (through a symbolic link) outside the artifact. Returns how many
    files were checked."""
    root = directory.resolve()
    for name, entry in sorted(manifest["files"].items()):
        recorded = entry.get("sha256") if isinstance(entry, dict) else None
        path = directory / name
        try:
            inside = path.resolve().is_relative_to(root)
        except (OSError, RuntimeError) as error:  # RuntimeError: a link loop (Python 3.11)
            raise ArtifactLoadError(f"{directory}: {name} cannot be resolved: {error}") from error
        if not inside:
            raise ArtifactLoadError(f"{directory}: {name} resolves outside the artifact")
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        except FileNotFoundError as error:
            raise ArtifactLoadError(
                f"{directory} failed its integrity check: {name} is missing"
            ) from error
        except OSError as error:
            raise ArtifactLoadError(f"{directory}: cannot read {name}: {error}") from error
        if digest.hexdigest() != recorded:
            raise ArtifactLoadError(
                f"{directory} failed its integrity check: {name} has changed (sha256 differs)"
            )
    return len(manifest["files"])


def golden_section(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `golden` section; GoldenMissingError when it has none."""
    section = manifest.get("golden")
    if not isinstance(section, dict):
        raise GoldenMissingError(
            f"{directory}: no golden outputs in this artifact (built before bertc recorded "
            "them); recompile it"
        )
    return section


def read_golden(artifact_dir: str | Path, manifest: dict[str, Any] | None = None) -> Golden:
    """The artifact's golden set, every field checked against the manifest (input kind, pair,
    input names and lengths, output widths, finite numbers, tolerance); GoldenMissingError when
    the manifest records none, ArtifactLoadError (one line) for anything else wrong. The file's
    sha256 is `check_files`'s to check."""
    directory = Path(artifact_dir)
    manifest = read_manifest(directory) if manifest is None else manifest
    section = golden_section(directory, manifest)
    path = directory / section["file"]
    where = f"{directory}: {section['file']}"
    try:
        if path.stat().st_size > MAX_GOLDEN_BYTES:
            raise ArtifactLoadError(f"{where} is larger than {MAX_GOLDEN_BYTES:,} bytes")
        document = json.loads(
            path.read_text(encoding="utf-8"),
            parse_constant=_no_constant,
            object_pairs_hook=_unique_keys,
        )
    except FileNotFoundError as error:
        raise ArtifactLoadError(f"{where} is missing") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactLoadError(f"{where} is not valid JSON: {error}") from error
    except ValueError as error:
        raise ArtifactLoadError(f"{where}: {error}") from error
    except (OSError, RecursionError) as error:
        raise ArtifactLoadError(f"{where} cannot be read: {error}") from error
    return _golden_from_json(document, manifest, where)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, or ValueError when a key repeats: which of two values counts
    would be the parser's choice, and another reader's may differ."""
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
        raise ValueError(f"holds the key {repeated[0]!r} twice")
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds the non-finite number {name}")


def _golden_from_json(document: Any, manifest: dict[str, Any], where: str) -> Golden:
    """A Golden from the file's JSON, or ArtifactLoadError naming the first field that is
    wrong."""
    if not isinstance(document, dict) or document.get("format") != GOLDEN_FORMAT:
        raise ArtifactLoadError(f"{where} is not a {GOLDEN_FORMAT} document")
    model = manifest["model"]
    expected_inputs = GOLDEN_INPUTS[0] if _mode(manifest) in TEXT_MODES else GOLDEN_INPUTS[1]
    _expect(document, "inputs", str, where, choices=(expected_inputs,))
    _expect(document, "output", str, where, choices=(compared_output(manifest),))
    for key in ("source", "task", "split"):
        _expect(document, key, (str, type(None)), where)
    _expect(document, "seed", (int, type(None)), where)
    _expect(document, "build", dict, where)
    tolerance = _expect(document, "tolerance", float, where)
    if not 0 < tolerance <= MAX_GOLDEN_TOLERANCE:
        raise ArtifactLoadError(
            f"{where}: tolerance {tolerance!r} is not in (0, {MAX_GOLDEN_TOLERANCE:g}]"
        )
    items = _expect(document, "examples", list, where)
    if not 1 <= len(items) <= MAX_GOLDEN_EXAMPLES:
        raise ArtifactLoadError(f"{where}: {len(items)} examples, not 1 to {MAX_GOLDEN_EXAMPLES}")
    pair = bool((manifest.get("tokenizer") or {}).get("pair")) and model["head"] != "encoder"
    names = list(model["inputs"]) if expected_inputs == "token ids" else None
    examples = tuple(
        _golden_example(item, f"{where}: example {number}", pair, names, model)
        for number, item in enumerate(items, start=1)
    )
    widths = {len(example.output) for example in examples}
    if len(widths) > 1:
        raise ArtifactLoadError(f"{where}: the examples' outputs have {sorted(widths)} values")
    return Golden(
        source=document["source"] or "",
        task=document["task"],
        split=document["split"],
        seed=document["seed"],
        inputs=document["inputs"],
        output=document["output"],
        tolerance=float(tolerance),
        build=document["build"],
        examples=examples,
    )


def _golden_example(
    item: Any, where: str, pair: bool, names: list[str] | None, model: dict[str, Any]
) -> GoldenExample:
    if not isinstance(item, dict):
        raise ArtifactLoadError(f"{where} is not an object")
    text = _expect(item, "text", str, where)
    text_pair = _expect(item, "text_pair", (str, type(None)), where)
    if not text.strip() or (text_pair is not None and not text_pair.strip()):
        raise ArtifactLoadError(f"{where}: a text is empty")
    if pair != (text_pair is not None):
        wanted = "a sentence pair" if pair else "one text"
        raise ArtifactLoadError(f"{where}: the artifact takes {wanted}, the example does not")
    output = _finite_values(_expect(item, "output", list, where), f"{where}: output")
    reference = _finite_values(_expect(item, "reference", list, where), f"{where}: reference")
    batch = _finite_values(_expect(item, "batch_output", list, where), f"{where}: batch_output")
    for name, values in (("reference", reference), ("batch_output", batch)):
        if len(values) != len(output):
            raise ArtifactLoadError(
                f"{where}: {name} has {len(values)} values, output {len(output)}"
            )
    labels = model.get("labels") or {}
    if model["head"] != "encoder" and labels and len(output) != len(labels):
        raise ArtifactLoadError(
            f"{where}: output has {len(output)} values for the manifest's {len(labels)} labels"
        )
    ids = None
    if names is not None:
        ids = _golden_ids(_expect(item, "ids", dict, where), names, where, model)
    elif "ids" in item:
        raise ArtifactLoadError(f"{where}: token ids recorded for an artifact that takes text")
    return GoldenExample(text, text_pair, output, reference, ids, batch)


def _golden_ids(
    ids: dict[str, Any], names: list[str], where: str, model: dict[str, Any]
) -> dict[str, tuple[int, ...]]:
    if sorted(ids) != sorted(names):
        raise ArtifactLoadError(f"{where}: ids are named {sorted(ids)}, the model's inputs {names}")
    lengths = set()
    for name in names:
        values = ids[name]
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31 for v in values
        ):
            raise ArtifactLoadError(f"{where}: ids {name!r} is not a list of token ids")
        lengths.add(len(values))
    length = lengths.pop() if len(lengths) == 1 else None
    if length is None or not 1 <= length <= model["max_sequence_length"]:
        raise ArtifactLoadError(
            f"{where}: the ids' lengths are not one length of 1 to {model['max_sequence_length']}"
        )
    return {name: tuple(ids[name]) for name in names}


def _finite_values(values: list[Any], where: str) -> tuple[float, ...]:
    if not values or not all(_is_type(v, (float,)) for v in values):
        raise ArtifactLoadError(f"{where} is not a non-empty list of numbers")
    array = np.abs(np.asarray(values, dtype=np.float64))
    if not (array <= np.finfo(np.float32).max).all():  # NaN fails this too
        raise ArtifactLoadError(f"{where} holds a non-finite number (or one past float32)")
    return tuple(float(v) for v in values)


def _expect(section: dict[str, Any], key: str, types: Any, where: str, choices: tuple = ()) -> Any:
    """`section[key]`, of one of `types` (JSON typing) and one of `choices` when given."""
    kinds = types if isinstance(types, tuple) else (types,)
    if key not in section:
        raise ArtifactLoadError(f"{where}: field {key!r} is missing")
    value = section[key]
    if not _is_type(value, kinds):
        raise ArtifactLoadError(f"{where}: field {key!r} has the wrong type")
    if choices and value not in choices:
        raise ArtifactLoadError(f"{where}: field {key!r} is {value!r}, not {choices[0]!r}")
    return value


def _mode(manifest: dict[str, Any]) -> str:
    return (manifest.get("tokenizer") or {}).get("mode", "none")


@dataclass(frozen=True)
class CheckReport:
    """What `check` found: the golden outputs recomputed here against the build machine's.

    `max_abs_error`: max |here - build| over every value, each example run alone and all in
    one batch (the gate: at most `tolerance`); `alone_max_abs_error`, `batch_max_abs_error`:
    each of the two runs' own.
    `agreement`: against the build, the share of examples with the same label
    (`agreement_measure` "argmax", or "labels over the threshold" for multi-label), the Pearson
    r of a regression score, or the lowest cosine similarity of an encoder's embeddings;
    `decided` examples have a build margin over 2 × tolerance, and `decided_agreement` must be 1.
    `reference_*`: the same two against fp32 PyTorch (informative: what compression cost on
    these inputs, not gated). `tokenizer_ids`: for a token-ids artifact, whether the shipped
    tokenizer gives the recorded ids here (None: an artifact that takes text). `here` and
    `build`: runtime, version, machine, ISA flags. `problems`: why it failed (empty: passed).
    """

    artifact: str
    passed: bool
    examples: int
    source: str
    output: str
    tolerance: float
    max_abs_error: float
    alone_max_abs_error: float
    batch_max_abs_error: float
    agreement: float | None
    agreement_measure: str
    decided: int
    decided_agreement: float | None
    reference_max_abs_error: float
    reference_agreement: float | None
    tokenizer_ids: str | None
    files_checked: int
    here: dict[str, Any]
    build: dict[str, Any]
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values."""
        from dataclasses import asdict

        def finite(value: Any) -> Any:  # strict JSON: a non-finite error is null
            return None if isinstance(value, float) and not np.isfinite(value) else value

        return {key: finite(value) for key, value in asdict(self).items()} | {
            "problems": list(self.problems)
        }

    def lines(self) -> list[str]:
        """The report as a few lines for a terminal or a log."""

        def shown(value: float | None, share: bool = False) -> str:
            if value is None:
                return "undefined"
            return f"{value:.2%}" if share else f"{value:.6g}"

        share = "agreement" in self.agreement_measure  # a share of examples, not r or cosine

        def where(place: dict[str, Any]) -> str:
            isa = " ".join(place.get("isa") or []) or "no ISA flags known"
            return (
                f"{place.get('runtime')} {place.get('runtime_version')} on "
                f"{place.get('machine')} ({isa})"
            )

        verdict = "reproduced" if self.passed else "NOT reproduced"
        lines = [
            f"golden outputs {verdict}: {self.examples} examples ({self.source}), "
            f"{self.output}, {self.files_checked} files match the manifest",
            f"  here:    {where(self.here)}",
            f"  build:   {where(self.build)}",
            f"  vs build: max |Δ| {shown(self.alone_max_abs_error)} alone, "
            f"{shown(self.batch_max_abs_error)} in one batch (tolerance {self.tolerance:g}), "
            f"{self.agreement_measure} {shown(self.agreement, share)}"
            + (
                f", {self.decided} decided (margin > {DECIDED_MARGINS:g}×tolerance): "
                f"{shown(self.decided_agreement, True)}"
                if self.decided_agreement is not None
                else ""
            ),
            f"  vs fp32 PyTorch: max |Δ| {shown(self.reference_max_abs_error)}, "
            f"{self.agreement_measure} {shown(self.reference_agreement, share)}",
        ]
        if self.tokenizer_ids is not None:
            lines.append(f"  tokenizer: {self.tokenizer_ids}")
        lines += [f"  problem: {problem}" for problem in self.problems]
        return lines


def _decisions(scores: np.ndarray, problem_type: str | None, threshold: float) -> list | None:
    """Each row's label (argmax), or set of labels over the threshold; None without labels."""
    if problem_type == SINGLE_LABEL:
        return [int(row.argmax()) for row in scores]
    if problem_type == MULTI_LABEL:
        cut = _logit(threshold)
        return [tuple(np.flatnonzero(row > cut).tolist()) for row in scores]
    return None


def _logit(probability: float) -> float:
    probability = min(max(probability, 1e-12), 1 - 1e-12)
    return float(np.log(probability / (1 - probability)))


def _margins(scores: np.ndarray, problem_type: str | None, threshold: float) -> np.ndarray:
    """How far each row is from changing its label: top logit minus the next (single-label),
    the nearest logit's distance from the threshold's (multi-label); zeros without labels."""
    if problem_type == SINGLE_LABEL and scores.shape[1] > 1:
        ordered = np.sort(scores, axis=1)
        return ordered[:, -1] - ordered[:, -2]
    if problem_type == MULTI_LABEL:
        return np.abs(scores - _logit(threshold)).min(axis=1)
    return np.zeros(len(scores))


def _agreement(
    got: np.ndarray, want: np.ndarray, head: str, problem_type: str | None, threshold: float
) -> tuple[str, float | None]:
    """(measure, value) of how far `got` keeps what `want` says (see CheckReport)."""
    decided = _decisions(want, problem_type, threshold)
    if decided is not None:
        measure = "argmax agreement" if problem_type == SINGLE_LABEL else "label-set agreement"
        same = [
            a == b for a, b in zip(_decisions(got, problem_type, threshold), decided, strict=True)
        ]
        return measure, float(np.mean(same))
    if head == "encoder":
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
        cosines = np.sum(got * want, axis=1) / np.where(norms > 0, norms, 1.0)
        return "min cosine similarity", float(cosines.min())
    first, second = got.ravel(), want.ravel()
    if len(first) < 2 or first.std() == 0 or second.std() == 0:
        return "Pearson r", None
    return "Pearson r", float(np.corrcoef(first, second)[0, 1])


def _tokenizer_ids(model: TextModel, golden: Golden) -> tuple[str | None, str | None]:
    """(what the shipped tokenizer gave for a token-ids artifact, a problem or None); the
    check is skipped, and said so, where the `tokenizers` package is not installed."""
    if golden.inputs != "token ids":
        return None, None
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return "not checked: no `tokenizers` package here (the recorded ids were run)", None
    tokenizer = HfTokenizer(model.artifact_dir, model.manifest)
    differ = [
        number
        for number, example in enumerate(golden.examples, start=1)
        if {
            name: tuple(ids[0].tolist())
            for name, ids in tokenizer(example.text, example.text_pair).items()
        }
        != example.ids
    ]
    checked = len(golden.examples)
    summary = (
        f"tokenizer/tokenizer.json gives the recorded ids on {checked - len(differ)} of {checked}"
    )
    problem = (
        f"the shipped tokenizer's ids differ from the build's on {len(differ)} example(s) "
        f"(first: example {differ[0]})"
        if differ
        else None
    )
    return summary, problem


def check_model(model: TextModel) -> CheckReport:
    """`check` on an artifact already loaded (`TextModel.check`)."""
    golden_section(model.artifact_dir, model.manifest)
    files = check_files(model.artifact_dir, model.manifest)
    return _check_loaded(model, read_golden(model.artifact_dir, model.manifest), files)


def _check_loaded(model: TextModel, golden: Golden, files: int) -> CheckReport:
    """Run the golden inputs on `model`, alone and in one batch, and compare
    (`compare_golden`)."""
    recorded = _as_float32([example.output for example in golden.examples])
    here = golden_outputs(model, golden.examples)
    if here.shape != recorded.shape:
        raise ArtifactLoadError(
            f"{model.artifact_dir}: the model gives {here.shape[1]} values of {golden.output} "
            f"per example, the golden file records {recorded.shape[1]}"
        )
    runs = {
        "alone": (here, recorded),
        "batch": (
            golden_outputs(model, golden.examples, batch=True),
            _as_float32([example.batch_output for example in golden.examples]),
        ),
    }
    return compare_golden(model, golden, runs, files)


def _as_float32(rows: list[tuple[float, ...]]) -> np.ndarray:
    """Recorded values back to the float32 the runtime gave (their shortest decimals read as
    float32 exactly), as float64 for the arithmetic."""
    return np.asarray(rows, dtype=np.float32).astype(np.float64)


def _run_errors(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| per value; infinite where `got` is not finite."""
    errors = np.abs(got - want)
    return np.where(np.isfinite(errors), errors, np.inf)


def compare_golden(
    model: TextModel,
    golden: Golden,
    runs: dict[str, tuple[np.ndarray, np.ndarray]],
    files: int,
) -> CheckReport:
    """The report for outputs computed here against the recorded ones: `runs` maps "alone" and
    "batch" to (here, recorded), each [examples, values]."""
    problems = []
    count = len(golden.examples)
    places = {"alone": "run alone", "batch": f"in one batch of {count}"}
    errors = {name: _run_errors(got, want) for name, (got, want) in runs.items()}
    for name, error in errors.items():
        if error.max() > golden.tolerance:
            worst = int(error.max(axis=1).argmax())
            problems.append(
                f"max |Δ| {error.max():.4g} exceeds the tolerance {golden.tolerance:g} "
                f"(example {worst + 1}, {places[name]})"
            )
    problem_type, threshold, head = model.problem_type, model.threshold, model.head
    here, recorded = runs["alone"]
    reference = _as_float32([example.reference for example in golden.examples])
    measure, agreement = _agreement(here, recorded, head, problem_type, threshold)
    decided_agreement, decided = None, 0
    if _decisions(recorded, problem_type, threshold) is not None:
        margin = DECIDED_MARGINS * golden.tolerance
        changed: set[int] = set()
        for got, want in runs.values():
            confident = _margins(want, problem_type, threshold) > margin
            mine, theirs = (_decisions(x, problem_type, threshold) for x in (got, want))
            changed |= {int(i) for i in np.flatnonzero(confident) if mine[i] != theirs[i]}
        confident = _margins(recorded, problem_type, threshold) > margin
        decided = int(confident.sum())
        decided_agreement = 1.0 - len(changed & set(np.flatnonzero(confident).tolist())) / (
            decided or 1
        )
        if changed:
            problems.append(
                f"{len(changed)} example(s) with a clear margin at build changed label "
                f"(first: example {min(changed) + 1})"
            )
    _, reference_agreement = _agreement(here, reference, head, problem_type, threshold)
    tokenizer_ids, tokenizer_problem = _tokenizer_ids(model, golden)
    if tokenizer_problem:
        problems.append(tokenizer_problem)
    return CheckReport(
        artifact=str(model.artifact_dir),
        passed=not problems,
        examples=count,
        source=golden.source,
        output=golden.output,
        tolerance=golden.tolerance,
        max_abs_error=float(max(error.max() for error in errors.values())),
        alone_max_abs_error=float(errors["alone"].max()),
        batch_max_abs_error=float(errors["batch"].max()),
        agreement=agreement,
        agreement_measure=measure,
        decided=decided,
        decided_agreement=decided_agreement if decided else None,
        reference_max_abs_error=float(_run_errors(here, reference).max()),
        reference_agreement=reference_agreement,
        tokenizer_ids=tokenizer_ids,
        files_checked=files,
        here=platform_description(model.manifest),
        build=golden.build,
        problems=tuple(problems),
    )


def check(artifact_dir: str | Path, threads: int | None = None) -> CheckReport:
    """Recompute the artifact's golden outputs (`golden.json`) on this machine's runtime and
    compare them with what the build machine recorded: `report.passed` when every value is
    within the recorded tolerance (GOLDEN_TOLERANCE, 0.2 by default: measured cross-ISA INT8
    drift reached 0.100 on MiniLM-L6 logits, see its comment) and examples the build decided
    clearly keep their label, each run alone and all in one batch. Every listed file is hashed
    first (golden.json and the model included).

    Raises GoldenMissingError (an ArtifactLoadError) when the artifact has no golden outputs,
    ArtifactLoadError for a missing, edited or malformed file or golden set (the script: exit
    11), RuntimeFailure when the runtime fails on a golden input, ValueError for bad `threads`.
    """
    _check_threads(threads)
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    golden_section(directory, manifest)  # none: said at once
    files = check_files(directory, manifest)  # an edited file is an edit, before it is read
    golden = read_golden(directory, manifest)
    model = TextModel(directory, manifest, backend_for(directory, manifest, threads))
    return _check_loaded(model, golden, files)


def main(argv: list[str] | None = None) -> int:
    """`python loader.py ARTIFACT TEXT [TEXT_PAIR] [--json]`, or
    `python loader.py ARTIFACT --check [--threads N] [--json]`: exit 0 when the golden outputs
    are reproduced here, 12 when not, 11 when they are missing or the artifact was edited."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [arg for arg in args if arg != "--json"]
    if "--check" in args:
        return _check_main([arg for arg in args if arg != "--check"], as_json)
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


def _check_main(args: list[str], as_json: bool) -> int:
    """`--check`: the report on stdout (lines, or one JSON object), the verdict as the code."""
    threads = None
    if len(args) == 3 and args[1] == "--threads" and args[2].isdigit():
        threads, args = int(args[2]), args[:1]
    if len(args) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        report = check(args[0], threads)
    except ArtifactLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ARTIFACT
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeFailure as error:
        print(f"error: the runtime failed on a golden input: {error}", file=sys.stderr)
        return EXIT_ARTIFACT
    print(json.dumps(report.to_json()) if as_json else "\n".join(report.lines()))
    if not report.passed:
        print(f"error: golden outputs not reproduced: {report.problems[0]}", file=sys.stderr)
        return EXIT_NOT_REPRODUCED
    return 0


if __name__ == "__main__":
    _remove_script_folder_from_path()
    sys.exit(main())
