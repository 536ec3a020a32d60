"""How containers are described for the docker runtime (no daemon needed: these check the
arguments handed to the docker SDK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferbench import containers
from inferbench.errors import InferBenchError
from inferbench.spec import example_spec, parse_spec


def _spec(tmp_path: Path, **kwargs) -> containers.ContainerSpec:
    return containers.ContainerSpec(image="inferbench/stage:cpu", command=["stage", "generate"],
                                    run_id="r1", role="generate", home=tmp_path, **kwargs)


def test_containers_mount_the_home_at_the_same_path_with_host_networking_and_labels(
        tmp_path, monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    kwargs = _spec(tmp_path).create_kwargs()
    assert kwargs["network_mode"] == "host"
    assert [(m["Source"], m["Target"]) for m in kwargs["mounts"]] == [(str(tmp_path),) * 2]
    assert kwargs["labels"] == {containers.LABEL_RUN: "r1", containers.LABEL_ROLE: "generate"}
    assert "device_requests" not in kwargs and "nano_cpus" not in kwargs


def test_the_docker_socket_is_mounted_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    proxy_socket = tmp_path / "proxy.sock"
    mounts = _spec(tmp_path, docker_socket=proxy_socket).create_kwargs()["mounts"]
    assert (str(proxy_socket), containers.DOCKER_SOCKET) in [(m["Source"], m["Target"])
                                                            for m in mounts]
    assert containers.DOCKER_SOCKET not in [m["Target"] for m in
                                            _spec(tmp_path).create_kwargs()["mounts"]]


def test_limits_become_hard_cpu_and_memory_limits(tmp_path, monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    kwargs = _spec(tmp_path, limits=containers.Limits(cpus=1.5, memory_gb=2)).create_kwargs()
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["mem_limit"] == 2 * 2**30
    assert "cpuset_cpus" not in kwargs


def test_a_cpu_list_keeps_the_container_on_those_cpus(tmp_path, monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "none")
    kwargs = _spec(tmp_path, limits=containers.Limits(cpuset="1-2")).create_kwargs()
    assert kwargs["cpuset_cpus"] == "1-2" and "nano_cpus" not in kwargs


@pytest.mark.parametrize(("value", "count"), [("all", -1), ("2", 2), ("none", 0)])
def test_gpu_requests_follow_the_worker_setting(tmp_path, monkeypatch, value, count):
    monkeypatch.setenv(containers.GPUS_ENV, value)
    kwargs = _spec(tmp_path).create_kwargs()
    if count:
        assert kwargs["device_requests"][0]["Count"] == count
        assert kwargs["device_requests"][0]["Capabilities"] == [["gpu"]]
    else:
        assert "device_requests" not in kwargs


def test_bad_worker_settings_are_named(monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "many")
    with pytest.raises(InferBenchError, match="INFERBENCH_GPUS='many'"):
        containers.gpu_count()
    monkeypatch.setenv(containers.RUNTIME_ENV, "kubernetes")
    with pytest.raises(InferBenchError, match="INFERBENCH_RUNTIME='kubernetes'.*'docker'"):
        containers.runtime_from_env()


def test_spec_resources_are_validated_with_the_field_named():
    data = example_spec().model_dump(mode="json")
    data["resources"] = {"cpus": -1}
    with pytest.raises(InferBenchError, match=r"resources\.cpus"):
        parse_spec(data)
    data["resources"] = {"cpus": 2, "memory_gb": 4}
    assert parse_spec(data).resources.memory_gb == 4
