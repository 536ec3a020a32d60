"""Well-known architectures, built from their published definitions with seeded random
weights (no weights can be downloaded here, and a benchmark of serving speed does not need
trained ones: the same graph runs the same operations).

The builders are Hugging Face transformers' model classes with their default configs
(transformers is pure Python beside the pinned CPU torch; torchvision's wheels need CUDA
libraries that torch's CPU build lacks). Each model is wrapped to return its logits from
plain tensors, which is what every platform serves and the convert stage checks: an image
classifier takes one float32 image batch, a text classifier int64 token ids and an
attention mask (models/signature.py).

The facts about each architecture (its default input, its outputs, where its definition
comes from) live in ARCHITECTURES: the spec validates against it and the report cites it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferbench.models.signature import Fill, TensorSpec, single_input

if TYPE_CHECKING:
    import torch


def _resnet50(num_outputs: int) -> torch.nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(num_labels=num_outputs))


def _mobilenet_v2(num_outputs: int) -> torch.nn.Module:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(MobileNetV2Config(num_labels=num_outputs))


def _bert_base(num_outputs: int) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(num_labels=num_outputs))


@dataclass(frozen=True)
class ArchitectureFacts:
    """What the spec, the builder and the report need to know about one architecture."""

    input_shape: tuple[int, ...]  # the default sample shape: (channels, height, width) of an
    #                               image, (sequence,) of text
    num_outputs: int              # classes of its published classifier head
    definition: str               # where the layer structure comes from
    build: Callable[[int], torch.nn.Module]  # num_outputs -> the model (transformers)
    min_side: int = 32            # images: smallest height / width its downsampling accepts
    vocab: int = 0                # text: the token vocabulary (0: the model takes images)
    max_sequence: int = 0         # text: its position embeddings' length

    @property
    def text(self) -> bool:
        return self.vocab > 0

    def inputs(self, shape: tuple[int, ...]) -> tuple[TensorSpec, ...]:
        """The model's input signature at sample shape `shape`."""
        if not self.text:
            return single_input(shape)
        return (TensorSpec("input_ids", "int64", shape, Fill.TOKENS, self.vocab),
                TensorSpec("attention_mask", "int64", shape, Fill.MASK))


# One entry per architecture the spec accepts (spec.Architecture is derived from the names).
ARCHITECTURES: dict[str, ArchitectureFacts] = {
    "resnet50": ArchitectureFacts(
        (3, 224, 224), 1000, "ResNet-50 v1.5 (He et al. 2016): transformers ResNetConfig "
        "defaults, bottleneck blocks [3, 4, 6, 3]", _resnet50),
    "mobilenet_v2": ArchitectureFacts(
        (3, 224, 224), 1000, "MobileNetV2 1.0 (Sandler et al. 2018): transformers "
        "MobileNetV2Config defaults, depth multiplier 1.0", _mobilenet_v2),
    "bert_base": ArchitectureFacts(
        (128,), 2, "BERT-Base (Devlin et al. 2019): transformers BertConfig defaults, 12 "
        "layers, hidden 768, 12 heads, a sequence-classification head", _bert_base,
        vocab=30522, max_sequence=512),
}


def build_architecture(name: str, num_outputs: int) -> torch.nn.Module:
    """The architecture with freshly initialised weights (the caller seeds torch's RNG),
    wrapped to map its input tensors to its logits."""
    import torch

    class ImageLogits(torch.nn.Module):
        """images [batch, channels, height, width] -> logits [batch, num_outputs]."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=images, return_dict=False)[0]

    class TextLogits(torch.nn.Module):
        """token ids, attention mask [batch, sequence] -> logits [batch, num_outputs]."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=False)[0]

    facts = ARCHITECTURES[name]
    try:
        return (TextLogits if facts.text else ImageLogits)(facts.build(num_outputs))
    except ImportError as exc:
        from inferbench.errors import InferBenchError

        raise InferBenchError(f"model.architecture {name!r} is built with transformers, which "
                              f"cannot be imported ({exc}); fix: pip install "
                              "'inferbench[models]'") from None
