"""FLOP and byte counts on tiny hand-built ONNX graphs (exact), and the roofline formulas."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from analysis.roofline import attainable_gflops, attained_gflops, count_graph, load_ceilings


def model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.ones(s, np.float32), n)
                               for n, s in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_gemm_with_bias_then_relu():
    m = model([helper.make_node("Gemm", ["x", "W", "B"], ["h"]),
               helper.make_node("Relu", ["h"], ["y"])],
              [vi("x", ["N", 4])], [vi("y", ["N", 3])], [("W", (4, 3)), ("B", (3,))])
    cost = count_graph(m)
    # Gemm 2*1*4*3 = 24 + bias 3; Relu 3. Bytes: W 48 + B 12 + x 16 + y 12.
    assert cost.flops_by_op == {"Gemm": 27, "Relu": 3}
    assert (cost.flops, cost.bytes) == (30, 88)


def test_conv_with_bias():
    m = model([helper.make_node("Conv", ["x", "W", "B"], ["y"])],
              [vi("x", ["N", 2, 5, 5])], [vi("y", ["N", 4, 3, 3])],
              [("W", (4, 2, 3, 3)), ("B", (4,))])
    # 36 outputs x (2 * 2*3*3 = 36) + 36 bias = 1332
    cost = count_graph(m)
    assert cost.flops == 1332
    assert cost.bytes == 4 * (72 + 4 + 50 + 36)


def test_batched_matmul_and_softmax():
    m = model([helper.make_node("MatMul", ["x", "W"], ["h"]),
               helper.make_node("Softmax", ["h"], ["y"], axis=-1)],
              [vi("x", ["N", 3, 4])], [vi("y", ["N", 3, 5])], [("W", (4, 5))])
    assert count_graph(m).flops_by_op == {"MatMul": 2 * 4 * 15, "Softmax": 3 * 15}


def test_lstm():
    m = model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2)],
              [vi("x", [5, "N", 3])], [vi("y", [5, 1, "N", 2])],
              [("W", (1, 8, 3)), ("R", (1, 8, 2))])
    # per step: 2*8*(3+2) = 80 + 8H = 16 + 9H = 18 -> 114; 5 steps
    assert count_graph(m).flops == 570


def test_intensity_and_roofline_formulas():
    assert attained_gflops(1_000_000_000, 2, 10.0) == pytest.approx(200.0)
    assert attainable_gflops(0.5, 100.0, 50.0) == 25.0
    assert attainable_gflops(10.0, 100.0, 50.0) == 100.0
    names = {c.name for c in load_ceilings()}
    assert {"H100 SXM5", "A100 SXM4 80GB", "L4", "T4"} <= names



def test_a_gpu_s_roof_is_found_by_the_name_nvml_gives_it():
    from analysis.roofline import ceiling_for_gpu

    known = load_ceilings()
    for nvml_name, row in [("NVIDIA H200", "H200 SXM"), ("NVIDIA H100 80GB HBM3", "H100 SXM5"),
                           ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB"), ("Tesla T4", "T4"),
                           ("nvidia l4 ", "L4"), ("NVIDIA H200 NVL", "H200 NVL")]:
        assert ceiling_for_gpu(nvml_name, known).name == row, nvml_name
    assert ceiling_for_gpu("NVIDIA L40S", known) is None  # no row: not the L4's roof
