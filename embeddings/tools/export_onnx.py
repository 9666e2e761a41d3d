#!/usr/bin/env python3
"""Writes a sentence-transformers BERT model (all-MiniLM-L6-v2) as one ONNX graph.

The embeddings crate's `onnx` runtime runs this file with ONNX Runtime; it
computes exactly what `embeddings/src/local.rs` computes with candle:

    BERT (absolute positions, token type 0, erf GELU, post-norm) over the
    tokeniser's ids -> mean over the attention mask -> L2 normalisation

so both runtimes give the same vector for the same text (to float rounding;
the crate's tests hold them to 1e-5 per component of each other, and to 1e-4
of an independent reference vector).

Inputs:  input_ids int64 [batch, tokens], attention_mask int64 [batch, tokens]
Output:  embedding float32 [batch, hidden_size], unit length

The graph is built op by op from `config.json` and `model.safetensors`, not
traced from PyTorch, so exporting needs only the pinned `onnx` wheel (and its
numpy), and the same inputs always give the same bytes. ONNX Runtime optimises
it when it loads it. The SHA-256 of `model.safetensors` is recorded in the
graph's metadata (`second_brain.weights_sha256`), and the embedder refuses a
graph whose weights are not the model directory's.

Usage: export_onnx.py MODEL_DIR OUTPUT.onnx
"""

import hashlib
import json
import os
import pathlib
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset 18: ReduceL2 and ReduceSum take their axes as an input, and
# LayerNormalization (opset 17) is a single op ONNX Runtime runs fused.
OPSET = 18

SAFETENSORS_DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    """The tensors of a .safetensors file, by name (no torch needed)."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = SAFETENSORS_DTYPES[meta["dtype"]]
        tensors[name] = np.frombuffer(data[base + start : base + end], dtype=dtype).reshape(
            meta["shape"]
        )
    return tensors


class Graph:
    """Accumulates nodes and initializers; names are made unique by a counter."""

    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []
        self.count = 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint, array):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, key, transpose=False):
        array = self.weights[key].astype(np.float32)
        return self.const(key, array.T if transpose else array)

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x, prefix):
        """x @ W.T + b, with W stored transposed so the MatMul needs no Transpose."""
        y = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)])
        return self.op("Add", [y, self.weight(f"{prefix}.bias")])

    def layer_norm(self, x, prefix, epsilon):
        return self.op(
            "LayerNormalization",
            [x, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
            axis=-1,
            epsilon=epsilon,
        )


def build(config, weights, weights_sha256):
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    epsilon = float(config["layer_norm_eps"])
    if config.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"unsupported hidden_act {config['hidden_act']!r} (only erf GELU)")
    if config.get("position_embedding_type", "absolute") != "absolute":
        sys.exit("unsupported position_embedding_type (only absolute)")

    g = Graph(weights)
    ids, mask = "input_ids", "attention_mask"

    # Embeddings: word + position (the first `tokens` rows of the table) +
    # token type 0, then LayerNorm. Positions come from the ids' shape, so
    # callers pass only ids and mask.
    tokens = g.op("Shape", [ids], start=1, end=2)  # [tokens], 1-D
    positions = g.op(
        "Slice",
        [
            g.weight("embeddings.position_embeddings.weight"),
            g.const("zero", np.array([0], np.int64)),
            tokens,
            g.const("axis_0", np.array([0], np.int64)),
        ],
    )
    x = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), ids])
    x = g.op("Add", [x, positions])
    token_type_zero = weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32)
    x = g.op("Add", [x, g.const("token_type_zero", token_type_zero)])
    x = g.layer_norm(x, "embeddings.LayerNorm", epsilon)

    # Attention bias: 0 where the mask is 1, the float minimum where it is 0,
    # as transformers does; shaped [batch, 1, 1, tokens] to broadcast over
    # heads and query positions.
    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const("one", np.array(1.0, np.float32)), mask_f])
    bias = g.op("Mul", [inverted, g.const("float_min", np.array(np.finfo(np.float32).min, np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], np.int64))])

    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    sqrt2 = g.const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    one = g.const("one_f", np.array(1.0, np.float32))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads_of(name, perm):
            y = g.op("Reshape", [g.linear(x, f"{p}.attention.self.{name}"), split_heads])
            return g.op("Transpose", [y], perm=perm)

        q = heads_of("query", [0, 2, 1, 3])  # [b, h, t, d]
        k = heads_of("key", [0, 2, 3, 1])  # [b, h, d, t]
        v = heads_of("value", [0, 2, 1, 3])  # [b, h, t, d]
        scores = g.op("Mul", [g.op("MatMul", [q, k]), scale])
        probs = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_heads])
        attended = g.linear(context, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), f"{p}.attention.output.LayerNorm", epsilon)

        # GELU(h) = 0.5 h (1 + erf(h / sqrt 2)), the exact form BERT uses.
        h = g.linear(x, f"{p}.intermediate.dense")
        erf = g.op("Erf", [g.op("Div", [h, sqrt2])])
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [erf, one])])
        out = g.linear(h, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), f"{p}.output.LayerNorm", epsilon)

    # Mean over the real tokens, then unit length (clamps as sentence-transformers).
    weight = g.op("Unsqueeze", [mask_f, g.const("axis_2", np.array([2], np.int64))])
    axis_1 = g.const("axis_1", np.array([1], np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, weight]), axis_1], keepdims=0)
    counts = g.op("ReduceSum", [weight, axis_1], keepdims=0)
    counts = g.op("Max", [counts, g.const("count_floor", np.array(1e-9, np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("ReduceL2", [mean, axis_1], keepdims=1)
    norm = g.op("Max", [norm, g.const("norm_floor", np.array(1e-12, np.float32))])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "sentence_embedding",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="second-brain embeddings/tools/export_onnx.py",
    )
    # IR version 8 is the oldest that carries opset 18: any ONNX Runtime from
    # 1.14 reads it (the embedder's `ort` needs 1.17 or later).
    model.ir_version = 8
    helper.set_model_props(model, {"second_brain.weights_sha256": weights_sha256})
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    model_dir, output = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    config = json.loads((model_dir / "config.json").read_text())
    weights_file = model_dir / "model.safetensors"
    weights = read_safetensors(weights_file)
    weights_sha256 = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    model = build(config, weights, weights_sha256)
    # Written beside the target and renamed, so a reader never sees half a file.
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    os.replace(partial, output)


if __name__ == "__main__":
    main()
