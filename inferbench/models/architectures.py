"""Well-known architectures, built from their published definitions with seeded random
weights (no weights can be downloaded here, and a benchmark of serving speed does not need
trained ones: the same graph runs the same operations).

The builders are Hugging Face transformers' model classes with their default configs
(transformers is pure Python beside the pinned CPU torch; torchvision's wheels need CUDA
libraries that torch's CPU build lacks). Each model is wrapped to take one float32 image
batch and return its logits, which is what every platform serves and the convert stage
checks.

The facts about each architecture (its default input, its outputs, where its definition
comes from) live in ARCHITECTURES: the spec validates against it and the report cites it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _resnet50(num_outputs: int) -> torch.nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(num_labels=num_outputs))


def _mobilenet_v2(num_outputs: int) -> torch.nn.Module:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=num_outputs))


@dataclass(frozen=True)
class ArchitectureFacts:
    """What the spec, the builder and the report need to know about one architecture."""

    input_shape: tuple[int, ...]  # the default sample shape (channels, height, width)
    num_outputs: int              # classes of its published classifier head
    definition: str               # where the layer structure comes from
    build: Callable[[int], torch.nn.Module]  # num_outputs -> the model (transformers)
    min_side: int = 32            # smallest height / width its downsampling accepts


# One entry per architecture the spec accepts (spec.Architecture is derived from the names).
ARCHITECTURES: dict[str, ArchitectureFacts] = {
    "resnet50": ArchitectureFacts(
        (3, 224, 224), 1000, "ResNet-50 v1.5 (He et al. 2016): transformers ResNetConfig "
        "defaults, bottleneck blocks [3, 4, 6, 3]", _resnet50),
    "mobilenet_v2": ArchitectureFacts(
        (3, 224, 224), 1000, "MobileNetV2 1.0 (Sandler et al. 2018): transformers "
        "MobileNetV2Config defaults, depth multiplier 1.0", _mobilenet_v2),
}


def build_architecture(name: str, num_outputs: int) -> torch.nn.Module:
    """The architecture with freshly initialised weights (the caller seeds torch's RNG),
    wrapped to map an image batch to its logits."""
    import torch

    class ImageLogits(torch.nn.Module):
        """images [batch, channels, height, width] -> logits [batch, num_outputs]."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=images, return_dict=False)[0]

    try:
        return ImageLogits(ARCHITECTURES[name].build(num_outputs))
    except ImportError as exc:
        from inferbench.errors import InferBenchError

        raise InferBenchError(f"model.architecture {name!r} is built with transformers, which "
                              f"cannot be imported ({exc}); fix: pip install "
                              "'inferbench[models]'") from None
