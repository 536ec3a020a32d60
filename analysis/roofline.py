"""Roofline: FLOPs and bytes per sample from an ONNX graph, attained FLOP/s from measured
latency, and the compute / memory ceilings of known accelerators (this machine's CPU
ceilings are measured by `inferbench.metrics.cpu_ceilings` and passed in as numbers).

FLOP counting conventions (one multiply-add = 2 FLOPs; per sample, batch dimension = 1):
- MatMul  [.., M, K] x [.., K, N]: 2*M*K*N per broadcast batch element.
- Gemm    (M, K) x (K, N): 2*M*K*N, + M*N when C (bias) is given.
- Conv    2 * (Cin/group) * kH*kW * Cout*Hout*Wout, + Cout*Hout*Wout with a bias.
- LSTM    per step and direction: 2*4H*(I+H) (gates) + 8H (two biases) + 9H (4 gate
  activations, c = f*c + i*g: 3, h = o*tanh(c): 2).
- Softmax 3 per output element (exp, sum, divide); LayerNormalization / BatchNormalization
  5 per output element; other elementwise ops 1 per output element; shape-only ops
  (Reshape, Transpose, Gather, Concat, ...) 0.
Bytes moved is the compulsory traffic: every initializer (weight) read once, graph inputs
read and graph outputs written once per sample. A lower bound, so the arithmetic intensity
is an upper bound.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"

ELEMENTWISE_1 = {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log",
                 "Sqrt", "Pow", "Neg", "Abs", "Max", "Min", "Clip", "LeakyRelu", "Gelu",
                 "HardSigmoid", "Where", "Reciprocal", "Elu", "Selu", "Softplus", "Mish"}
ELEMENTWISE_5 = {"LayerNormalization", "BatchNormalization", "InstanceNormalization",
                 "GroupNormalization"}


@dataclass(frozen=True)
class GraphCost:
    flops: int
    bytes: int
    flops_by_op: dict[str, int]

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0


def _dims(vi) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return dims


def _elem_size(elem_type: int) -> int:
    import onnx

    return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def count_graph(model) -> GraphCost:
    """FLOPs and compulsory bytes of one sample through ``model`` (an onnx.ModelProto or a
    path). Symbolic dimensions of graph inputs (the batch) are set to 1 before shape
    inference."""
    import onnx
    from onnx import numpy_helper, shape_inference

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    model = onnx.ModelProto.FromString(model.SerializeToString())  # don't mutate the caller's
    inits = {i.name: i for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for name, init in inits.items():
        shapes[name] = list(init.dims)

    by_op: dict[str, int] = {}
    for node in model.graph.node:
        f = _node_flops(node, shapes)
        if f:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + f
    weight_bytes = sum(numpy_helper.to_array(i).nbytes for i in inits.values())
    io_bytes = 0
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name in inits:
            continue
        dims = shapes.get(vi.name)
        if dims is not None:
            io_bytes += int(np.prod(dims)) * _elem_size(vi.type.tensor_type.elem_type)
    return GraphCost(sum(by_op.values()), int(weight_bytes + io_bytes), by_op)


def _attr(node, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_flops(node, shapes: dict[str, list[int]]) -> int:
    op = node.op_type
    out = shapes.get(node.output[0]) if node.output else None
    n_out = int(np.prod(out)) if out is not None else 0
    if op == "MatMul":
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if a is None or b is None or out is None:
            return 0
        k = a[-1]
        return 2 * k * n_out
    if op == "Gemm":
        a = shapes.get(node.input[0])
        if a is None or out is None:
            return 0
        k = a[0] if _attr(node, "transA", 0) else a[1]
        bias = n_out if len(node.input) > 2 and node.input[2] else 0
        return 2 * k * n_out + bias
    if op == "Conv":
        w = shapes.get(node.input[1])
        if w is None or out is None:
            return 0
        per_out = int(np.prod(w[1:]))  # (Cin/group) * kH * kW
        bias = n_out if len(node.input) > 2 and node.input[2] else 0
        return 2 * per_out * n_out + bias
    if op == "LSTM":
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if x is None or w is None:
            return 0
        seq, _, inp = x
        directions, four_h, _ = w
        h = four_h // 4
        return seq * directions * (2 * 4 * h * (inp + h) + 8 * h + 9 * h)
    if op == "Softmax":
        return 3 * n_out
    if op in ELEMENTWISE_5:
        return 5 * n_out
    if op in ELEMENTWISE_1:
        return n_out
    return 0


@dataclass(frozen=True)
class Ceiling:
    name: str
    peak_gflops: float  # FP32 dense unless the source says otherwise
    mem_gbs: float
    source: str
    nvml_name: str = ""  # regular expression for the names NVML gives this accelerator


def load_ceilings(path: Path | None = None) -> list[Ceiling]:
    path = path or DATA / "accelerators.csv"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [Ceiling(r["name"], float(r["peak_fp32_gflops"]), float(r["mem_bandwidth_gbs"]),
                    r["source"], r.get("nvml_name") or "") for r in csv.DictReader(lines)]


def ceiling_for_gpu(nvml_name: str, ceilings: list[Ceiling]) -> Ceiling | None:
    """The row whose `nvml_name` pattern matches the whole name NVML gave a GPU (ignoring
    case and surrounding spaces); None when no row describes it."""
    name = nvml_name.strip()
    return next((c for c in ceilings
                 if c.nvml_name and re.fullmatch(c.nvml_name, name, re.IGNORECASE)), None)


def attainable_gflops(intensity: float, peak_gflops: float, mem_gbs: float) -> float:
    """Roofline: min(peak, bandwidth x intensity)."""
    return min(peak_gflops, mem_gbs * intensity)


def attained_gflops(flops_per_sample: int, batch_size: int, latency_ms: float) -> float:
    """FLOP/s (in GFLOP/s) one request achieved: its FLOPs over its measured latency."""
    return flops_per_sample * batch_size / (latency_ms / 1e3) / 1e9

