"""The ort-mobile dynamic recipe stays close across ISAs (project issue 19, "right on ARM").

aarch64's float kernels round differently from x86's (by ~1e-6), so dynamic INT8 flips
some activation int8 steps differently on each; the noise a per-tensor int8 table adds to every
token then becomes a different logit on each ISA. The fused dynamic recipe keeps the position
table fp32 (targets/ort/recipes.py `POSITION_TABLE_REASON`; measured in bench/README.md,
"ONNX Runtime's drift on aarch64"); the word table stays int8 (its bytes are the model's largest).

The invariant is structural, so x86 CI guards it on a tiny seeded BERT whose position table is
large enough (512 rows) for the recipes' embedding rule to consider it.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.targets.ort import recipes
from bertc.targets.ort.fusion import fuse_transformer
from bertc.targets.ort.quantize import (
    EMBEDDING_MIN_ROWS,
    plan_fused_dynamic,
    plan_onnx_runtime,
)
from model_factory import TINY_CONFIG, make_checkpoint

POSITIONS = 512
INTEGER_TYPES = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


@pytest.fixture(scope="module")
def long_position_onnx(tmp_path_factory: pytest.TempPathFactory):
    """A tiny seeded BERT with BERT-base's 512 positions, exported, and two encoded sentences."""
    from bertc.compiler.export import encode, export_onnx
    from bertc.compiler.loading import load_model

    root = tmp_path_factory.mktemp("long-positions")
    checkpoint = make_checkpoint(root / "model", {"max_position_embeddings": POSITIONS})
    loaded = load_model(str(checkpoint))
    graph = export_onnx(loaded, root / "model.onnx")
    samples = [encode(loaded, [text], padding_to=None) for text in ("a warm film .", "dull")]
    return graph, samples


def _table_types(path: Path) -> dict[str, int]:
    """Element type of the table each embedding Gather reads, keyed 'word' / 'position' /
    'token_type' (the exporter's initializer names), following a DequantizeLinear back to its
    integer table."""
    model = onnx.load(str(path))
    types = {init.name: init.data_type for init in model.graph.initializer}
    # QDQ: the Gather reads DequantizeLinear(table); QOperator: the integer table itself.
    tables = {
        node.output[0]: node.input[0]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in types
    }
    found = {}
    for node in model.graph.node:
        table = tables.get(node.input[0], node.input[0]) if node.op_type == "Gather" else ""
        for kind in ("word", "position", "token_type"):
            if table in types and f"{kind}_embeddings" in table:
                found[kind] = types[table]
    return found


def test_the_position_table_is_large_enough_for_the_embedding_rule() -> None:
    # Otherwise the tests below would pass whatever the recipes do with it.
    assert POSITIONS >= EMBEDDING_MIN_ROWS > TINY_CONFIG["type_vocab_size"]


@pytest.mark.parametrize(
    ("registry", "mode", "position_int8"),
    [
        (recipes.MOBILE, QuantizationMode.DYNAMIC, False),  # the ort-mobile default
        (recipes.PORTABLE, QuantizationMode.DYNAMIC, True),
        (recipes.PORTABLE, QuantizationMode.STATIC, True),
    ],
    ids=["ort-mobile-dynamic", "onnx-dynamic", "onnx-static"],
)
def test_each_recipe_quantizes_the_embedding_tables_it_says(
    long_position_onnx, tmp_path: Path, registry, mode, position_int8: bool
) -> None:
    graph, samples = long_position_onnx
    recipe = registry.get(mode, Recipe.BERT_SAFE)
    assert recipe.position_embeddings_int8 is position_int8
    if recipe.fused:
        heads, hidden = TINY_CONFIG["num_attention_heads"], TINY_CONFIG["hidden_size"]
        fused, _ = fuse_transformer(graph, tmp_path / "fused.onnx", samples, heads, hidden)
        plan = plan_fused_dynamic(fused, recipe, [], tmp_path)
        assert plan.settings["position_embeddings"] == recipes.POSITION_TABLE_REASON
    else:
        plan = plan_onnx_runtime(graph, recipe, samples, tmp_path)
    plan.write(tmp_path / "int8.onnx", (), None)
    tables = _table_types(tmp_path / "int8.onnx")
    assert tables["word"] in INTEGER_TYPES
    assert tables["token_type"] == onnx.TensorProto.FLOAT
    assert (tables["position"] in INTEGER_TYPES) is position_int8
    if not position_int8:
        assert tables["position"] == onnx.TensorProto.FLOAT


def test_calibrated_choices_are_measured_with_the_position_table_in_int8(
    long_position_onnx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmoothQuant and the fp32 MatMuls are chosen on the graph SENSITIVE_ERROR_SHARE was set on
    (position table int8); only the written graph keeps the table fp32."""
    import bertc.targets.ort.quantize as quantize

    graph, samples = long_position_onnx
    recipe = recipes.MOBILE.get(QuantizationMode.DYNAMIC, Recipe.BERT_SAFE)
    heads, hidden = TINY_CONFIG["num_attention_heads"], TINY_CONFIG["hidden_size"]
    fused, _ = fuse_transformer(graph, tmp_path / "fused.onnx", samples, heads, hidden)
    measured_with: list[list[str]] = []
    choose = quantize.choose_with_calibration

    def spy(path, recipe_, candidates, exclude, *rest):
        measured_with.append(list(exclude))
        return choose(path, recipe_, candidates, exclude, *rest)

    monkeypatch.setattr(quantize, "choose_with_calibration", spy)
    plan = plan_fused_dynamic(fused, recipe, samples, tmp_path)
    model = onnx.load(str(fused.path))
    position = [
        node.name
        for node in model.graph.node
        if node.op_type == "Gather" and "position_embeddings" in node.input[0]
    ]
    assert len(position) == 1 and measured_with
    assert position[0] not in measured_with[0]
    plan.write(tmp_path / "int8.onnx", (), None)
    assert _table_types(tmp_path / "int8.onnx")["position"] == onnx.TensorProto.FLOAT
