"""What the project knows about each serving platform, held in one place.

The names (`Platform`, and the `ModelFormat` / `Transport` a platform is described by) live
here, and so does `PlatformDescriptor`: the facts about one platform (the format it serves,
the transports it speaks and the load generator's client for each, its start-up estimate, the
devices it runs on). Each backend class carries its own descriptor
(`inferbench.backends.base.Backend.descriptor`); spec validation, the scheduler's predictor,
the result queries and the stages read them through `inferbench.backends.descriptor()` /
`descriptors()` instead of keeping tables of their own.

This module imports nothing heavy (no pydantic, numpy or platform library): the spec, the
backends and the scheduler all import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class ModelFormat(StrEnum):
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    SAVEDMODEL = "savedmodel"  # TensorFlow SavedModel (needs the tensorflow extra)


class Platform(StrEnum):
    """Serving platforms; each has one module in inferbench/backends, whose backend class
    carries the platform's descriptor."""

    TRITON = "triton"
    ONNXRUNTIME = "onnxruntime"
    TORCHSCRIPT = "torchscript"
    OPENVINO = "openvino"
    TORCHSERVE = "torchserve"
    MLSERVER = "mlserver"
    TFSERVING = "tfserving"  # TensorFlow Serving


class Transport(StrEnum):
    """How the load stage reaches a server: its HTTP API, or its gRPC service (on the
    platforms whose descriptor lists one)."""

    HTTP = "http"
    GRPC = "grpc"


class DeviceKind(StrEnum):
    """Where a platform's server can run the model."""

    CPU = "cpu"
    GPU = "gpu"


# How the spec's `hardware` and the recorded devices are spelled: "cpu", "gpu" (the first
# GPU) or "gpu:<index>".
DEVICE_PATTERN = r"^(cpu|gpu(:[0-9]{1,2})?)$"


def device_kind(device: str) -> DeviceKind:
    """DeviceKind of a device spelled as DEVICE_PATTERN says."""
    return DeviceKind(device.split(":", 1)[0])


def gpu_index(device: str) -> int | None:
    """The GPU's index of "gpu" (0) or "gpu:N" (N); None for the CPU."""
    if device_kind(device) is not DeviceKind.GPU:
        return None
    return int(device.split(":", 1)[1]) if ":" in device else 0


@dataclass(frozen=True)
class PlatformDescriptor:
    """The facts about one serving platform that code outside its backend needs.

    `protocols` maps each transport the server speaks to the name of the load generator's
    client for it (a key of `inferbench.load.protocols.PROTOCOLS`); its keys are the
    transports `workload.transport` may name for this platform. Every platform speaks HTTP:
    readiness is polled there and the endpoint's default client is the HTTP one.

    `startup_s` is the cold start (process start until the model is ready, as the serve stage
    records it) for the scheduler's job-length prior. Unless the backend says otherwise next
    to its descriptor, it was measured on the 2-core development VM and rounded up; it only
    needs to be right in ratio (shortest-job-first orders by it, history rescales it).

    `devices` maps each device kind the platform can run on to how it gets there, so that
    a path that needs something special (an image, a runtime setting) says so.

    `free_sequence`: the server takes a sequence axis of any length up to the model's, so
    requests may be padded to buckets or sent at their own length (workload.sequence_length);
    otherwise every request is padded to the model's full sequence.

    `server_processing`: the server can take JPEGs or texts and answer top-k labels
    (spec.pipeline on the server); otherwise pre- and post-processing run on the client.
    """

    model_format: ModelFormat
    protocols: Mapping[Transport, str] = field(hash=False)
    startup_s: float
    devices: Mapping[DeviceKind, str] = field(hash=False)
    free_sequence: bool = False
    # The server decodes images / tokenises text and answers top-k labels itself
    # (spec.pipeline on the server: inferbench/processing/serving.py).
    server_processing: bool = False

    def __post_init__(self) -> None:
        bad = [t for t in self.protocols if t not in set(Transport)]
        if bad:
            raise ValueError(f"PlatformDescriptor.protocols keys {bad!r} are not transports; "
                             f"allowed: {[t.value for t in Transport]!r}; fix: key the "
                             "clients by Transport")
        if Transport.HTTP not in self.protocols:
            raise ValueError(
                f"PlatformDescriptor.protocols {dict(self.protocols)!r} has no "
                f"{Transport.HTTP.value!r} client; every platform is reached over HTTP "
                "(readiness, the default client); fix: add Transport.HTTP with the client's "
                "name")
        if not self.startup_s > 0:
            raise ValueError(f"PlatformDescriptor.startup_s {self.startup_s!r} must be > 0 "
                             "seconds; fix: give the measured (or estimated) cold start")
        if not self.devices or any(d not in set(DeviceKind) for d in self.devices):
            raise ValueError(
                f"PlatformDescriptor.devices {dict(self.devices)!r} must map at least one of "
                f"{[d.value for d in DeviceKind]!r} to how the platform runs there; fix: "
                "e.g. {DeviceKind.CPU: 'the server's own CPU build'}")
        # Read-only views with enum keys: a descriptor is shared by every instance of its
        # backend class.
        object.__setattr__(self, "protocols", MappingProxyType(
            {Transport(t): name for t, name in self.protocols.items()}))
        object.__setattr__(self, "devices", MappingProxyType(
            {DeviceKind(d): how for d, how in self.devices.items()}))

    @property
    def transports(self) -> frozenset[Transport]:
        return frozenset(self.protocols)
