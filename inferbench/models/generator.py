"""The canonical model generator: `depth` blocks of one family, seeded random weights.

Latency does not depend on weight values, so seeded random weights stand in for trained
ones (which cannot be downloaded here). Every model takes a float32 batch of
`[batch, *input_shape]` and returns `[batch, num_outputs]`.
"""

from __future__ import annotations

import torch
from torch import nn

from inferbench.spec import ModelFamily, ModelSpec


class FcBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class ResidualConvBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity shortcut (ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + x)


class AttentionBlock(nn.Module):
    """Pre-norm transformer encoder block: multi-head self-attention + MLP."""

    HEADS = 4

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, self.HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CanonicalModel(nn.Module):
    """stem -> `depth` blocks -> pooled head; the stem maps the input to `width`."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.family = spec.family
        width = spec.width
        if spec.family is ModelFamily.FC:
            self.stem = nn.Linear(spec.input_shape[0], width)
            self.blocks = nn.Sequential(*(FcBlock(width) for _ in range(spec.depth)))
        elif spec.family is ModelFamily.CNN:
            self.stem = nn.Conv2d(spec.input_shape[0], width, 3, padding=1)
            self.blocks = nn.Sequential(*(ResidualConvBlock(width) for _ in range(spec.depth)))
        elif spec.family is ModelFamily.LSTM:
            self.stem = nn.Linear(spec.input_shape[1], width)
            self.blocks = nn.LSTM(width, width, num_layers=spec.depth, batch_first=True)
        elif spec.family is ModelFamily.ATTENTION:
            self.stem = nn.Linear(spec.input_shape[1], width)
            self.blocks = nn.Sequential(*(AttentionBlock(width) for _ in range(spec.depth)))
        self.head = nn.Linear(width, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.blocks(h)
        if self.family is ModelFamily.LSTM:
            h = h[0][:, -1]  # nn.LSTM returns (outputs, state): keep the last time step
        if self.family is ModelFamily.CNN:
            h = h.mean(dim=(2, 3))  # global average pool
        elif self.family is ModelFamily.ATTENTION:
            h = h.mean(dim=1)
        return self.head(h)


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the model (the canonical generator's, or a well-known architecture) with weights
    drawn from `spec.seed`, in eval mode (inference only)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(spec.seed)
        if spec.architecture is not None:
            from inferbench.models.architectures import build_architecture

            model = build_architecture(spec.architecture.value, spec.num_outputs)
        else:
            model = CanonicalModel(spec)
        # Batch-norm running statistics are random too, so the layer is not an identity.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.9, 1.1)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def sample_input(spec: ModelSpec, batch_size: int, seed: int) -> torch.Tensor:
    """Seeded float32 input of one batch, for a model with a single float32 input."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((batch_size, *spec.input_shape), generator=gen, dtype=torch.float32)


def sample_inputs(spec: ModelSpec, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded inputs of one batch for every input of the model's signature, in its order
    (the single float32 input as sample_input draws it)."""
    if len(spec.generated_inputs) == 1 and spec.generated_inputs[0].dtype == "float32":
        return {spec.generated_inputs[0].name: sample_input(spec, batch_size, seed)}
    import numpy as np

    from inferbench.models.signature import sample_inputs as draw

    arrays = draw(spec.generated_inputs, batch_size, np.random.default_rng(seed))
    return {name: torch.from_numpy(a) for name, a in arrays.items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
