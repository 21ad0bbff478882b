"""The checkpoint contract: every config.json attribute the export depends on, with the values
bertc compiles faithfully, checked over the config dict alone before any weight is read.

One table (`BERT_ATTRIBUTES`) serves every BERT family (BERT, TinyBERT, MiniLM: each family in
`families.py` names its table); a new family with other attributes gets its own table there.
Each row says which JSON types an attribute may have, the value `transformers.BertConfig` uses
when it is absent, and which values are supported. Everything else is refused (exit 5) naming the
attribute and the value: a wrong type or range, or a value the loaded transformers class would
silently not implement (transformers 5 dropped BERT's relative position embeddings; a config
that still asks for them would compile as absolute). Cross-attribute rules (hidden size a
multiple of the heads, label map against num_labels) follow the table. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bertc.compiler.core.activations import SUPPORTED_HIDDEN_ACTS
from bertc.compiler.core.manifest_schema import label_map_problem

# Activations transformers' BERT applies by name (ACT2FN) that every recipe recognises
# (`core/activations.py`); parametrised ones (prelu, xielu) would get random weights.
SUPPORTED_ACTIVATIONS = SUPPORTED_HIDDEN_ACTS
# Encoder checkpoints (compiled as a bare encoder) and sequence classifiers.
ENCODER_ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining")
CLASSIFIER_ARCHITECTURES = ("BertForSequenceClassification",)
SUPPORTED_ARCHITECTURES = ENCODER_ARCHITECTURES + CLASSIFIER_ARCHITECTURES
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
WEIGHT_DTYPES = ("float32", "float16", "bfloat16")

# Weights a checkpoint may hold that the compiled model does not use, and why that is harmless.
BENIGN_UNUSED_WEIGHTS: Mapping[str, str] = {
    "pooler.": "the pooler of a checkpoint compiled as a sentence encoder (mean pooling)",
    "embeddings.position_ids": "a buffer older transformers saved (always 0..n-1)",
    "fit_dense": "TinyBERT's distillation-only projections",
    "cls.predictions.": "the masked-LM pre-training head of an encoder checkpoint",
    "cls.seq_relationship.": "the next-sentence pre-training head of an encoder checkpoint",
}
LISTED_UNUSED_WEIGHTS = 3
# Keys every BERT config has; TinyBERT's original config has these but no model_type.
BERT_SHAPE_KEYS = frozenset(
    {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"}
)


@dataclass(frozen=True)
class Violation:
    """One way a config breaks the contract: the attribute, its value and the rule."""

    attribute: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.attribute}={self.value!r} ({self.rule})"


@dataclass(frozen=True)
class Attribute:
    """One config attribute: its JSON types, BertConfig's default, and the supported values.

    `allowed` is a predicate over a value of the right type; `values` enumerates the supported
    values when they are finite (the README table and the property test read it).
    """

    name: str
    types: tuple[type, ...]
    default: Any
    supported: str
    allowed: Callable[[Any], bool] = lambda value: True
    values: tuple[Any, ...] = ()

    def violation(self, config: Mapping[str, Any]) -> Violation | None:
        value = config.get(self.name, self.default)
        if value is None and None in self.types:
            return None
        if not _has_type(value, self.types):
            names = " or ".join("null" if kind is None else kind.__name__ for kind in self.types)
            return Violation(self.name, value, f"must be {names}")
        if not self.allowed(value):
            return Violation(self.name, value, f"supported: {self.supported}")
        return None


def _has_type(value: Any, types: tuple[type | None, ...]) -> bool:
    """JSON typing: a bool is not an int, an int is a float."""
    for kind in types:
        if kind is None:
            continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind not in (int, float) and isinstance(value, kind):
            return True
    return False


def _positive(value: int | float) -> bool:
    return value > 0


def _non_negative(value: int) -> bool:
    return value >= 0


def _probability(value: float) -> bool:
    return 0.0 <= value <= 1.0


def _is(*options: Any) -> Callable[[Any], bool]:
    return lambda value: value in options


def _architectures(value: list) -> bool:
    return all(isinstance(name, str) and name in SUPPORTED_ARCHITECTURES for name in value)


# The BERT table, in config.json's order of importance. Defaults are transformers 5's BertConfig.
BERT_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("model_type", (str, None), None, '"bert" (absent: TinyBERT)', _is("bert"), ("bert",)),
    Attribute(
        "architectures",
        (list, None),
        None,
        ", ".join(SUPPORTED_ARCHITECTURES),
        _architectures,
        SUPPORTED_ARCHITECTURES,
    ),
    Attribute("vocab_size", (int,), 30522, "≥ 1, ≥ the tokenizer's size", _positive),
    Attribute("hidden_size", (int,), 768, "≥ 1, a multiple of num_attention_heads", _positive),
    Attribute("num_hidden_layers", (int,), 12, "≥ 1", _positive),
    Attribute("num_attention_heads", (int,), 12, "≥ 1", _positive),
    Attribute("intermediate_size", (int,), 3072, "≥ 1", _positive),
    Attribute(
        "hidden_act",
        (str,),
        "gelu",
        ", ".join(SUPPORTED_ACTIVATIONS),
        _is(*SUPPORTED_ACTIVATIONS),
        SUPPORTED_ACTIVATIONS,
    ),
    Attribute("max_position_embeddings", (int,), 512, "≥ 1", _positive),
    Attribute("type_vocab_size", (int,), 2, "≥ 1 (≥ 2 for a pair task)", _positive),
    Attribute("layer_norm_eps", (float,), 1e-12, "> 0", _positive),
    # transformers 5's BertModel has only absolute positions and ignores this attribute.
    Attribute(
        "position_embedding_type",
        (str, None),
        "absolute",
        '"absolute"',
        _is("absolute"),
        ("absolute",),
    ),
    Attribute("is_decoder", (bool,), False, "false (causal attention)", _is(False), (False,)),
    Attribute("add_cross_attention", (bool,), False, "false", _is(False), (False,)),
    Attribute("is_encoder_decoder", (bool,), False, "false", _is(False), (False,)),
    # Chunking splits the feed-forward loop over positions; the function is the same, and the
    # export always runs it unchunked (families normalise it to 0).
    Attribute("chunk_size_feed_forward", (int,), 0, "≥ 0 (compiled unchunked)", _non_negative),
    Attribute(
        "problem_type",
        (str, None),
        None,
        ", ".join(PROBLEM_TYPES) + " or null",
        _is(*PROBLEM_TYPES),
        (None, *PROBLEM_TYPES),
    ),
    Attribute("num_labels", (int,), 2, "≥ 1, = len(id2label)", _positive),
    Attribute("id2label", (dict, None), None, "keys 0..num_labels-1"),
    Attribute("label2id", (dict, None), None, "the inverse of id2label"),
    Attribute(
        "torch_dtype",
        (str, None),
        None,
        ", ".join(WEIGHT_DTYPES) + " (upcast to fp32)",
        _is(*WEIGHT_DTYPES),
        (None, *WEIGHT_DTYPES),
    ),
    Attribute(
        "dtype",
        (str, None),
        None,
        ", ".join(WEIGHT_DTYPES) + " (upcast to fp32)",
        _is(*WEIGHT_DTYPES),
        (None, *WEIGHT_DTYPES),
    ),
    Attribute("pad_token_id", (int, None), 0, "0 ≤ id < vocab_size", _non_negative),
    Attribute("hidden_dropout_prob", (float,), 0.1, "0..1 (inactive at inference)", _probability),
    Attribute(
        "attention_probs_dropout_prob", (float,), 0.1, "0..1 (inactive at inference)", _probability
    ),
    Attribute("classifier_dropout", (float, None), None, "0..1 or null", _probability),
    Attribute(
        "pruned_heads",
        (dict,),
        {},
        "{} (pruned checkpoints are not supported)",
        lambda v: not v,
        ({},),
    ),
    Attribute(
        "quantization_config",
        (dict, None),
        None,
        "absent (bertc quantizes itself)",
        lambda v: False,
        (None,),
    ),
)


def _cross_violations(config: Mapping[str, Any], failed: set[str]) -> list[Violation]:
    """Rules over several attributes, each run only when its attributes passed their rows."""
    found: list[Violation] = []
    if config.get("model_type") is None and not set(config) >= BERT_SHAPE_KEYS:
        missing = ", ".join(sorted(BERT_SHAPE_KEYS - set(config)))
        found.append(Violation("model_type", None, f"absent, and not a BERT config (no {missing})"))
        return found
    if not failed & {"hidden_size", "num_attention_heads"}:
        hidden = config.get("hidden_size", 768)
        heads = config.get("num_attention_heads", 12)
        if hidden % heads:
            found.append(
                Violation("hidden_size", hidden, f"not a multiple of num_attention_heads={heads}")
            )
    if not failed & {"pad_token_id", "vocab_size"}:
        pad = config.get("pad_token_id", 0)
        vocab = config.get("vocab_size", 30522)
        if pad is not None and pad >= vocab:
            found.append(Violation("pad_token_id", pad, f"not below vocab_size={vocab}"))
    if not failed & {"id2label", "label2id", "num_labels", "problem_type"}:
        found.extend(_label_violations(config))
    return found


def _label_violations(config: Mapping[str, Any]) -> list[Violation]:
    id2label = config.get("id2label")
    problem = config.get("problem_type")
    found: list[Violation] = []
    if id2label is not None:
        keys = sorted(id2label, key=str)
        if not all(_is_index(key) for key in keys) or sorted(int(k) for k in keys) != list(
            range(len(keys))
        ):
            found.append(Violation("id2label", id2label, "keys must be 0..num_labels-1"))
            return found
        unprintable = label_map_problem(id2label)
        if unprintable is not None:
            found.append(Violation("id2label", id2label, f"{unprintable}: label names are printed"))
            return found
        if "num_labels" in config and config["num_labels"] != len(id2label):
            found.append(
                Violation("num_labels", config["num_labels"], f"id2label has {len(id2label)}")
            )
        label2id = config.get("label2id")
        if label2id and {str(v) for v in id2label.values()} != set(map(str, label2id)):
            found.append(Violation("label2id", label2id, "names differ from id2label's"))
    width = config.get("num_labels", len(id2label) if id2label else None)
    if problem == "regression" and width not in (None, 1):
        found.append(
            Violation("problem_type", problem, f"a regression head has 1 output, not {width}")
        )
    if problem == "single_label_classification" and width == 1:
        found.append(
            Violation("problem_type", problem, "a single-label classifier needs ≥ 2 labels")
        )
    return found


def _is_index(key: Any) -> bool:
    return (isinstance(key, int) and not isinstance(key, bool)) or (
        isinstance(key, str) and key.isdigit()
    )


def contract_violations(
    config: Mapping[str, Any], attributes: Sequence[Attribute] = BERT_ATTRIBUTES
) -> list[Violation]:
    """Every way `config` breaks the table, in the table's order (empty: supported)."""
    found = [v for attribute in attributes if (v := attribute.violation(config)) is not None]
    return found + _cross_violations(config, {violation.attribute for violation in found})


def unused_weight_violation(unused: Iterable[str], model_class: str) -> str | None:
    """A one-line refusal for weights the loaded model ignores, unless each is benign."""
    unknown = [name for name in sorted(unused) if not is_benign_unused(name)]
    if not unknown:
        return None
    listed = ", ".join(unknown[:LISTED_UNUSED_WEIGHTS])
    more = f" and {len(unknown) - LISTED_UNUSED_WEIGHTS} more" if len(unknown) > 3 else ""
    return (
        f"the checkpoint holds {len(unknown)} weights that {model_class} would ignore "
        f"({listed}{more}): the compiled model would not compute what the checkpoint defines"
    )


def benign_unused_reasons(unused: Iterable[str]) -> list[str]:
    """Why each benign unused weight is harmless, one reason per kind present, sorted."""
    bare = [name.removeprefix("bert.") for name in unused]
    return sorted(
        reason
        for prefix, reason in BENIGN_UNUSED_WEIGHTS.items()
        if any(name.startswith(prefix) for name in bare)
    )


def is_benign_unused(tensor_name: str) -> bool:
    """Whether an unused weight is one of `BENIGN_UNUSED_WEIGHTS`."""
    bare = tensor_name.removeprefix("bert.")
    return any(bare.startswith(prefix) for prefix in BENIGN_UNUSED_WEIGHTS)
