"""The canonical model rebuilt in TensorFlow, with the PyTorch weights copied over.

The convert stage's SavedModel exporter: there is no PyTorch -> SavedModel converter that
keeps the graph honest (onnx-tf is unmaintained), and the generator's four block types are
few, so each is written once in plain TensorFlow ops and the seeded PyTorch weights are
copied into tf.Variables. The convert stage then checks the SavedModel against the PyTorch
outputs, as it does every other format. Differences that matter:

- layout: PyTorch convolutions are NCHW; TensorFlow's CPU Conv2D only runs NHWC. The served
  signature still takes NCHW (the same input as every other platform) and transposes once;
  kernels go from [out, in, kh, kw] to [kh, kw, in, out].
- LSTM: nn.LSTM packs the gates as (input, forget, cell, output) in weight_ih / weight_hh,
  with two biases that simply add; the cell here uses the same order.
- attention: nn.MultiheadAttention packs the q, k, v projections in in_proj_weight [3E, E];
  heads split the projected width, scores are scaled by 1/sqrt(head_dim).
- GELU: PyTorch's default is the exact (erf) form, so approximate=False.

tensorflow is imported only here (and only when a function here is called), so nothing
else in InferBench pays its import time (~9 s on the 2-core dev VM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferbench.errors import InferBenchError
from inferbench.spec import ModelFamily

SIGNATURE = "serving_default"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
_EPS = 1e-5  # nn.BatchNorm2d and nn.LayerNorm default


def tensorflow():
    try:
        import tensorflow as tf
    except ImportError:
        raise InferBenchError("the savedmodel format needs TensorFlow; fix: pip install -e "
                              "'.[tensorflow]'") from None
    return tf


def _weights(model) -> dict[str, np.ndarray]:
    """The model's parameters and buffers as float32 numpy arrays, by state_dict name."""
    return {k: v.detach().cpu().numpy().astype(np.float32)
            for k, v in model.state_dict().items() if v.dtype.is_floating_point}


def build_module(model, input_shape: tuple[int, ...]) -> Any:
    """A tf.Module whose `serve` is `model` (a CanonicalModel) with its weights.

    Family, depth and width are read off the model itself, so every exporter of the convert
    stage has the same (model, example, path) interface."""
    tf = tensorflow()
    w = _weights(model)
    family = model.family
    width = int(model.stem.weight.shape[0])
    depth = model.blocks.num_layers if family is ModelFamily.LSTM else len(model.blocks)

    class Ported(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="inferbench_canonical")
            # tf.Variables so the SavedModel keeps the weights in variables/, as a trained
            # model exported from TensorFlow would (not folded into the graph as constants).
            self.v = {k.replace(".", "/"): tf.Variable(a, trainable=False, name=k)
                      for k, a in w.items()}

        def p(self, name: str):
            return self.v[name.replace(".", "/")]

        def linear(self, x, prefix: str):
            # PyTorch Linear: x @ W^T + b, W is [out, in].
            return tf.linalg.matmul(x, self.p(f"{prefix}.weight"), transpose_b=True) \
                + self.p(f"{prefix}.bias")

        def conv3x3(self, x, prefix: str, bias: bool):
            kernel = tf.transpose(self.p(f"{prefix}.weight"), [2, 3, 1, 0])  # -> HWIO
            y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME", data_format="NHWC")
            return y + self.p(f"{prefix}.bias") if bias else y

        def batch_norm(self, x, prefix: str):
            scale = self.p(f"{prefix}.weight") * tf.math.rsqrt(
                self.p(f"{prefix}.running_var") + _EPS)
            return (x - self.p(f"{prefix}.running_mean")) * scale + self.p(f"{prefix}.bias")

        def layer_norm(self, x, prefix: str):
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(var + _EPS) * self.p(f"{prefix}.weight") \
                + self.p(f"{prefix}.bias")

        def lstm_layer(self, x, layer: int):
            """One nn.LSTM layer over the whole sequence: x [B, T, in] -> [B, T, H]."""
            w_ih, w_hh = self.p(f"blocks.weight_ih_l{layer}"), self.p(f"blocks.weight_hh_l{layer}")
            bias = self.p(f"blocks.bias_ih_l{layer}") + self.p(f"blocks.bias_hh_l{layer}")
            hidden = width
            # Input projections of all time steps at once; the scan does only the recurrence.
            projected = tf.linalg.matmul(x, w_ih, transpose_b=True) + bias  # [B, T, 4H]
            zeros = tf.zeros([tf.shape(x)[0], hidden], dtype=x.dtype)

            def step(state, gates_x):
                h, c = state
                gates = gates_x + tf.linalg.matmul(h, w_hh, transpose_b=True)
                i, f, g, o = tf.split(gates, 4, axis=-1)  # PyTorch's gate order
                c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
                h = tf.sigmoid(o) * tf.tanh(c)
                return h, c

            hs, _ = tf.scan(step, tf.transpose(projected, [1, 0, 2]), initializer=(zeros, zeros))
            return tf.transpose(hs, [1, 0, 2])

        def attention(self, x, prefix: str):
            heads = int(model.blocks[0].attn.num_heads)
            head_dim = width // heads
            qkv = tf.linalg.matmul(x, self.p(f"{prefix}.in_proj_weight"), transpose_b=True) \
                + self.p(f"{prefix}.in_proj_bias")
            batch, seq = tf.shape(x)[0], tf.shape(x)[1]

            def split_heads(t):  # [B, T, E] -> [B, heads, T, head_dim]
                return tf.transpose(tf.reshape(t, [batch, seq, heads, head_dim]), [0, 2, 1, 3])

            q, k, v = (split_heads(t) for t in tf.split(qkv, 3, axis=-1))
            scores = tf.linalg.matmul(q, k, transpose_b=True) / float(np.sqrt(head_dim))
            out = tf.linalg.matmul(tf.nn.softmax(scores, axis=-1), v)
            out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [batch, seq, width])
            return self.linear(out, f"{prefix}.out_proj")

        def forward(self, x):
            if family is ModelFamily.FC:
                h = self.linear(x, "stem")
                for b in range(depth):
                    h = tf.nn.relu(self.linear(h, f"blocks.{b}.linear"))
            elif family is ModelFamily.CNN:
                h = tf.transpose(x, [0, 2, 3, 1])  # NCHW (the served input) -> NHWC
                h = self.conv3x3(h, "stem", bias=True)
                for b in range(depth):
                    p = f"blocks.{b}"
                    out = tf.nn.relu(self.batch_norm(self.conv3x3(h, f"{p}.conv1", False),
                                                     f"{p}.bn1"))
                    out = self.batch_norm(self.conv3x3(out, f"{p}.conv2", False), f"{p}.bn2")
                    h = tf.nn.relu(out + h)
                h = tf.reduce_mean(h, axis=[1, 2])  # global average pool
            elif family is ModelFamily.LSTM:
                h = self.linear(x, "stem")
                for layer in range(depth):
                    h = self.lstm_layer(h, layer)
                h = h[:, -1]
            else:
                h = self.linear(x, "stem")
                for b in range(depth):
                    p = f"blocks.{b}"
                    h = h + self.attention(self.layer_norm(h, f"{p}.norm1"), f"{p}.attn")
                    m = self.linear(self.layer_norm(h, f"{p}.norm2"), f"{p}.mlp.0")
                    m = self.linear(tf.nn.gelu(m, approximate=False), f"{p}.mlp.2")
                    h = h + m
                h = tf.reduce_mean(h, axis=1)
            return self.linear(h, "head")

    module = Ported()
    signature = tf.TensorSpec([None, *input_shape], tf.float32, name=INPUT_NAME)
    module.serve = tf.function(lambda input: {OUTPUT_NAME: module.forward(input)},
                               input_signature=[signature])
    return module


def export_savedmodel(model, example, path: Path) -> str:
    """Write the SavedModel directory `path` with a `serving_default` signature
    input [None, *input_shape] float32 -> {"output": [None, num_outputs]}; `example` is one
    input batch (its shape past the batch dimension is the input shape)."""
    tf = tensorflow()
    module = build_module(model, tuple(int(d) for d in example.shape[1:]))
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve})
    return f"tf_port (tensorflow {tf.__version__})"


def load_savedmodel(path: Path):
    """A function batch -> outputs that runs the SavedModel's serving signature, as TF
    Serving would (by signature, not by the Python object)."""
    tf = tensorflow()
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return lambda x: serve(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy()
