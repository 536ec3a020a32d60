"""The platform facts have one source: each backend class's descriptor. These tests hold the
lists that must agree (platform names, backend registry, protocol registry) equal, and keep
the modules that read the facts cheap to import."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from inferbench.backends import backend_classes, descriptor, descriptors, get_backend
from inferbench.errors import InferBenchError
from inferbench.load import load_args
from inferbench.load.protocols import FULL_URL, GRPC_URL, PROTOCOLS, protocol_class
from inferbench.platforms import (
    DeviceKind,
    ModelFormat,
    Platform,
    PlatformDescriptor,
    Transport,
)

HEAVY = ("torch", "onnxruntime", "tritonclient", "openvino", "tensorflow", "grpc", "mlserver",
         "numpy", "docker")


def test_backend_registry_and_platform_enum_agree_exactly():
    registry = list(backend_classes())
    assert sorted(registry) == sorted(p.value for p in Platform)
    assert len(registry) == len(Platform)
    for name, cls in backend_classes().items():
        assert cls.name == name


def test_every_platform_has_its_backends_descriptor():
    assert list(descriptors()) == [Platform(name) for name in backend_classes()]
    for platform in Platform:
        facts = descriptor(platform)
        assert isinstance(facts, PlatformDescriptor)
        assert facts is backend_classes()[platform.value].descriptor
        assert descriptor(platform.value) is facts


def test_every_descriptor_protocol_is_in_the_protocol_registry():
    for platform, facts in descriptors().items():
        for transport, name in facts.protocols.items():
            assert name in PROTOCOLS, f"{platform.value}: {transport.value} client {name!r}"
            assert protocol_class(name).name == name
            # The serve stage gives gRPC clients the grpc:// endpoint and HTTP ones the base
            # URL (never a full URL: the stage knows only the host and port).
            wanted = GRPC_URL if transport is Transport.GRPC else "http://HOST:PORT"
            assert PROTOCOLS[name].endpoint == wanted, (platform.value, name)


def test_protocol_registry_entries_match_their_classes():
    for name, entry in PROTOCOLS.items():
        cls = protocol_class(name)
        assert cls.__name__ == entry.cls and cls.name == name
        # Clients given the full URL are the ones that name no model.
        assert cls.needs_model == (entry.endpoint != FULL_URL), name


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(InferBenchError, match=r"unknown protocol 'grpcx'; known: kserve-v2, "):
        protocol_class("grpcx")


def test_backend_shorthands_read_the_descriptor():
    for name in backend_classes():
        backend = get_backend(name)
        facts = backend.descriptor
        assert backend.model_format is facts.model_format
        assert backend.protocol == facts.protocols[Transport.HTTP]
        assert backend.grpc_protocol == facts.protocols.get(Transport.GRPC)
        with pytest.raises(AttributeError):
            backend.protocol = "http-raw"  # type: ignore[misc]


def test_descriptors_are_read_only():
    facts = descriptor(Platform.TRITON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.startup_s = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        facts.protocols[Transport.GRPC] = "http-raw"  # type: ignore[index]
    with pytest.raises(TypeError):
        descriptors()[Platform.TRITON] = facts  # type: ignore[index]


def _facts(**over) -> PlatformDescriptor:
    fields = {"model_format": ModelFormat.ONNX, "protocols": {Transport.HTTP: "kserve-v2"},
              "startup_s": 1.0, "devices": {DeviceKind.CPU: "its CPU build"}}
    return PlatformDescriptor(**{**fields, **over})


@pytest.mark.parametrize(("over", "message"), [
    ({"protocols": {Transport.GRPC: "kserve-v2-grpc"}}, "protocols .* has no 'http' client"),
    ({"protocols": {"http": "kserve-v2", "udp": "x"}}, "keys \\['udp'\\] are not transports"),
    ({"startup_s": 0.0}, "startup_s 0.0 must be > 0"),
    ({"devices": {}}, "devices {} must map at least one of \\['cpu', 'gpu'\\]"),
])
def test_descriptor_refuses_incomplete_facts(over, message):
    with pytest.raises(ValueError, match=message):
        _facts(**over)


def test_unknown_platform_lists_the_known_ones():
    with pytest.raises(InferBenchError, match="unknown serving platform 'tensorrt-llm'; known "
                       "platforms: triton, onnxruntime"):
        descriptor("tensorrt-llm")


def test_gpu_is_claimed_only_where_a_gpu_path_exists():
    # Every server runs on the CPU. A GPU: Triton through NVIDIA's image, the project's
    # FastAPI server with ONNX Runtime's CUDA provider or torch on cuda (servers/runtimes.py),
    # TorchServe's handler on cuda, MLServer's runtime on the CUDA provider (its GPU side env).
    # OpenVINO (its CPU plugin) and TF Serving (its CPU image) stay on the CPU.
    assert all(DeviceKind.CPU in facts.devices for facts in descriptors().values())
    assert {p for p, f in descriptors().items() if DeviceKind.GPU not in f.devices} == {
        Platform.OPENVINO, Platform.TFSERVING}
    assert "image" in descriptor(Platform.TRITON).devices[DeviceKind.GPU]
    assert "Docker image" in descriptor(Platform.TFSERVING).devices[DeviceKind.CPU]


def test_load_help_lists_every_registered_protocol():
    parser = argparse.ArgumentParser()
    load_args.add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["protocol"] == load_args.protocol_help()
    for name, entry in PROTOCOLS.items():
        assert f"{name} ({entry.summary})" in helps["protocol"]
        assert name in helps["endpoint"]
    assert helps["model"].endswith("(every protocol but http-json / http-raw)")
    assert parser.parse_args(["--endpoint", "x"]).protocol == load_args.DEFAULT_PROTOCOL


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_platform_lookups_import_no_platform_library():
    # Spec validation, the predictor and the result queries all look descriptors up: that
    # imports every backend module, which must leave the platforms' libraries alone.
    loaded = _modules_after(
        "from inferbench.spec import example_spec\n"
        "from inferbench.backends import descriptors\n"
        "from inferbench.scheduling.predictor import prior\n"
        "prior(example_spec()); descriptors()\n")
    assert "inferbench" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_parser_imports_no_protocol_client():
    # `inferbench load`'s options name every protocol, from the registry alone.
    loaded = _modules_after("from inferbench.cli import build_parser\nbuild_parser()\n")
    assert not loaded & {"numpy", "pydantic", "grpc"}, loaded & {"numpy", "pydantic", "grpc"}
