"""Seeded random BERT checkpoints and glue_data folders, built in-test (no network, no assets).

`make_checkpoint` writes a Hugging Face checkpoint directory (config.json, weights, tokenizer)
from a `BertConfig`; the `REAL_CONFIGS` table holds the exact shapes of the models bertc targets,
so a test compiles a model of the real size with random weights. TinyBERT's checkpoint is written
the way Huawei's is: a config without `model_type`/`architectures`, `bert.`-prefixed weights and
the distillation-only `fit_denses` projections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Common lowercase words (and those of the parity and data sentences), so real text tokenizes.
_WORD_TEXT = """
    the a an and or but if of to in on at by for with from as is are was were be been being it
    its it's this that these those there here he she they we you i me my your our their his her
    them us not no yes very so too quite really just only also even still again ever never always
    often sometimes more most less least much many few some any all each every one two three
    first last new old good great fine bad awful poor dull best worst better worse well little big
    long short high low full empty rich warm cold bright dark funny witty smart clever charming
    lovely gorgeous seductive moving affecting touching bleak desperate tedious routine boring
    brilliant gentle fresh stale silly messy grim clumsy flat weak strong rare beautiful ugly sad
    happy movie movies film films story plot actor actors cast scene scenes script music ending
    director journey kind friends heads season warmth wit time times people man woman world life
    day year way thing things work hour minutes fun love heart mind face eyes house city home
    make makes made see seen seeing watch want wants like likes know think feel feels look looks
    give gives take takes come comes go goes get gets tell find found play plays talk talking
    singing sing sang seems become becomes keep leave worth have has had do does did can could
    will would should may might must what who which when where why how than then because while
    after before about over under into out up down off through between without within again
    yet unflinchingly strictly sometimes ok paris far away pages page"""
WORDS = tuple(_WORD_TEXT.split())
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz0123456789")
PUNCTUATION = tuple(".,;:!?'\"()-/&")
# Every subword continuation of a single character, so any lowercase word has a WordPiece split.
CONTINUATIONS = tuple(f"##{char}" for char in LETTERS)


def small_vocabulary() -> list[str]:
    """Special tokens, words, characters and their continuations, without repeats."""
    tokens: list[str] = []
    for token in (*SPECIAL_TOKENS, *WORDS, *LETTERS, *PUNCTUATION, *CONTINUATIONS):
        if token not in tokens:
            tokens.append(token)
    return tokens


def vocabulary(size: int | None = None) -> list[str]:
    """The small vocabulary, padded with `[unused{i}]` entries to `size` lines when given."""
    tokens = small_vocabulary()
    if size is None:
        return tokens
    if size < len(tokens):
        raise ValueError(f"vocab_size {size} is smaller than the test vocabulary ({len(tokens)})")
    return tokens + [f"[unused{index}]" for index in range(size - len(tokens))]


# Shapes of the real checkpoints (config.json of each hub repo), with random weights in tests.
_BERT_COMMON: dict[str, Any] = {
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
}
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    # google/bert_uncased_L-2_H-128_A-2
    "bert-tiny": {
        **_BERT_COMMON,
        "num_hidden_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 2,
        "intermediate_size": 512,
    },
    # google/bert_uncased_L-4_H-256_A-4
    "bert-mini": {
        **_BERT_COMMON,
        "num_hidden_layers": 4,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    # huawei-noah/TinyBERT_General_4L_312D
    "tinybert-4l": {
        **_BERT_COMMON,
        "num_hidden_layers": 4,
        "hidden_size": 312,
        "num_attention_heads": 12,
        "intermediate_size": 1200,
    },
    # Intel/bert-base-uncased-sparse-1_2 (bert-base shape)
    "bert-base-sparse-1_2": {
        **_BERT_COMMON,
        "num_hidden_layers": 12,
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}
HUB_IDS = {
    "bert-tiny": "google/bert_uncased_L-2_H-128_A-2",
    "bert-mini": "google/bert_uncased_L-4_H-256_A-4",
    "tinybert-4l": "huawei-noah/TinyBERT_General_4L_312D",
    "bert-base-sparse-1_2": "Intel/bert-base-uncased-sparse-1_2",
}
# How make_checkpoint writes each real model: its head and checkpoint quirks.
REAL_CHECKPOINT_OPTIONS: dict[str, dict[str, Any]] = {
    "bert-tiny": {"head": "classifier"},
    "bert-mini": {"head": "classifier"},
    "tinybert-4l": {"head": "encoder", "fit_denses": True},
    "bert-base-sparse-1_2": {"head": "encoder", "masked_lm": True, "sparse_1_2": True},
}

# A few-layer BERT small enough to compile in seconds; the default of make_checkpoint.
TINY_CONFIG: dict[str, Any] = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
}
TEACHER_HIDDEN_SIZE = 768  # TinyBERT's fit_denses project the student's width to bert-base's
SST2_LABELS = {0: "negative", 1: "positive"}


def make_checkpoint(
    tmp_dir: Path,
    config_overrides: dict[str, Any] | None = None,
    head: str = "classifier",
    seed: int = 0,
    safetensors: bool = True,
    fit_denses: bool = False,
    drop_pooler: bool = False,
    sparse_1_2: bool = False,
    fp16: bool = False,
    masked_lm: bool = False,
    train_steps: int = 0,
    labels: dict[int, str] | None = None,
    query_outlier: tuple[int, float, float] | None = None,
) -> Path:
    """Write a seeded random BERT checkpoint directory and return it.

    head: "classifier" (2 SST-2 labels), "multi_label" (a sigmoid per label), "regression"
    (STS-B, num_labels=1) or "encoder". labels: the classifier's id2label (default SST-2's).
    fit_denses: TinyBERT layout (encoder only). masked_lm: save as BertForMaskedLM (encoder only).
    drop_pooler: leave the pooler out of the weights (a classifier then lacks weights it needs).
    sparse_1_2: zero the smaller of each consecutive input pair of every encoder Linear weight.
    train_steps: fit a classifier to the SST-2 rows for this many steps, so its logits vary with
    the sentence and have margins (a random head predicts one class for every input).
    query_outlier: (layer, value, sharpen): after training, plant an outlier channel in that layer's
    query (`plant_query_outlier`): its attention-scores MatMul cannot run accurately in INT8.
    """
    from transformers import BertConfig

    directory = Path(tmp_dir)
    directory.mkdir(parents=True, exist_ok=True)
    overrides = dict(config_overrides or {})
    tokens = vocabulary(overrides.get("vocab_size"))
    settings = {**TINY_CONFIG, **overrides, "vocab_size": len(tokens)}
    if head in ("classifier", "multi_label"):
        names = dict(labels or SST2_LABELS)
        settings.update(
            num_labels=len(names),
            id2label=names,
            label2id={name: index for index, name in names.items()},
            problem_type="single_label_classification"
            if head == "classifier"
            else "multi_label_classification",
        )
    elif head == "regression":
        settings.update(num_labels=1, problem_type="regression")
    elif head != "encoder":
        raise ValueError(f"unknown head {head!r}")
    config = BertConfig(**settings)
    torch.manual_seed(seed)
    model = _build_model(config, head, masked_lm, keep_pooler=not drop_pooler or head != "encoder")
    _perturb_biases_and_norms(model, seed)
    if train_steps:
        write_tokenizer(directory, tokens)
        _train_classifier(model, directory, train_steps, seed)
    if query_outlier is not None:
        plant_query_outlier(model, *query_outlier)
    if sparse_1_2:
        prune_1_2(model)
    if fp16:
        model = model.half()
    if fit_denses:
        _save_tinybert(model, config, directory, seed)
    else:
        _save_transformers(model, directory, safetensors, drop_pooler)
    write_tokenizer(directory, tokens, tokenizer_json=not fit_denses)
    return directory


def _build_model(config, head: str, masked_lm: bool, keep_pooler: bool) -> torch.nn.Module:
    from transformers import BertForMaskedLM, BertForSequenceClassification, BertModel

    if head == "encoder":
        model = BertForMaskedLM(config) if masked_lm else BertModel(config, keep_pooler)
    else:
        model = BertForSequenceClassification(config)
    return model.eval()


def _perturb_biases_and_norms(model: torch.nn.Module, seed: int) -> None:
    """Random init leaves biases at 0 and LayerNorm at 1; trained weights do not, and a compiler
    that dropped or mis-scaled them would go unnoticed on zeros and ones."""
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if name.endswith(".bias") or "LayerNorm" in name:
                noise = torch.randn(parameter.shape, generator=generator) * 0.02
                parameter.add_(noise.to(parameter.dtype))


def _train_classifier(model: torch.nn.Module, directory: Path, steps: int, seed: int) -> None:
    """A few seeded AdamW steps on the SST-2 rows."""
    import random

    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(directory))
    rows = sst2_rows()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, 16)
        encoded = tokenizer([text for text, _ in batch], padding=True, return_tensors="pt")
        labels = torch.tensor([label for _, label in batch])
        if model.config.num_labels == 1:
            labels = labels.float() * 5.0
        loss = model(**encoded, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def plant_query_outlier(
    model: torch.nn.Module, layer: int, value: float, sharpen: float = 1.0, channel: int = 0
) -> None:
    """Give encoder layer `layer`'s query projection a constant `value` in channel `channel`
    and zero that channel of the key projection: the attention scores (Q·Kᵀ) and so the fp32
    function are unchanged, but the scores MatMul's query input holds one channel far larger
    than the rest, which its per-tensor 8-bit scale cannot represent alongside them (a MatMul
    of two activations: SmoothQuant, which absorbs a channel outlier into the weights of a
    Linear, has no weight to move it into). sharpen: scale the query first (sharper
    attention, so that the layer's attention pattern matters to the output)."""
    encoder = model.bert.encoder if hasattr(model, "bert") else model.encoder
    attention = encoder.layer[layer].attention.self
    with torch.no_grad():
        attention.query.weight *= sharpen
        attention.query.bias *= sharpen
        attention.query.weight[channel] = 0.0
        attention.query.bias[channel] = value
        attention.key.weight[channel] = 0.0
        attention.key.bias[channel] = 0.0


def prune_1_2(model: torch.nn.Module) -> None:
    """1:2 semi-structured sparsity: in each consecutive pair along the input dimension of every
    encoder Linear weight, keep the larger magnitude and zero the other (Intel's sparse-1_2)."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".encoder.layer." in f".{name}":
                weight = module.weight
                pairs = weight.reshape(weight.shape[0], -1, 2)
                keep_first = pairs[..., 0].abs() >= pairs[..., 1].abs()
                mask = torch.stack((keep_first, ~keep_first), dim=-1)
                weight.copy_((pairs * mask).reshape(weight.shape))


def _save_transformers(
    model: torch.nn.Module, directory: Path, safetensors: bool, drop_pooler: bool
) -> None:
    """save_pretrained (safetensors), or the legacy pickle `pytorch_model.bin`."""
    model.save_pretrained(str(directory))
    if drop_pooler:
        _rewrite_safetensors(directory / "model.safetensors", drop_prefix="bert.pooler.")
    if not safetensors:
        from safetensors.torch import load_file

        weights_path = directory / "model.safetensors"
        state = load_file(str(weights_path))
        torch.save(state, directory / "pytorch_model.bin")
        weights_path.unlink()


def _rewrite_safetensors(path: Path, drop_prefix: str) -> None:
    from safetensors.torch import load_file, save_file

    state = {name: tensor for name, tensor in load_file(str(path)).items()}
    kept = {name: tensor for name, tensor in state.items() if not name.startswith(drop_prefix)}
    save_file(kept, str(path), metadata={"format": "pt"})


def _save_tinybert(model: torch.nn.Module, config, directory: Path, seed: int) -> None:
    """Huawei's layout: config without model_type or architectures, `bert.` weights, fit_denses."""
    from safetensors.torch import save_file

    state = {f"bert.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed + 1)
    dtype = next(model.parameters()).dtype
    for index in range(config.num_hidden_layers + 1):
        weight = torch.randn(TEACHER_HIDDEN_SIZE, config.hidden_size, generator=generator) * 0.02
        state[f"fit_denses.{index}.weight"] = weight.to(dtype)
        state[f"fit_denses.{index}.bias"] = torch.zeros(TEACHER_HIDDEN_SIZE, dtype=dtype)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    # The keys of TinyBERT_General_4L_312D's config.json: no model_type, no architectures.
    original = {
        "attention_probs_dropout_prob": 0.1,
        "cell": {},
        "emb_size": config.hidden_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": config.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_position_embeddings,
        "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "pre_trained": "",
        "structure": [],
        "training": "",
        "type_vocab_size": config.type_vocab_size,
        "vocab_size": config.vocab_size,
    }
    (directory / "config.json").write_text(json.dumps(original, indent=2) + "\n", encoding="utf-8")


def write_tokenizer(directory: Path, tokens: list[str], tokenizer_json: bool = True) -> None:
    """vocab.txt, and (unless TinyBERT-style) the fast tokenizer's files built from it."""
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if not tokenizer_json:
        return
    from transformers import BertTokenizerFast

    # transformers 5 dropped `vocab_file=`; from_pretrained on the folder reads vocab.txt.
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)
    tokenizer.save_pretrained(str(directory))


def make_real_checkpoint(tmp_dir: Path, name: str, seed: int = 0) -> Path:
    """A random-weight checkpoint of one of REAL_CONFIGS, with that model's checkpoint quirks."""
    return make_checkpoint(tmp_dir, REAL_CONFIGS[name], seed=seed, **REAL_CHECKPOINT_OPTIONS[name])


# Simple sentences with an obvious sentiment, for SST-2-layout calibration and dev data.
POSITIVE_SENTENCES = (
    "a gorgeous , witty , seductive movie .",
    "it 's a charming and often affecting journey .",
    "the cast is brilliant and the music is lovely .",
    "a warm and funny film .",
    "this movie is really good .",
    "the best film of the year .",
    "smart , clever and moving .",
    "a beautiful story with a great ending .",
    "the actors are fresh and the script is witty .",
    "i love this film .",
    "a rare and touching movie .",
    "well worth seeing with friends .",
    "the director made a great film .",
    "happy , bright and strong .",
    "it is a fine movie .",
    "the scenes are beautiful .",
    "a lovely little film about life .",
    "funny and smart from first to last .",
    "a gentle and warm story .",
    "the music makes the movie .",
)
NEGATIVE_SENTENCES = (
    "unflinchingly bleak and desperate",
    "the film is strictly routine .",
    "a sometimes tedious film .",
    "the plot is dull and the actors are weak .",
    "an awful movie .",
    "the worst film of the year .",
    "boring , silly and messy .",
    "a sad story with a bad ending .",
    "the script is stale and flat .",
    "i did not like this film .",
    "a clumsy and empty movie .",
    "not worth seeing .",
    "the director made a poor film .",
    "grim , cold and dark .",
    "it is a bad movie .",
    "the scenes are ugly .",
    "a long and tedious hour .",
    "dull from first to last .",
    "a weak and silly story .",
    "the music is awful .",
)
STSB_HEADER = (
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
    "score",
)


def sst2_rows() -> list[tuple[str, int]]:
    """40 labelled sentences, positives and negatives interleaved."""
    rows = []
    for positive, negative in zip(POSITIVE_SENTENCES, NEGATIVE_SENTENCES, strict=True):
        rows.extend([(positive, 1), (negative, 0)])
    return rows


def write_glue_data(root: Path) -> Path:
    """A tiny glue_data folder: SST-2 and STS-B train.tsv/dev.tsv in the classic layout."""
    root = Path(root)
    rows = sst2_rows()
    for split in ("train", "dev"):
        _write_tsv(
            root / "SST-2" / f"{split}.tsv",
            ("sentence", "label"),
            [(text, str(label)) for text, label in rows],
        )
    pairs = []
    for index, (first, second) in enumerate(
        zip(POSITIVE_SENTENCES, NEGATIVE_SENTENCES, strict=True)
    ):
        score = f"{(index % 6) * 0.8:.3f}"
        pairs.append(
            (
                str(index),
                "main-captions",
                "MSRvid",
                "2012test",
                f"{index:04d}",
                "none",
                "none",
                first,
                second,
                score,
            )
        )
    for split in ("train", "dev"):
        _write_tsv(root / "STS-B" / f"{split}.tsv", STSB_HEADER, pairs)
    return root


def write_budget_glue_data(root: Path, train_rows: int = 320) -> Path:
    """A glue_data folder whose SST-2 train split is large enough for the accuracy-budget
    search (the calibration sample plus a held-out slice of at least 200): `train_rows`
    sentences made by joining two of the tiny set's sentences (the label is the first one's),
    and the tiny set as dev."""
    root = Path(root)
    rows = sst2_rows()
    train = [
        (f"{rows[i % len(rows)][0]} {rows[(i * 7 + 3) % len(rows)][0]}", rows[i % len(rows)][1])
        for i in range(train_rows)
    ]
    _write_tsv(
        root / "SST-2" / "train.tsv",
        ("sentence", "label"),
        [(text, str(label)) for text, label in train],
    )
    _write_tsv(
        root / "SST-2" / "dev.tsv",
        ("sentence", "label"),
        [(text, str(label)) for text, label in rows],
    )
    return root


def _write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_sst2_dev(root: Path) -> list[tuple[str, int]]:
    """The dev rows written by write_glue_data, for checks that run the artifact."""
    lines = (Path(root) / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [(text, int(label)) for text, label in (line.split("\t") for line in lines)]


def write_hub_cache(cache_dir: Path, hub_id: str, checkpoint: Path) -> Path:
    """Lay `checkpoint` out as huggingface_hub's cache does (blobs, a snapshot of relative
    symlinks, refs/main holding the commit hash) and return the snapshot directory."""
    import hashlib
    import os
    import shutil

    repo = Path(cache_dir) / ("models--" + hub_id.replace("/", "--"))
    commit = hashlib.sha1(hub_id.encode("utf-8")).hexdigest()  # 40 hex, like a git commit
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(checkpoint).iterdir()):
        blob_name = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / blob_name
        if not blob.exists():
            shutil.copyfile(path, blob)
        os.symlink(os.path.join("..", "..", "blobs", blob_name), snapshot / path.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def corrupt_safetensors_header(path: Path) -> None:
    """Overwrite the start of the JSON header: the 8-byte length is intact, the JSON is not."""
    data = bytearray(Path(path).read_bytes())
    data[8:24] = b"\x00not json at all"
    Path(path).write_bytes(bytes(data))


def truncate_file(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut a file short, as an interrupted download would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction)])


def make_fragile_classifier(directory: Path, glue_dir: Path, swap_labels: bool = False) -> Path:
    """An untrained 2-layer SST-2 classifier whose decision boundary sits at the median fp32
    margin of `glue_dir`'s train split: about half its examples lie within INT8's noise of the
    boundary, so no INT8 candidate keeps every class. `swap_labels`: the same function with its
    two output rows swapped and `id2label {0: positive, 1: negative}` (the other label order).
    """
    import numpy as np
    import torch
    from bertc.calibration import get_task, load_examples
    from bertc.compiler.export import encode
    from bertc.compiler.loading import load_model
    from transformers import BertForSequenceClassification

    directory = make_checkpoint(Path(directory), seed=3)
    model = BertForSequenceClassification.from_pretrained(str(directory)).eval()
    loaded = load_model(str(directory))
    texts = [e.text_a for e in load_examples(get_task("sst2"), "train", glue_dir)]
    margins = []
    with torch.no_grad():
        for text in texts:
            batch = encode(loaded, [text], padding_to=None)
            logits = model(**{name: torch.from_numpy(batch[name]) for name in batch}).logits
            margins.append(float(logits[0, 1] - logits[0, 0]))
        model.classifier.bias[1] -= float(np.median(margins))
        if swap_labels:
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
            model.config.id2label = {0: "positive", 1: "negative"}
            model.config.label2id = {"positive": 0, "negative": 1}
    model.save_pretrained(str(directory))
    return directory
