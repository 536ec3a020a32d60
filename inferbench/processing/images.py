"""Images: seeded JPEGs to send, and the ImageNet pre-processing a CNN expects.

The JPEGs are made here (no data set can be downloaded): smooth seeded colour fields with a
little grain, which compress like photographs do (tens of kB at 640 x 480), where noise
would not compress at all. Pre-processing is the usual ImageNet recipe: decode, resize the
shorter side to 256/224 of the model's side, crop the centre, scale to [0, 1], normalise by
ImageNet's channel mean and deviation, channels first.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
RESIZE_RATIO = 256 / 224  # resize the shorter side to this times the crop, then crop


def make_jpegs(n: int, width: int, height: int, quality: int, seed: int) -> list[bytes]:
    """`n` seeded JPEGs of width x height."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                           dtype=np.float32)
        grain = rng.normal(0, 6, size=field.shape)
        pixels = np.clip(field + grain, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def preprocess_image(jpeg: bytes, height: int, width: int) -> np.ndarray:
    """One JPEG as the float32 [3, height, width] tensor the model takes."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    scale = RESIZE_RATIO * max(height / image.height, width / image.width)
    resized = image.resize((max(width, round(image.width * scale)),
                            max(height, round(image.height * scale))), Image.BILINEAR)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    crop = resized.crop((left, top, left + width, top + height))
    pixels = np.asarray(crop, dtype=np.float32) / 255.0
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def preprocess_images(jpegs, height: int, width: int) -> np.ndarray:
    """A batch of JPEGs as one float32 [n, 3, height, width] tensor."""
    return np.stack([preprocess_image(bytes(j), height, width) for j in jpegs])
