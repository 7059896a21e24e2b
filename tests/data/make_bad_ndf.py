#!/usr/bin/env python3
"""Writes the .ndf test files: tests/data/bad_ndf/<rule>.ndf, one small file per
loader validation rule (each a single edit of one valid graph), with
tests/data/bad_ndf/expected_errors.tsv listing the text each error must contain;
tests/data/valid_graph.ndf and valid_tensors.ndf, written independently of the
C++ writer so that the loader is checked against docs/ndf-format.md itself; and
the fuzzer's seed corpus in tests/fuzz/corpus/.

The files are committed; rerun this script (python3 tests/data/make_bad_ndf.py)
after changing the format or the loader's messages. Deterministic output.
"""
import copy
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"NDFLOW\x00\x01"
ALIGN = 64


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


def layout(tensors):
    """[(name, dtype, shape, bytes)] -> (table entries, data section)."""
    table, data = [], b""
    for name, dtype, shape, raw in tensors:
        off = align(len(data))
        data = data.ljust(off, b"\x00") + raw
        table.append({"name": name, "dtype": dtype, "shape": shape, "offset": off, "nbytes": len(raw)})
    return table, data


def attr(type_, value):
    return {"type": type_, "value": value}


def node(name, op, inputs=(), attrs=None, control=(), device=""):
    return {"name": name, "op": op, "inputs": [{"node": n, "output": i} for n, i in inputs],
            "control_inputs": list(control), "device": device, "attrs": attrs or {}}


def valid_graph():
    """y = leaky_relu((x + w) * c); s = sum(y, axis 1); mask = cast(m, f32)."""
    table, data = layout([
        ("w", "f32", [3], f32(1.0, 2.0, 3.0)),
        ("c.value", "f32", [3], f32(0.5, -1.0, 2.0)),
        ("m.value", "bool", [3], bytes([1, 0, 1])),
    ])
    header = {
        "format_version": 1,
        "kind": "graph",
        "metadata": {"producer": "make_bad_ndf.py"},
        "data_bytes": len(data),
        "tensors": table,
        "nodes": [
            node("x", "placeholder", attrs={"shape": attr("ints", [-1, 3]), "dtype": attr("dtype", "f32")}),
            node("w", "variable", attrs={"value": attr("tensor", "w")}),
            node("c", "constant", attrs={"value": attr("tensor", "c.value")}),
            node("m", "constant", attrs={"value": attr("tensor", "m.value")}),
            node("a", "add", [("x", 0), ("w", 0)], device="cpu:0"),
            node("b", "mul", [("a", 0), ("c", 0)]),
            node("r", "leaky_relu", [("b", 0)], {"negative_slope": attr("float", 0.1)}),
            node("s", "sum", [("r", 0)], {"axes": attr("ints", [1]), "keepdims": attr("bool", False)},
                 control=["a"]),
            node("k", "cast", [("m", 0)], {"dtype": attr("dtype", "f32")}),
        ],
        "inputs": [{"name": "x", "node": "x"}],
        "outputs": [{"name": "y", "node": "r", "output": 0}, {"name": "s", "node": "s", "output": 0},
                    {"name": "mask", "node": "k", "output": 0}],
    }
    return header, data


def pack(header, data, *, header_len=None, magic=MAGIC):
    """The container around a header (dict, or raw text/bytes) and a data section."""
    text = header if isinstance(header, bytes) else (
        header.encode() if isinstance(header, str) else json.dumps(header, separators=(",", ":")).encode())
    n = len(text) if header_len is None else header_len
    out = magic + struct.pack("<Q", n) + text
    return out.ljust(align(len(out)), b"\x00") + data


def nodes_by_name(h):
    return {n["name"]: n for n in h["nodes"]}


def edit(fn):
    """A bad file made by editing the valid header in place."""
    h, d = valid_graph()
    h = copy.deepcopy(h)
    fn(h)
    return pack(h, d)


def nested(depth):
    v = 0
    for _ in range(depth):
        v = [v]
    return v


def cases():
    h, d = valid_graph()
    good = pack(h, d)
    n = lambda name: (lambda h: nodes_by_name(h)[name])  # noqa: E731
    t = lambda i: (lambda h: h["tensors"][i])  # noqa: E731

    def set_(getter, key, value):
        return edit(lambda h: getter(h).__setitem__(key, value))

    def tensors_file():
        table, data = layout([("w", "f32", [3], f32(1, 2, 3))])
        return {"format_version": 1, "kind": "tensors", "metadata": {}, "data_bytes": len(data),
                "tensors": table}, data

    th, td = tensors_file()
    bool_flip = bytearray(good)
    bool_flip[len(good) - 3] = 2  # first element of m.value, the last tensor
    yield "bad_magic", b"NDFLOX" + good[6:], "not an .ndf file (bad magic"
    yield "unsupported_container_version", good[:7] + b"\x02" + good[8:], "unsupported container version 2"
    yield "file_too_short", MAGIC + b"\x00", "file is too short (9 bytes)"
    yield "header_length_past_end", pack(h, d, header_len=len(good)), "runs past the end of the file"
    yield "header_not_json", pack("{not json", b""), "header is not valid JSON"
    yield "header_not_object", pack("[1,2,3]", b""), "header: must be a JSON object, got array"
    yield "duplicate_json_key", pack('{"kind":"graph","kind":"tensors"}', b""), "duplicate key 'kind'"
    yield "json_too_deep", edit(lambda h: h["metadata"].__setitem__("x", nested(100))), "nested deeper than 64"
    yield "unknown_header_field", edit(lambda h: h.__setitem__("extra", 1)), "header: unknown field 'extra'"
    yield "missing_required_field", edit(lambda h: h.pop("tensors")), "header: missing required field 'tensors'"
    yield "field_wrong_type", edit(lambda h: h.__setitem__("format_version", "1")), \
        "field 'format_version' must be an integer"
    yield "unsupported_format_version", edit(lambda h: h.__setitem__("format_version", 2)), \
        "unsupported format_version 2"
    yield "bad_kind", edit(lambda h: h.__setitem__("kind", "model")), 'kind must be "graph" or "tensors"'
    yield "graph_field_in_tensors_file", pack(dict(th, nodes=[]), td), "belongs to graph files"
    yield "kind_tensors_not_graph", pack(th, td), "not a graph; read it with load_tensors"
    yield "data_bytes_mismatch", good[:-2], "the file is truncated or has trailing bytes"
    yield "metadata_not_string", edit(lambda h: h["metadata"].__setitem__("step", 5)), \
        "metadata 'step' must be a string"
    yield "tensor_unknown_dtype", set_(t(0), "dtype", "f128"), "tensors[0] ('w'): unknown dtype 'f128'"
    yield "tensor_negative_dim", set_(t(0), "shape", [-3]), "shape[0] must be an integer >= 0"
    yield "tensor_shape_overflow", set_(t(0), "shape", [2**32, 2**32]), "overflows 64 bits"
    yield "tensor_rank_too_large", set_(t(0), "shape", [1] * 65), "rank 65 exceeds the maximum of 64"
    yield "tensor_nbytes_mismatch", set_(t(0), "nbytes", 16), "nbytes is 16 but shape [3] of f32 needs 12"
    yield "tensor_offset_negative", set_(t(0), "offset", -64), "field 'offset' must be a non-negative integer"
    yield "tensor_offset_unaligned", set_(t(1), "offset", 32), "offset 32 is not a multiple of 64"
    yield "tensor_out_of_range", set_(t(1), "offset", 192), "run past the end of the data section"
    yield "tensor_offset_overflow", set_(t(1), "offset", 2**64 - 64), "run past the end of the data section"
    yield "tensors_overlap", set_(t(1), "offset", 0), "overlap in the data section"
    yield "duplicate_tensor_name", set_(t(1), "name", "w"), "duplicate tensor name"
    yield "bool_tensor_bad_byte", bytes(bool_flip), "bool element 0 holds the byte 2"
    yield "name_empty", set_(n("b"), "name", ""), "the node name is empty"
    yield "name_control_character", set_(n("b"), "name", "b\n"), "contains the control character 0xa"
    yield "duplicate_node_name", set_(n("b"), "name", "a"), "duplicate node name"
    yield "unknown_node_field", set_(n("b"), "outputs", []), "unknown field 'outputs'"
    yield "unknown_op", set_(n("b"), "op", "frobnicate"), "unknown op 'frobnicate'"
    yield "bad_device", set_(n("a"), "device", "tpu:0"), "device 'tpu:0' is not a device name"
    yield "unknown_attribute", edit(lambda h: n("r")(h)["attrs"].__setitem__("alpha", attr("float", 1))), \
        "unknown attribute 'alpha' for op 'leaky_relu'"
    yield "attribute_unknown_type", edit(lambda h: n("r")(h)["attrs"].__setitem__(
        "negative_slope", attr("complex", 1))), "unknown attribute type 'complex'"
    yield "attribute_type_mismatch", edit(lambda h: n("r")(h)["attrs"].__setitem__(
        "negative_slope", attr("int", 1))), "stored as int but op 'leaky_relu' declares it float"
    yield "attribute_bad_value", edit(lambda h: n("s")(h)["attrs"].__setitem__(
        "keepdims", attr("bool", 1))), "value must be true or false"
    yield "attribute_int_out_of_range", edit(lambda h: n("s")(h)["attrs"].__setitem__(
        "axes", attr("ints", [2**64 - 1]))), "attribute 'axes' must be an integer in the int64 range"
    yield "attribute_float_not_finite", edit(lambda h: n("r")(h)["attrs"].__setitem__(
        "negative_slope", attr("float", "huge"))), 'needs a finite number or "nan"'
    yield "attribute_unknown_dtype", edit(lambda h: n("k")(h)["attrs"].__setitem__(
        "dtype", attr("dtype", "float128"))), "unknown dtype 'float128'"
    yield "attribute_missing_required", edit(lambda h: n("x")(h)["attrs"].pop("shape")), \
        "required attribute 'shape'"
    yield "attribute_tensor_missing", edit(lambda h: n("w")(h)["attrs"].__setitem__(
        "value", attr("tensor", "nope"))), "refers to no tensor named 'nope'"
    yield "variable_tensor_shared", edit(lambda h: n("c")(h)["attrs"].__setitem__(
        "value", attr("tensor", "w"))), "may not be shared with another node"
    yield "placeholder_bad_dim", edit(lambda h: n("x")(h)["attrs"].__setitem__(
        "shape", attr("ints", [-2, 3]))), "has a dim < -1"
    yield "edge_unknown_node", edit(lambda h: n("a")(h)["inputs"][0].__setitem__("node", "nope")), \
        "nodes[4] ('a'): inputs[0]: field 'node' refers to unknown node 'nope'"
    yield "edge_bad_output_index", edit(lambda h: n("a")(h)["inputs"][0].__setitem__("output", 3)), \
        "input 0 refers to output 3 of 'x', which has 1 output(s)"
    yield "arity_mismatch", edit(lambda h: n("r")(h)["inputs"].append({"node": "a", "output": 0})), \
        "takes 1 inputs, got 2"
    yield "control_input_unknown", set_(n("s"), "control_inputs", ["nope"]), \
        "control_inputs[0] refers to unknown node 'nope'"
    yield "cycle", edit(lambda h: n("a")(h)["inputs"].__setitem__(1, {"node": "r", "output": 0})), \
        "graph has a cycle"
    yield "inference_fails", edit(lambda h: n("s")(h)["attrs"].__setitem__("axes", attr("ints", [5]))), \
        "nodes[7] ('s'): op 'sum' rejects its inputs/attributes"
    yield "graph_input_not_placeholder", set_(lambda h: h["inputs"][0], "node", "w"), \
        "node 'w' is not a placeholder"
    yield "graph_input_unknown_node", set_(lambda h: h["inputs"][0], "node", "nope"), \
        "inputs[0] ('x'): field 'node' refers to unknown node 'nope'"
    yield "graph_output_unknown_node", set_(lambda h: h["outputs"][0], "node", "nope"), \
        "outputs[0] ('y'): field 'node' refers to unknown node 'nope'"
    yield "graph_output_bad_index", set_(lambda h: h["outputs"][0], "output", 1), \
        "output 1 of node 'r' does not exist"
    yield "duplicate_output_name", set_(lambda h: h["outputs"][1], "name", "y"), "duplicate output name"


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main():
    bad_dir = os.path.join(HERE, "bad_ndf")
    os.makedirs(bad_dir, exist_ok=True)
    for old in os.listdir(bad_dir):
        os.remove(os.path.join(bad_dir, old))
    lines = ["# file\ttext the loader's error must contain (written by make_bad_ndf.py)"]
    for name, data, expected in cases():
        write(os.path.join(bad_dir, name + ".ndf"), data)
        lines.append(f"{name}.ndf\t{expected}")
    write(os.path.join(bad_dir, "expected_errors.tsv"), ("\n".join(lines) + "\n").encode())

    h, d = valid_graph()
    write(os.path.join(HERE, "valid_graph.ndf"), pack(h, d))
    table, data = layout([("fc.weight", "f32", [2, 2], f32(1, 2, 3, 4)), ("step", "i64", [], struct.pack("<q", 7)),
                          ("empty", "f64", [0, 3], b"")])
    tensors = {"format_version": 1, "kind": "tensors", "metadata": {"epoch": "3"}, "data_bytes": len(data),
               "tensors": table}
    write(os.path.join(HERE, "valid_tensors.ndf"), pack(tensors, data))

    corpus = os.path.join(HERE, "..", "fuzz", "corpus")
    os.makedirs(corpus, exist_ok=True)
    write(os.path.join(corpus, "graph.ndf"), pack(h, d))
    write(os.path.join(corpus, "tensors.ndf"), pack(tensors, data))
    # Header-only seeds for the harness's framing mode: JSON, NUL, data bytes.
    write(os.path.join(corpus, "graph_header"), json.dumps(h, separators=(",", ":")).encode() + b"\x00" + d)
    write(os.path.join(corpus, "tensors_header"), json.dumps(tensors, separators=(",", ":")).encode() + b"\x00" + data)


if __name__ == "__main__":
    main()
