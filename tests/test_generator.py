"""The canonical model generator: every family builds, has the promised shapes, is seeded."""

from __future__ import annotations

import pytest
import torch

from inferbench.models.generator import build_model, count_parameters, sample_input
from inferbench.spec import ModelSpec

FAMILIES = [
    ModelSpec(family="fc", depth=3, width=16, input_shape=[12]),
    ModelSpec(family="cnn", depth=2, width=8, input_shape=[3, 16, 16]),
    ModelSpec(family="lstm", depth=2, width=16, input_shape=[5, 6]),
    ModelSpec(family="attention", depth=2, width=16, input_shape=[5, 6], num_outputs=3),
]


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family.value)
def test_family_output_shape_and_seed(spec):
    model = build_model(spec)
    x = sample_input(spec, 4, seed=1)
    with torch.no_grad():
        y = model(x)
        assert tuple(y.shape) == (4, spec.num_outputs)
        assert torch.equal(build_model(spec)(x), y)  # same seed, same weights
        other = build_model(spec.model_copy(update={"seed": 1}))
        assert not torch.equal(other(x), y)


def test_depth_adds_parameters_and_global_rng_is_untouched():
    state = torch.random.get_rng_state()
    shallow = build_model(ModelSpec(family="fc", depth=1, width=16, input_shape=[8]))
    deep = build_model(ModelSpec(family="fc", depth=4, width=16, input_shape=[8]))
    assert count_parameters(deep) - count_parameters(shallow) == 3 * (16 * 16 + 16)
    assert torch.equal(torch.random.get_rng_state(), state)
