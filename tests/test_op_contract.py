"""The op's contract is one file (madf/csrc/plugins/dynamicFilter/MADFDynamicFilter_PluginConfig.yaml): the exporter's
ONNX schema, the tests' case table and docs/ops/MADFDynamicFilter.md are compared with it here, the plugin creator's
declared fields in tests/test_plugin_harness.py."""
import re
from pathlib import Path

import onnx
import torch
import yaml

from dynamic_filter_cases import TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "madf" / "csrc" / "plugins" / "dynamicFilter" / "MADFDynamicFilter_PluginConfig.yaml"


def contract():
    data = yaml.safe_load(CONFIG.read_text())
    return data, data["versions"]["1"]


def test_the_exporters_schema_is_the_contract():
    from madf.export import symbolic
    symbolic._register_schema()
    data, v1 = contract()
    assert (symbolic.OP_TYPE, symbolic.DOMAIN, symbolic.OP_VERSION) == (data["name"], data["namespace"], "1")
    schema = onnx.defs.get_schema(data["name"], 1, data["namespace"])
    assert [p.name for p in schema.inputs] == v1["inputs"]
    assert [p.name for p in schema.outputs] == v1["outputs"]
    assert set(schema.attributes) == set(v1["attributes"]) | set(v1["parser_attributes"])
    for name in v1["attributes"]:
        assert schema.attributes[name].type == onnx.defs.OpSchema.AttrType.INT, name
    allowed = {"tensor(float)": "float32", "tensor(float16)": "float16"}
    assert sorted(allowed[t] for t in schema.type_constraints[0].allowed_type_strs) == sorted(v1["dtypes"])


def test_the_tests_tolerances_are_the_contracts():
    _, v1 = contract()
    assert TOLERANCE == {torch.float32: v1["tolerances"]["float32"], torch.float16: v1["tolerances"]["float16"]}


def _table(text: str, heading: str):
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def test_the_docs_page_is_the_contract():
    data, v1 = contract()
    text = (ROOT / "docs" / "ops" / "MADFDynamicFilter.md").read_text()
    assert [row[1] for row in _table(text, "Inputs")] == v1["inputs"]
    for row in _table(text, "Inputs"):
        assert row[2].count(",") + 1 == v1["input_dims"][row[1]], row   # the shape's rank
    assert [row[1] for row in _table(text, "Output")] == v1["outputs"]
    attrs = {row[0]: row[1] for row in _table(text, "Attributes")}
    assert list(attrs) == v1["attributes"] + list(v1["parser_attributes"])
    assert all(attrs[a] == "int" for a in v1["attributes"]) and all(
        attrs[a] == "string" for a in v1["parser_attributes"])
    tolerances = re.search(r"FP32 max error <= ([\d.e-]+) and FP16 <= ([\d.e-]+)", text.replace("\n", " "))
    assert (float(tolerances.group(1)), float(tolerances.group(2))) == (v1["tolerances"]["float32"],
                                                                       v1["tolerances"]["float16"])
