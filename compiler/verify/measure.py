"""Running both models on the split: the artifact through its own runtime (timed at batch 1,
then in padded batches for throughput), then the untimed fp32 reference."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bertc.compiler.core.errors import ArtifactError, BertcError
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.verify.inputs import (
    batch_padding,
    encode,
    load_tokenizer,
    takes_strings,
    texts,
)
from bertc.compiler.verify.model import Latency
from bertc.compiler.verify.reference import compared_output_index, run_reference

if TYPE_CHECKING:
    from bertc.calibration import Example
    from bertc.compiler.loading import LoadedModel

DEFAULT_BATCH_SIZE = 32
WARMUP_RUNS = 5


@dataclass(frozen=True)
class MeasuredOutputs:
    """Both models' logits on the split, float64 (examples, outputs), and the artifact's timings.

    For a sentence encoder the "logits" are its sentence embeddings, one row per sentence.
    """

    reference_logits: np.ndarray
    artifact_logits: np.ndarray
    latency: Latency
    batch_padding_max_abs: float
    precision: str | None
    runtime_threads: int | None


class TextRunner:
    """`loader.TextModel` behind the Runner shape: `run({"texts", "text_pairs"})`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.compiled = model.compiled
        self.session = model.session

    def run(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        """Every output for a batch of texts, in the manifest's order, like a runtime's."""
        return self.model.outputs(inputs["texts"], inputs["text_pairs"])


def load_runner(artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None) -> Any:
    """The artifact loaded by its own target; a runtime's failure becomes one ArtifactError line."""
    from bertc.targets import get_target
    from bertc.targets.loader import load

    target = get_target(manifest["target"])
    try:
        if takes_strings(manifest):
            return TextRunner(load(artifact_dir, threads))
        return target.load(artifact_dir, manifest, threads)
    except BertcError:
        raise
    except Exception as error:  # runtimes raise their own types (RuntimeError, Fail, ...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArtifactError(
            f"{manifest['target']} could not load {artifact_dir}: {first}"
        ) from error


def runtime_settings(runner: Any) -> tuple[str | None, int | None]:
    """Precision and thread count as the loaded runtime reports them, where it can."""
    compiled = getattr(runner, "compiled", None)  # OpenVINO
    if compiled is not None:
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        return getattr(precision, "get_type_name", lambda: str(precision))(), int(
            compiled.get_property("INFERENCE_NUM_THREADS")
        )
    session = getattr(runner, "session", None)  # ONNX Runtime runs the graph's own types
    if session is not None:
        intra = session.get_session_options().intra_op_num_threads
        return "as stored in the graph (ONNX Runtime's CPU provider does not down-cast)", (
            intra or None
        )
    return None, None


def run_both(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    loaded: LoadedModel,
    examples: Sequence[Example],
    batch_size: int,
    threads: int | None,
    progress: Progress = silent,
    reference_threads: int | None = None,
) -> MeasuredOutputs:
    """Artifact first (timed, nothing else running), then its padded batches, then the reference.

    `threads` goes to the artifact's runtime only; the reference runs at `reference_threads`
    torch threads (see `reference.run_reference`).
    """
    max_length = int(manifest["model"]["max_sequence_length"])
    output = compared_output_index(manifest["model"]["outputs"])
    tokenizer = load_tokenizer(artifact_dir, manifest)
    names = tuple(manifest["model"]["inputs"])
    singles = [encode(tokenizer, [example], max_length, names) for example in examples]
    takes_text = takes_strings(manifest)
    progress("artifact")
    runner = load_runner(artifact_dir, manifest, threads)
    precision, runtime_threads = runtime_settings(runner)
    # An artifact with its tokenizer inside gets the raw text, so its own tokenizer is scored.
    artifact_inputs = [texts([example]) for example in examples] if takes_text else singles
    places = [f"example {index} (line {e.line})" for index, e in enumerate(examples, start=1)]
    artifact_logits, seconds = _run_timed(runner, artifact_inputs, output, places)
    progress("throughput")
    batch_starts = range(0, len(examples), batch_size)
    batches = [
        texts(examples[start : start + batch_size])
        if takes_text
        else encode(
            tokenizer, examples[start : start + batch_size], max_length, names, padding=True
        )
        for start in batch_starts
    ]
    batch_places = [_batch_place(examples, start, batch_size) for start in batch_starts]
    batched_logits, rate = _throughput(runner, batches, len(examples), output, batch_places)
    progress("reference")
    reference_logits = run_reference(loaded, singles, reference_threads)
    lengths = [single["input_ids"].shape[1] for single in singles]
    latency = Latency(
        batch1_median_ms=float(np.median(seconds) * 1e3),
        batch1_p90_ms=float(np.percentile(seconds, 90) * 1e3),
        median_tokens=float(np.median(lengths)),
        batch_size=batch_size,
        batch_sentences_per_s=rate,
        batch_padding=batch_padding(manifest),
    )
    padding_error = float(np.max(np.abs(batched_logits - artifact_logits)))
    return MeasuredOutputs(
        reference_logits, artifact_logits, latency, padding_error, precision, runtime_threads
    )


def _batch_place(examples: Sequence[Example], start: int, batch_size: int) -> str:
    """`the batch of examples 33-64 (lines 34-65)`: where a failed batch came from."""
    end = min(start + batch_size, len(examples))
    lines = f"{examples[start].line}-{examples[end - 1].line}"
    return f"the batch of examples {start + 1}-{end} (lines {lines})"


def _logits(outputs: Sequence[np.ndarray], index: int) -> np.ndarray:
    scores = np.asarray(outputs[index], dtype=np.float64)
    return scores.reshape(scores.shape[0], -1)


def _run(runner: Any, inputs: Mapping[str, Any], place: str) -> list[np.ndarray]:
    """`runner.run(inputs)`; the runtime's failure as one ArtifactError line naming the input."""
    from bertc.targets.loader import RuntimeFailure

    try:
        return runner.run(inputs)
    except RuntimeFailure as error:
        raise ArtifactError(f"the artifact's runtime failed on {place}: {error}") from error


def _run_timed(
    runner: Any, singles: Sequence[Mapping[str, Any]], output: int, places: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Each example alone; the first few runs again first, untimed, so warm-up is not measured.
    `places` names each example in an error."""
    for single, place in zip(singles[:WARMUP_RUNS], places, strict=False):
        _run(runner, single, place)
    logits, seconds = [], []
    for single, place in zip(singles, places, strict=True):
        start = time.perf_counter()
        outputs = _run(runner, single, place)
        seconds.append(time.perf_counter() - start)
        logits.append(_logits(outputs, output))
    return np.concatenate(logits), np.asarray(seconds)


def _throughput(
    runner: Any,
    batches: Sequence[Mapping[str, Any]],
    count: int,
    output: int,
    places: Sequence[str],
) -> tuple[np.ndarray, float]:
    """Sentences per second over the whole split in padded batches, after one warm-up batch."""
    _run(runner, batches[0], places[0])
    logits = []
    start = time.perf_counter()
    for batch, place in zip(batches, places, strict=True):
        logits.append(_logits(_run(runner, batch, place), output))
    elapsed = time.perf_counter() - start
    return np.concatenate(logits), count / elapsed
