"""Load a BERT checkpoint (a cached hub id, or a directory) into an export-ready module.

The loader refuses, with one clear line, anything it cannot compile faithfully: a non-BERT
architecture, missing or corrupt files, and pickle-only weights without an explicit opt-in
(unpickling runs arbitrary code).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bertc.compiler.contract import benign_unused_reasons, unused_weight_violation
from bertc.compiler.core.errors import (
    ModelFileError,
    ModelNotFoundError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.sparsity import SparsityReport, analyse_module
from bertc.compiler.families import ModelFamily, check_supported, detect_family
from bertc.compiler.options import DEFAULT_MAX_SEQUENCE_LENGTH, sequence_length
from safetensors import SafetensorError

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")

HEAD_CLASSIFIER = "classifier"
HEAD_REGRESSION = "regression"
HEAD_ENCODER = "encoder"

# safetensors' names of the half-precision dtypes that are upcast to fp32 on loading.
HALF_DTYPES = {"F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class WeightFile:
    """One weights file of the source checkpoint, with its hash for provenance."""

    name: str
    bytes: int
    sha256: str
    dtype: str


@dataclass(frozen=True)
class LoadedModel:
    """What the export stage needs: an fp32 eval-mode module and everything the manifest records."""

    source: str
    directory: Path
    family: type[ModelFamily]
    head: str
    config: dict[str, Any]
    module: torch.nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    tokenizer: Any
    label_map: dict[int, str] | None
    weight_files: tuple[WeightFile, ...]
    max_sequence_length: int
    notes: tuple[str, ...]
    sparsity: SparsityReport


class ClassifierForExport(torch.nn.Module):
    """Returns logits only, so the ONNX graph has exactly one named output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D102
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits


class EncoderForExport(torch.nn.Module):
    """Returns the last hidden state and a mask-aware mean-pooled sentence embedding.

    Mean pooling over real tokens is what sentence encoders (MiniLM, sentence-transformers) use;
    the pooler's tanh([CLS]) is a pre-training artefact and is absent from some checkpoints.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D102
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1.0)
        return hidden, summed / counts


def resolve_source(source: str) -> Path:
    """A directory as given, or the local cache snapshot of a hub id (never the network)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelFileError(f"{source} is a file; pass the checkpoint directory that holds it")
    if not _looks_like_hub_id(source):
        raise ModelNotFoundError(f"no such model directory: {source}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache_dir = hub_cache_dir()
    try:
        return Path(snapshot_download(repo_id=source, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"{source} is neither a directory nor in the local Hugging Face cache ({cache_dir}); "
            "download it where there is network or pass a checkpoint directory"
        ) from error


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment names it now: huggingface_hub reads
    HF_HUB_CACHE / HF_HOME once, at import, so a later change would otherwise be ignored."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _looks_like_hub_id(source: str) -> bool:
    """`org/name` or `name`, without path syntax that only a filesystem path would use."""
    if source.startswith((".", "/", "~")) or "\\" in source:
        return False
    parts = source.split("/")
    return 1 <= len(parts) <= 2 and all(parts)


def read_config(directory: Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict; a missing or corrupt file is one clear error."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelFileError(f"{directory} has no config.json: not a Hugging Face checkpoint")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ModelFileError(f"{config_path} does not hold a JSON object")
    return config


def find_weight_files(directory: Path, allow_pickle: bool) -> tuple[Path, ...]:
    """Safetensors first; pickle weights only with an explicit opt-in."""
    for name in SAFETENSORS_FILES:
        if (directory / name).is_file():
            return _expand_index(directory, name)
    for name in PICKLE_FILES:
        if (directory / name).is_file():
            if not allow_pickle:
                raise UnsafeCheckpointError(
                    f"{directory} has only pickle weights ({name}), which can run arbitrary code "
                    "when loaded; convert it to safetensors or pass --allow-pickle if you trust it"
                )
            return _expand_index(directory, name)
    raise ModelFileError(
        f"{directory} has no weights (expected model.safetensors or, with --allow-pickle, "
        "pytorch_model.bin)"
    )


def _expand_index(directory: Path, name: str) -> tuple[Path, ...]:
    """The shard files of a sharded checkpoint, or the single file.

    Each shard the index's `weight_map` names must be a plain file name in the checkpoint
    directory (no folder, `..` or absolute path): ModelFileError otherwise, so an index cannot
    make bertc read weights from elsewhere. Shards may be symbolic links (the Hugging Face cache
    links them into its blobs folder); the index's names are what is checked.
    """
    path = directory / name
    if not name.endswith(".index.json"):
        return (path,)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ModelFileError(f"{path} is not a valid shard index: {error}") from error
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(isinstance(shard, str) for shard in weight_map.values())
    ):
        raise ModelFileError(
            f"{path} is not a valid shard index: its weight_map must map tensor names to shard "
            f"file names (it is a {type(weight_map).__name__})"
        )
    outside = sorted(shard for shard in set(weight_map.values()) if not _plain_file_name(shard))
    if outside:
        raise ModelFileError(
            f"{path} names weight shards outside the checkpoint directory: {outside[:3]}"
        )
    shards = tuple(directory / shard for shard in sorted(set(weight_map.values())))
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise ModelFileError(f"{directory} lacks weight shards named by {name}: {missing}")
    return shards


def _plain_file_name(name: str) -> bool:
    """A file name with no folder part: not empty, `.`, `..`, and no `/`, `\\`, `:` or NUL."""
    return name not in ("", ".", "..") and not any(mark in name for mark in "/\\:\0")


def read_tensor_names_and_dtype(weight_file: Path) -> tuple[tuple[str, ...], str]:
    """The tensor names and the dominant float dtype, opening the file only as far as its header."""
    if weight_file.suffix != ".safetensors":
        return (), "unknown (pickle)"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weight_file), framework="pt") as handle:
            names = tuple(sorted(handle.keys()))
            dtypes = sorted({str(handle.get_slice(name).get_dtype()) for name in names})
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{weight_file} is not a readable safetensors file: {error}"
        ) from error
    return names, ",".join(dtypes)


def head_kind(config: dict[str, Any]) -> str:
    """Classifier, regression or bare encoder, from the architectures and problem type."""
    architectures = config.get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        return HEAD_ENCODER
    labels = config.get("id2label") or {}
    if config.get("problem_type") == "regression" or config.get("num_labels", len(labels)) == 1:
        return HEAD_REGRESSION
    return HEAD_CLASSIFIER


@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoint that passed every check that needs no weights loaded: a BERT config of a
    known family and readable weight files (pickle only with the opt-in)."""

    directory: Path
    config: dict[str, Any]
    weight_paths: tuple[Path, ...]
    weight_dtypes: tuple[str, ...]  # each weight file's float dtype(s), as read from its header
    tensor_names: tuple[str, ...]
    family: type[ModelFamily]
    head: str


def check_checkpoint(source: str, allow_pickle: bool = False) -> CheckedCheckpoint:
    """Resolve the source and check it, refusing with one line before any weights are loaded."""
    directory = resolve_source(source)
    config = read_config(directory)
    check_supported(config)
    weight_paths = find_weight_files(directory, allow_pickle)
    tensor_names: list[str] = []
    dtypes: list[str] = []
    for path in weight_paths:
        names, dtype = read_tensor_names_and_dtype(path)
        tensor_names.extend(names)
        dtypes.append(dtype)
    return CheckedCheckpoint(
        directory=directory,
        config=config,
        weight_paths=weight_paths,
        weight_dtypes=tuple(dtypes),
        tensor_names=tuple(tensor_names),
        family=detect_family(config, tensor_names),
        head=head_kind(config),
    )


def load_model(
    source: str,
    *,
    allow_pickle: bool = False,
    max_sequence_length: int | None = None,
) -> LoadedModel:
    """Resolve, check and load a checkpoint as fp32 (fp16-stored weights are upcast)."""
    checkpoint = check_checkpoint(source, allow_pickle)
    directory, config = checkpoint.directory, checkpoint.config
    family, head, tensor_names = checkpoint.family, checkpoint.head, checkpoint.tensor_names
    weight_files = [
        WeightFile(path.name, path.stat().st_size, sha256_file(path), dtype)
        for path, dtype in zip(checkpoint.weight_paths, checkpoint.weight_dtypes, strict=True)
    ]
    tokenizer = load_tokenizer(directory, config)
    check_tokenizer_fits(tokenizer, config)
    position_limit = config.get("max_position_embeddings", DEFAULT_POSITION_EMBEDDINGS)
    max_length, length_notes = fit_max_sequence_length(max_sequence_length, position_limit)
    model, load_notes = _instantiate(directory, config, family, head, allow_pickle)
    notes = list(family.notes_for(tensor_names)) + load_notes + length_notes
    stored = sorted(
        {
            HALF_DTYPES[dtype]
            for weight in weight_files
            for dtype in weight.dtype.split(",")
            if dtype in HALF_DTYPES
        }
    )
    if stored:
        notes.append(
            f"weights are stored as {' and '.join(stored)}; they were upcast and compiled from fp32"
        )
    wrapper = EncoderForExport(model) if head == HEAD_ENCODER else ClassifierForExport(model)
    wrapper.eval()
    outputs = ("last_hidden_state", "sentence_embedding") if head == HEAD_ENCODER else ("logits",)
    return LoadedModel(
        source=source,
        directory=directory,
        family=family,
        head=head,
        config=model.config.to_dict(),
        module=wrapper,
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        output_names=outputs,
        tokenizer=tokenizer,
        # transformers 5 writes no id2label for default names (LABEL_0, LABEL_1): read them
        # from the instantiated config, which has one per output.
        label_map=(_label_map(config) or _label_map(model.config.to_dict()))
        if head == HEAD_CLASSIFIER
        else None,
        weight_files=tuple(weight_files),
        max_sequence_length=max_length,
        notes=tuple(notes),
        sparsity=analyse_module(wrapper),
    )


def _label_map(config: dict[str, Any]) -> dict[int, str]:
    return {
        int(index): str(name)
        for index, name in sorted((config.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))
    }


def _instantiate(
    directory: Path,
    config: dict[str, Any],
    family: type[ModelFamily],
    head: str,
    allow_pickle: bool,
) -> tuple[torch.nn.Module, list[str]]:
    """The export module: a BertModel without pooler for an encoder, else the classifier."""
    from transformers import BertForSequenceClassification, BertModel

    if head == HEAD_ENCODER:
        cls, options = BertModel, {"add_pooling_layer": False}
    else:
        cls, options = BertForSequenceClassification, {}
    model, _, unexpected = load_weights(
        cls, directory, family.normalise_config(config), allow_pickle, **options
    )
    refusal = unused_weight_violation(unexpected, cls.__name__)
    if refusal:
        raise UnsupportedModelError(refusal)
    notes = []
    ignored = [name for name in unexpected if not family.is_known_extra(name)]
    if ignored:
        notes.append(
            f"ignored {len(ignored)} weights the compiled model does not use "
            f"({'; '.join(benign_unused_reasons(ignored))}; e.g. {ignored[0]})"
        )
    return model.eval(), notes


def load_weights(
    cls: type,
    directory: Path,
    settings: dict[str, Any],
    allow_pickle: bool,
    *,
    fresh_prefixes: tuple[str, ...] = (),
    **options: Any,
) -> tuple[torch.nn.Module, list[str], list[str]]:
    """`cls.from_pretrained` in fp32 with eager attention (plain MatMul/Softmax in ONNX).

    Returns (model, missing weight names, unexpected weight names), each sorted. A missing
    weight is an error unless its name starts with one of `fresh_prefixes` (a new task head).
    """
    from transformers import BertConfig

    bert_config = BertConfig.from_dict(settings)
    bert_config._attn_implementation = "eager"
    kwargs: dict[str, Any] = {
        "config": bert_config,
        "dtype": torch.float32,
        "output_loading_info": True,
        **options,
    }
    if not allow_pickle:
        kwargs["use_safetensors"] = True
    transformers_logger = logging.getLogger("transformers")
    previous_level = transformers_logger.level
    transformers_logger.setLevel(logging.ERROR)
    try:
        model, info = cls.from_pretrained(str(directory), **kwargs)
    except pickle.UnpicklingError as error:
        raise refused_pickle(directory, error) from error
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:
        raise ModelFileError(
            f"could not load the weights in {directory}: {_first_line(error)}"
        ) from error
    finally:
        transformers_logger.setLevel(previous_level)
    missing = sorted(info.get("missing_keys", []))
    lacking = [name for name in missing if not name.startswith(fresh_prefixes)]
    if lacking:
        raise ModelFileError(
            f"{directory} lacks {len(lacking)} weights the config needs (e.g. {lacking[0]}): "
            "truncated or not a checkpoint of this architecture"
        )
    return model, missing, sorted(info.get("unexpected_keys", []))


def refused_pickle(where: Path, error: BaseException) -> UnsafeCheckpointError:
    """Exit 6 for a pickle that safe loading (`torch.load(weights_only=True)`) refused: it holds
    more than tensors (a crafted one runs code). torch's own text suggests turning safe loading
    off; this message says what was refused and never that."""
    reason = _unpickler_reason(str(error)) or type(error).__name__
    return UnsafeCheckpointError(
        f"{where}: the pickle weights hold more than tensors and safe loading refused them "
        f"({reason}); such a file can run code when unpickled, so bertc will not load it: get "
        "the checkpoint as safetensors from a source you trust"
    )


def _unpickler_reason(text: str) -> str:
    """What torch's weights-only unpickler refused, without its advice around it (which
    suggests `weights_only=False`)."""
    text = text.split("trusted source.", 1)[-1].split("Check the documentation", 1)[0]
    text = text.split("WeightsUnpickler error:", 1)[-1]
    return " ".join(text.split()).rstrip(".")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


DEFAULT_POSITION_EMBEDDINGS = 512  # transformers' BertConfig default


def fit_max_sequence_length(requested: int | None, position_limit: int) -> tuple[int, list[str]]:
    """The artifact's maximum length in tokens and a note: `requested` (None: the default, cut
    to the position table with a note). An explicit length past the table is a usage error
    (exit 2, `options.sequence_length`): positions past it have no embedding."""
    length = sequence_length(requested, position_limit)
    if requested is None and length < DEFAULT_MAX_SEQUENCE_LENGTH:
        return length, [
            f"maximum sequence length {length} (the model's max_position_embeddings), "
            f"not the default {DEFAULT_MAX_SEQUENCE_LENGTH}"
        ]
    return length, []


def model_inputs(encoded: Any, input_names: tuple[str, ...]) -> dict[str, Any]:
    """A tokenizer's output as int64 numpy arrays named as the graph's inputs; zeros for
    `token_type_ids` when the tokenizer gives none (what BertModel uses in their absence)."""
    import numpy as np

    arrays = {
        name: np.asarray(encoded[name], dtype=np.int64) for name in input_names if name in encoded
    }
    if "token_type_ids" in input_names and "token_type_ids" not in arrays:
        arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    return {name: arrays[name] for name in input_names}


def tokenizer_input_names(tokenizer: Any) -> tuple[str, ...]:
    """The fields the tokenizer returns (`model_input_names`)."""
    return tuple(getattr(tokenizer, "model_input_names", ()) or ())


def tokenizer_violations(tokenizer: Any, config: dict[str, Any]) -> list[str]:
    """Each way the tokenizer's ids do not fit the model, one line each (empty: they fit): more
    tokens (added ones included) than `vocab_size`, or a BERT special token missing."""
    found = []
    vocab_size = config.get("vocab_size", 30522)
    size = len(tokenizer)
    if size > vocab_size:
        added = size - int(getattr(tokenizer, "vocab_size", size))
        found.append(
            f"the tokenizer has {size} tokens ({added} added) but config.vocab_size is "
            f"{vocab_size}: ids ≥ {vocab_size} have no embedding; resize the embeddings to the "
            "tokenizer (model.resize_token_embeddings) and save again"
        )
    missing = [
        name
        for name in ("cls_token", "sep_token", "pad_token", "unk_token")
        if getattr(tokenizer, f"{name}_id", None) is None
    ]
    if missing:
        found.append(
            f"the tokenizer has no {', '.join(missing)}: a BERT tokenizer needs [CLS], [SEP], "
            "[PAD] and [UNK]"
        )
    return found


def check_tokenizer_fits(tokenizer: Any, config: dict[str, Any]) -> None:
    """Refuse (UnsupportedModelError, exit 5) a tokenizer whose ids the model cannot embed."""
    found = tokenizer_violations(tokenizer, config)
    if found:
        raise UnsupportedModelError(found[0])


def check_segments_fit(tokenizer: Any, config: dict[str, Any], pair: bool) -> None:
    """Refuse (exit 5) a pair task on a model with one segment embedding, when the tokenizer
    gives the second text segment id 1 (PyTorch raises an IndexError there)."""
    segments = config.get("type_vocab_size", 2)
    if pair and segments < 2 and "token_type_ids" in tokenizer_input_names(tokenizer):
        raise UnsupportedModelError(
            f"a pair task needs two segment embeddings but config.type_vocab_size is {segments}: "
            "the second text's token_type_ids 1 has no embedding; compile it for a "
            "single-sentence task"
        )


def load_tokenizer(directory: Path, config: dict[str, Any]) -> Any:
    """The checkpoint's fast tokenizer; TinyBERT ships vocab.txt and no model_type."""
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFileError(f"{directory} has no tokenizer files (tokenizer.json or vocab.txt)")
    from transformers import AutoTokenizer, BertTokenizerFast

    try:
        if config.get("model_type"):
            return AutoTokenizer.from_pretrained(str(directory))
        return BertTokenizerFast.from_pretrained(str(directory))
    except (OSError, ValueError, TypeError) as error:
        raise ModelFileError(
            f"could not load the tokenizer in {directory}: {_first_line(error)}"
        ) from error
