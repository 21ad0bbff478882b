"""Tiny, seeded checkpoints and GLUE-layout data for tests/test_verify.py.

The classifier is trained for a moment on a synthetic sentiment task (a sentence is positive
when it holds more positive than negative words), so its logits have real margins: INT8 then
agrees with fp32 the way it does on a fine-tuned model, and a damaged copy measurably loses
accuracy. Everything is seeded, so the same test run gives the same numbers.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

POSITIVE = (
    "good",
    "great",
    "fine",
    "superb",
    "lovely",
    "warm",
    "witty",
    "charming",
    "bright",
    "brilliant",
    "gentle",
    "smart",
    "funny",
    "moving",
    "rich",
    "fresh",
)
NEGATIVE = (
    "bad",
    "dull",
    "awful",
    "poor",
    "bleak",
    "tedious",
    "flat",
    "weak",
    "boring",
    "stale",
    "messy",
    "grim",
    "cold",
    "clumsy",
    "empty",
    "silly",
)
NEUTRAL = (
    "the",
    "a",
    "film",
    "movie",
    "story",
    "plot",
    "actor",
    "scene",
    "is",
    "and",
    "it",
    "was",
    "of",
    "with",
    "this",
    "that",
    "very",
    "quite",
    "so",
    "too",
    "an",
    "its",
    "ending",
    "cast",
    "script",
    "music",
    ".",
    ",",
)
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def vocabulary() -> dict[str, int]:
    """A WordPiece vocabulary of the special tokens and every synthetic word."""
    return {token: index for index, token in enumerate(SPECIAL + POSITIVE + NEGATIVE + NEUTRAL)}


def make_sentences(count: int, seed: int) -> list[tuple[str, int]]:
    """Sentences of 4-10 words with a strict majority of positive or negative words."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        positive, negative = rng.randint(0, 3), rng.randint(0, 3)
        if positive == negative:
            continue
        words = (
            [rng.choice(POSITIVE) for _ in range(positive)]
            + [rng.choice(NEGATIVE) for _ in range(negative)]
            + [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 5))]
        )
        rng.shuffle(words)
        rows.append((" ".join(words), int(positive > negative)))
    return rows


def write_sst2(
    root: Path,
    train_rows: int = 120,
    dev_rows: int = 60,
    seed: int = 1,
    dev_label_noise: float = 0.1,
) -> Path:
    """A glue_data root holding SST-2/train.tsv and SST-2/dev.tsv (`sentence<TAB>label`).

    A share of dev labels is flipped, so even a perfect model of the rule scores below 100%,
    as a real model does on a real dev set.
    """
    rng = random.Random(seed)
    for name, count, offset in (("train.tsv", train_rows, 0), ("dev.tsv", dev_rows, 1000)):
        rows = make_sentences(count, seed + offset)
        if name == "dev.tsv":
            rows = [
                (text, 1 - label if rng.random() < dev_label_noise else label)
                for text, label in rows
            ]
        write_tsv(
            root / "SST-2" / name,
            ["sentence", "label"],
            [[text, str(label)] for text, label in rows],
        )
    return root


def write_pairs(
    root: Path,
    folder: str,
    files: tuple[str, ...],
    label_column: str,
    labels: tuple[str, ...] | None,
    rows: int = 40,
    seed: int = 5,
) -> Path:
    """A sentence-pair task in glue_data layout (STS-B scores if `labels` is None, else classes)."""
    rng = random.Random(seed)
    for name in files:
        table = []
        for first, label in make_sentences(rows, seed + len(name)):
            second = rng.choice(make_sentences(5, rng.randint(0, 10**6)))[0]
            value = f"{label * 4.0 + rng.random():.3f}" if labels is None else rng.choice(labels)
            table.append([first, second, value])
        write_tsv(root / folder / name, ["sentence1", "sentence2", label_column], table)
    return root


def _tokenizer():
    from transformers import BertTokenizerFast

    # transformers 5 takes the vocabulary itself (`vocab=`); 4.x's `vocab_file=` is gone.
    return BertTokenizerFast(vocab=vocabulary(), do_lower_case=True)


def _config(vocab_size: int, num_labels: int):
    from transformers import BertConfig

    labels = {0: "negative", 1: "positive"} if num_labels == 2 else {0: "LABEL_0"}
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        id2label=labels,
        label2id={name: index for index, name in labels.items()},
        problem_type="regression" if num_labels == 1 else "single_label_classification",
    )


def _train(
    model, tokenizer, rows: list[tuple[str, int]], steps: int, seed: int, regression: bool
) -> None:
    """A few hundred AdamW steps: enough for confident margins on the synthetic task."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    rng = random.Random(seed)
    for _ in range(steps):
        batch = rng.sample(rows, 16)
        encoded = tokenizer([text for text, _ in batch], padding=True, return_tensors="pt")
        targets = torch.tensor(
            [label for _, label in batch], dtype=torch.float32 if regression else torch.long
        )
        loss = model(**encoded, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def make_classifier(directory: Path, seed: int = 0, steps: int = 150, num_labels: int = 2) -> Path:
    """A trained tiny BertForSequenceClassification (2 labels, or 1 for regression) + tokenizer."""
    from transformers import BertForSequenceClassification

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    model = BertForSequenceClassification(_config(len(tokenizer.get_vocab()), num_labels))
    rows = make_sentences(400, seed + 7)
    if num_labels == 1:
        rows = [(text, float(label) * 5.0) for text, label in rows]
    _train(model, tokenizer, rows, steps, seed, regression=num_labels == 1)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def make_encoder(directory: Path, seed: int = 0) -> Path:
    """An untrained tiny BertModel (no task head) + tokenizer."""
    from transformers import BertModel

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    model = BertModel(_config(len(tokenizer.get_vocab()), 2), add_pooling_layer=False)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def make_damaged_copy(source: Path, directory: Path, noise: float = 0.5, seed: int = 3) -> Path:
    """The checkpoint with Gaussian noise on every weight: a model that really lost accuracy."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(source))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * noise)
    model.save_pretrained(str(directory), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(directory))
    return directory


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A GLUE-layout TSV with a header line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in place (the middle one unless told), as silent corruption would."""
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))
