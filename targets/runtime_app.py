"""Load a bertc artifact and label text with the runtime alone: text in, label out.

This one file needs numpy and either `openvino` + `openvino-tokenizers` or `onnxruntime` +
`onnxruntime-extensions`, nothing else (no torch, transformers, tokenizers or the rest of bertc),
so an app can vendor it. It reads the artifact's `manifest.json` and runs the tokenizer that the
compile put into the graph (`--tokenizer fused`) or beside it (`--tokenizer separate`).

    import bertc_runtime                      # or: from bertc.targets import runtime_app
    model = bertc_runtime.load("artifacts/minilm-l6-sst2-openvino")
    print(model.predict(["a gorgeous, witty, seductive movie."])[0].label)

Run as a script: `python runtime_app.py ARTIFACT "text" ["second text"] [--json]`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_FILE = "manifest.json"
TEXT_MODES = ("fused", "separate")


class ArtifactLoadError(RuntimeError):
    """The directory is not an artifact this loader can run (no tokenizer inside, bad manifest)."""


@dataclass(frozen=True)
class Prediction:
    """One example's result: the label (None for regression or an encoder) and its scores."""

    label: str | None
    label_id: int | None
    scores: list[float]  # class probabilities (softmax of the logits), or the regression score


class TextModel:
    """An artifact with its tokenizer inside: `logits(texts, text_pairs)` and `predict(...)`."""

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], backend: Any) -> None:
        self.artifact_dir = artifact_dir
        self.manifest = manifest
        self.backend = backend
        model = manifest["model"]
        self.head = model["head"]
        self.labels = {int(key): value for key, value in (model.get("labels") or {}).items()}
        tokenizer = manifest["tokenizer"]
        # ONNX Runtime takes a pair in its one string input: the manifest says which it is.
        self.pair = bool(tokenizer.get("pair", len(tokenizer["inputs"]) == 2))
        # What the verify code looks at: ORT's session (OpenVINO's compiled model: `compiled`).
        self.session = getattr(backend, "session", None)

    @property
    def compiled(self) -> Any:
        """OpenVINO's whole compiled IR (compiled when first asked for), None on ONNX Runtime."""
        return getattr(self.backend, "compiled", None)

    def logits(self, texts: list[str], text_pairs: list[str] | None = None) -> np.ndarray:
        """The model's first output for each example, shape [len(texts), outputs]."""
        texts = [str(text) for text in texts]
        if self.pair and text_pairs is None:
            raise ValueError("this artifact classifies sentence pairs: pass text_pairs too")
        if not self.pair and text_pairs is not None:
            raise ValueError("this artifact takes single sentences, not pairs")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(text_pairs)} text_pairs")
        if not texts:
            return np.zeros((0, max(len(self.labels), 1)), dtype=np.float32)
        pairs = None if text_pairs is None else [str(text) for text in text_pairs]
        output = np.asarray(self.backend.run(texts, pairs))
        return output.reshape(len(texts), -1) if self.head != "encoder" else output

    def predict(self, texts: list[str], text_pairs: list[str] | None = None) -> list[Prediction]:
        scores = self.logits(texts, text_pairs).astype(np.float64)
        if self.head == "regression":
            return [Prediction(None, None, [float(row[0])]) for row in scores]
        if self.head == "encoder":
            raise ValueError("an encoder artifact has no labels: use logits() for its outputs")
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        results = []
        for row in probabilities:
            index = int(row.argmax())
            results.append(Prediction(self.labels.get(index, str(index)), index, row.tolist()))
        return results


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
    """Strings in: the fused IR, or the tokenizer IR then the ids-in IR, on the CPU plugin."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int | None) -> None:
        import openvino
        import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops with OpenVINO)

        runtime = manifest["runtime"]
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
        self.fused = manifest["tokenizer"]["mode"] == "fused"
        self.tokenizer = None
        encoder = self.model
        if not self.fused:
            path = directory / manifest["tokenizer"]["model"]
            self.tokenizer = self.core.compile_model(str(path), "CPU")
        elif static_shapes.get("split_at"):
            tokenizer, encoder = split_fused_model(self.model, static_shapes["split_at"])
            self.tokenizer = self.core.compile_model(tokenizer, "CPU")
        # The tokenizer's outputs that the encoder takes, found once rather than on every call.
        encoder_inputs = {port.get_any_name() for port in encoder.inputs}
        self.hand_over = [
            port
            for port in (self.tokenizer.outputs if self.tokenizer is not None else [])
            if port.get_any_name() in encoder_inputs
        ]
        self.static = StaticShapeBuckets(
            self.core, encoder, config, static_shapes.get("sequence_buckets", [])
        )

    @property
    def compiled(self) -> Any:
        """The whole IR on dynamic shapes, compiled on first use: a process that only labels
        single inputs never needs it (`bertc run` on MiniLM-L6's fused IR: 1.10 -> 0.77 s and
        317 -> 249 MB peak RSS)."""
        if self._compiled is None:
            self._compiled = self.core.compile_model(self.model, "CPU", self.config)
            self._request = self._compiled.create_infer_request()
        return self._compiled

    def _whole(self, inputs: Any) -> np.ndarray:
        compiled = self.compiled
        return np.array(self._request.infer(inputs)[compiled.outputs[0]])

    def run(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        strings = [np.array(texts)] + ([np.array(pairs)] if pairs is not None else [])
        if self.tokenizer is None or (self.fused and len(texts) > 1):
            return self._whole(strings)
        tokens = self.tokenizer(strings)
        feeds = {port.get_any_name(): tokens[port] for port in self.hand_over}
        outputs = self.static.run(feeds)
        if outputs is not None:
            return outputs[0]
        return self._whole(strings if self.fused else feeds)  # no bucket: dynamic shapes


class _OnnxRuntimeBackend:
    """A session with onnxruntime-extensions' ops; the BertTokenizer op takes one example a run."""

    def __init__(self, directory: Path, manifest: dict[str, Any], threads: int | None) -> None:
        import onnxruntime
        from onnxruntime_extensions import get_library_path

        options = onnxruntime.SessionOptions()
        options.register_custom_ops_library(get_library_path())
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        model_path = str(directory / manifest["runtime"]["model"])
        self.session = onnxruntime.InferenceSession(model_path, options, providers=providers)
        self.tokenizer = None
        if manifest["tokenizer"]["mode"] == "separate":
            path = str(directory / manifest["tokenizer"]["model"])
            self.tokenizer = onnxruntime.InferenceSession(path, options, providers=providers)
            self.model_inputs = [item.name for item in self.session.get_inputs()]
        self.text_input = manifest["tokenizer"]["inputs"][0]

    def _one(self, text: str, pair: str | None) -> np.ndarray:
        strings = np.array([text] if pair is None else [text, pair])
        if self.tokenizer is None:
            return self.session.run(None, {self.text_input: strings})[0]
        names = [output.name for output in self.tokenizer.get_outputs()]
        tokens = dict(
            zip(names, self.tokenizer.run(None, {self.text_input: strings}), strict=False)
        )
        feeds = {name: tokens[name][np.newaxis, :] for name in self.model_inputs}
        return self.session.run(None, feeds)[0]

    def run(self, texts: list[str], pairs: list[str] | None) -> np.ndarray:
        rows = [
            self._one(text, None if pairs is None else pairs[index])
            for index, text in enumerate(texts)
        ]
        return np.concatenate(rows, axis=0)


_BACKENDS = {"openvino": _OpenVinoBackend, "onnxruntime": _OnnxRuntimeBackend}


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactLoadError(
            f"{artifact_dir} has no {MANIFEST_FILE}: not a bertc artifact"
        ) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactLoadError(f"{path} is not valid JSON: {error}") from error


def load(artifact_dir: str | Path, threads: int | None = None) -> TextModel:
    """The artifact ready to take strings; ArtifactLoadError if it has no tokenizer inside."""
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    mode = (manifest.get("tokenizer") or {}).get("mode", "none")
    if mode not in TEXT_MODES:
        raise ArtifactLoadError(
            f"{directory} takes token ids (compiled with --tokenizer none): tokenize with its "
            "tokenizer/ files, or recompile with --tokenizer fused"
        )
    runtime = manifest["runtime"]["name"]
    if runtime not in _BACKENDS:
        raise ArtifactLoadError(f"{directory} is for runtime {runtime!r}, which this loader lacks")
    return TextModel(directory, manifest, _BACKENDS[runtime](directory, manifest, threads))


def main(argv: list[str] | None = None) -> int:
    """`python runtime_app.py ARTIFACT TEXT [TEXT_PAIR] [--json]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [arg for arg in args if arg != "--json"]
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    model = load(args[0])
    prediction = model.predict([args[1]], [args[2]] if len(args) == 3 else None)[0]
    if as_json:
        print(json.dumps(prediction.__dict__))
    else:
        print(prediction.label if prediction.label is not None else prediction.scores[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
