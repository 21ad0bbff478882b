"""The tokenizer inside the artifact: its modes, and the parity gate against the HF tokenizer.

A target turns the checkpoint's Hugging Face tokenizer into a graph of its runtime (see
`targets/tokenizer_openvino.py`, `targets/tokenizer_onnx.py`); this module checks that graph
token by token against the HF tokenizer on the task's dev sentences (or a built-in set) plus a
hard set, before the artifact is written. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bertc.compiler.core.graph import InGraphTokenizer

# What a mismatch report names: enough to see the problem, not the whole dev set.
LISTED_MISMATCHES = 20
PARITY_FIELDS = ("input_ids", "token_type_ids", "attention_mask")


# Text pairs: (text_a, text_b or None).
TextPair = tuple[str, "str | None"]

# Sentences an English WordPiece tokenizer gets wrong first: accents and case, CJK, emoji,
# control and zero-width characters, odd whitespace, punctuation runs, long and empty inputs.
_HARD_SINGLES: tuple[str, ...] = (
    "",
    " ",
    "\t\n",
    "a",
    "Hello, World!",
    "HELLO world MiXeD CaSe",
    "café crème brûlée naïve façade",
    "Ünïcödé ÀCCENTS Ångström ØRESUND",
    "e\u0301 (e + combining acute) vs \u00e9",
    "Straße Œuvre ﬁnance ﬂoor",
    "日本語のテキストです",
    "中文句子,没有空格。",
    "한국어 문장입니다",
    "mixed 日本 and english 中文 words",
    "emoji 😀🎬🍿 and flags 🇫🇷 and zwj 👨‍👩‍👧",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "control \x00 \x07 \x1b[31m chars \x7f",
    "soft\u00adhyphen and nbsp\u00a0here",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "quotes “curly” ‘single’ «guillemets» — dashes – …",
    "numbers 3.14159 1,000,000 -42 1e-5 2026-11-25",
    "urls https://example.com/a?b=c&d=e and mail user@example.org",
    "!!!???...,,,;;;:::",
    "don't won't it's rock'n'roll",
    "[CLS] [SEP] [PAD] [MASK] [UNK] literal special tokens",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["word"] * 400),
    " ".join(f"token{index}" for index in range(200)),
    "Ελληνικά κείμενο и русский текст and עברית and العربية",
    "हिन्दी पाठ and ไทย",
)
_HARD_PAIRS: tuple[TextPair, ...] = (
    ("A man is playing a guitar.", "A man plays the guitar."),
    ("", "second only"),
    ("first only", ""),
    ("", ""),
    (" ".join(["long"] * 300), "short"),
    ("short", " ".join(["long"] * 300)),
    (" ".join(["left"] * 200), " ".join(["right"] * 200)),
    ("café 日本 😀", "ÀCCENTS\u200b zero width"),
)
# Used when the compile has no task data: plain English of the kind GLUE tasks hold.
BUILTIN_SINGLES: tuple[str, ...] = (
    "a gorgeous, witty, seductive movie.",
    "the movie is a desperate, tedious journey.",
    "it's a charming and often affecting journey.",
    "unflinchingly bleak and desperate",
    "The film's ending is strictly routine; the cast, however, is brilliant.",
    "I'd watch it again -- twice!",
    "What a waste of 2 hours (and $12).",
    "An old-fashioned, well-made thriller.",
)
BUILTIN_PAIRS: tuple[TextPair, ...] = (
    ("The cat sat on the mat.", "A cat was sitting on a mat."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare."),
    ("The company reported a loss.", "The company made a profit last year."),
)


def hard_set(pair: bool) -> list[TextPair]:
    """The hard sentences, as single texts and (for a pair task) as pairs too."""
    singles: list[TextPair] = [(text, None) for text in _HARD_SINGLES]
    if not pair:
        return singles
    return [(text, "and a second sentence.") for text, _ in singles] + list(_HARD_PAIRS)


def added_tokens(hf_tokenizer: Any) -> list[str]:
    """The tokenizer's added tokens beyond BERT's own specials ([CLS], [SEP], [PAD], [MASK],
    [UNK]): entity markers such as [E1] that `add_special_tokens` or `add_tokens` put in."""
    own = {
        getattr(hf_tokenizer, name, None)
        for name in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token")
    }
    decoder = getattr(hf_tokenizer, "added_tokens_decoder", None) or {}
    return [
        str(token)
        for _, token in sorted(decoder.items())
        if str(token) not in own and str(token).strip()
    ]


def added_token_set(hf_tokenizer: Any, pair: bool) -> list[TextPair]:
    """Sentences holding each added token alone, inside a word, beside punctuation, twice and
    (for a pair task) in the second text: a converter that does not know the token splits it
    into word pieces or maps it to [UNK], which the dev sentences never show."""
    tokens = added_tokens(hf_tokenizer)
    if not tokens:
        return []
    texts = []
    for token in tokens:
        texts += [
            token,
            f"the {token} film was good",
            f"inside{token}word and{token}",
            f"({token}), {token}. {token}!",
            f"{token}{token} twice",
        ]
    texts.append(" ".join(f"{token} word" for token in tokens))
    second = "and a second sentence."
    if not pair:
        return [(text, None) for text in texts]
    return [(text, second) for text in texts] + [(second, text) for text in texts]


def builtin_set(pair: bool) -> list[TextPair]:
    return list(BUILTIN_PAIRS) if pair else [(text, None) for text in BUILTIN_SINGLES]


@dataclass(frozen=True)
class TokenizerMismatch:
    set_name: str
    index: int
    text_a: str
    text_b: str | None
    # input_ids, token_type_ids, attention_mask, "length" (more ids than the artifact's maximum
    # length) or "error" (the graph raised)
    field: str
    expected: list[int]
    got: list[int] | list[str]


@dataclass(frozen=True)
class TokenizerParity:
    """In-graph token ids vs the HF tokenizer's, per sentence set."""

    checked: int
    mismatched: int
    sets: Mapping[str, int]
    mismatches: tuple[TokenizerMismatch, ...] = field(default_factory=tuple)
    # Examples whose in-graph ids ran past the maximum length: never waived (the encoder's
    # position table ends there), even with --allow-tokenizer-mismatch.
    over_length: int = 0

    @property
    def passed(self) -> bool:
        return self.mismatched == 0


def hf_encode(
    hf_tokenizer: Any, text_a: str, text_b: str | None, max_length: int
) -> dict[str, list[int]]:
    """What the compiled model was checked against: HF ids, truncated at the artifact's length."""
    encoded = hf_tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    ids = list(encoded["input_ids"])
    return {
        "input_ids": ids,
        "token_type_ids": list(encoded.get("token_type_ids") or [0] * len(ids)),
        "attention_mask": list(encoded.get("attention_mask") or [1] * len(ids)),
    }


def check_tokenizer_parity(
    hf_tokenizer: Any,
    in_graph: InGraphTokenizer,
    sentence_sets: Mapping[str, Sequence[TextPair]],
    max_length: int,
    fields: Sequence[str] = PARITY_FIELDS,
) -> TokenizerParity:
    """Every sentence through both tokenizers; each differing field of each sentence is counted."""
    checked = 0
    bad_examples = 0
    over_length = 0
    mismatches: list[TokenizerMismatch] = []
    for set_name, pairs in sentence_sets.items():
        for index, (text_a, text_b) in enumerate(pairs):
            checked += 1
            expected = hf_encode(hf_tokenizer, text_a, text_b, max_length)
            try:
                got = in_graph.encode(text_a, text_b)
            except Exception as error:  # a runtime that cannot take the input fails its parity
                got = {"error": str(error).strip().splitlines()[-1:] or [type(error).__name__]}
            too_long = "error" not in got and _length(got) > max_length
            over_length += too_long
            differing = (
                ["error"]
                if "error" in got
                else ["length"]
                if too_long
                else [
                    name
                    for name in fields
                    if name in got and np.asarray(got[name]).reshape(-1).tolist() != expected[name]
                ]
            )
            if differing:
                bad_examples += 1
                if len(mismatches) < LISTED_MISMATCHES:
                    name = differing[0]
                    mismatches.append(
                        TokenizerMismatch(
                            set_name,
                            index,
                            text_a,
                            text_b,
                            name,
                            expected.get(name, expected["input_ids"]),
                            got[name] if name == "error" else _ids(got.get(name, got["input_ids"])),
                        )
                    )
    sizes = {name: len(pairs) for name, pairs in sentence_sets.items()}
    return TokenizerParity(checked, bad_examples, sizes, tuple(mismatches), over_length)


def _length(got: Mapping[str, Any]) -> int:
    return int(np.asarray(got["input_ids"]).size)


def _ids(values: Any) -> list[int]:
    return np.asarray(values).reshape(-1).tolist()


def describe_mismatch(mismatch: TokenizerMismatch) -> str:
    """One line: which sentence, which field, where the ids first differ."""
    if mismatch.field == "length":
        text = f"{mismatch.text_a!r} / {mismatch.text_b!r}"
        return (
            f"{mismatch.set_name}[{mismatch.index}] {text[:80]}: {len(mismatch.got)} ids, more "
            f"than the maximum length (HF truncates to {len(mismatch.expected)})"
        )
    if mismatch.field == "error":
        text = f"{mismatch.text_a!r} / {mismatch.text_b!r}"
        return f"{mismatch.set_name}[{mismatch.index}] {text[:80]}: runtime error {mismatch.got}"
    first = next(
        (
            index
            for index, (a, b) in enumerate(zip(mismatch.expected, mismatch.got, strict=False))
            if a != b
        ),
        min(len(mismatch.expected), len(mismatch.got)),
    )
    text = mismatch.text_a if mismatch.text_b is None else f"{mismatch.text_a} / {mismatch.text_b}"
    return (
        f"{mismatch.set_name}[{mismatch.index}] {text[:60]!r}: {mismatch.field} differ at "
        f"position {first} (HF {mismatch.expected[first : first + 4]}, "
        f"in-graph {mismatch.got[first : first + 4]}; lengths {len(mismatch.expected)} vs "
        f"{len(mismatch.got)})"
    )
