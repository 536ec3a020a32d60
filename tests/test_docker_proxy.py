"""The Docker proxy that stage containers get instead of the Docker socket.

The request filter and the request reader are checked without a daemon (a fake container
lookup stands in for the daemon's answers); the rest puts a real proxy in front of the
real daemon and drives it with the docker SDK and raw HTTP, as a stage container would.
Those need a Docker daemon and skip without one, like tests/test_docker_runtime.py.
"""

# The shared fixtures are imported, and fixtures are parameters of the same name:
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from inferbench import containers
from inferbench.docker_policy import Refused, StagePolicy
from inferbench.docker_proxy import BadRequest, DockerProxy, read_request

RUN = "r1"
HOME = Path("/srv/inferbench")
DATA = Path("/srv/traces")
SERVER = containers.server_role("onnxruntime", 0)


# --- the request filter, without a daemon -------------------------------------------------

def _fake_daemon_lookup(name: str) -> dict | None:
    """Stands in for the daemon's container inspect."""
    known = {
        "mine": {RUN: SERVER},
        "other-run": {"r2": SERVER},
    }
    if name == "unlabelled":
        return {"Id": "f" * 64, "Config": {"Labels": {}}}
    if name not in known:
        return None
    (run, role), = known[name].items()
    return {"Id": name + "0" * 58,
            "Config": {"Labels": {containers.LABEL_RUN: run, containers.LABEL_ROLE: role}}}


def _create_body(**host_config) -> bytes:
    """A create body like the docker SDK's for a ContainerSpec, with `host_config` on top."""
    return json.dumps({
        "Image": "inferbench/stage:cpu", "Cmd": ["tritonserver"], "Entrypoint": [],
        "Env": ["A=1"], "Labels": {containers.LABEL_RUN: RUN, containers.LABEL_ROLE: SERVER},
        "WorkingDir": str(HOME), "Tty": False, "Hostname": None,
        "HostConfig": {
            "NetworkMode": "host", "NanoCpus": 2_000_000_000, "Memory": 2**30,
            "Mounts": [{"Target": str(HOME), "Source": str(HOME), "Type": "bind",
                        "ReadOnly": False},
                       {"Target": str(HOME / containers.PROXY_DIR_NAME), "Source": None,
                        "Type": "tmpfs", "ReadOnly": False}],
            "DeviceRequests": [{"Driver": "", "Count": -1, "DeviceIDs": None,
                                "Capabilities": [["gpu"]], "Options": {}}],
            **host_config},
    }).encode()


def _no_daemon(name: str) -> dict | None:
    raise AssertionError(f"asked the daemon about {name}: a create is judged by its body")


def _check(method: str, target: str, body: bytes = b"", lookup=_fake_daemon_lookup) -> str:
    policy = StagePolicy(run_id=RUN, home=HOME, read_only_dirs=(DATA,))
    return policy.check(method, target, body, lookup)


def _check_create(body: bytes, target: str = "/containers/create") -> str:
    return _check("POST", target, body, lookup=_no_daemon)


LABEL_FILTER = urlencode({"filters": json.dumps({"label": [f"{containers.LABEL_RUN}={RUN}"]})})


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/v1.41/version"), ("GET", "/info"),
    ("GET", "/v1.41/images/json"), ("GET", "/v1.41/images/nvcr.io/nvidia/triton:24.09/json"),
    ("GET", f"/v1.41/containers/json?all=1&{LABEL_FILTER}"),
])
def test_the_filter_passes_the_plain_calls_a_stage_makes_with_a_fake_daemon_lookup(
        method, target):
    assert _check(method, target) == target


@pytest.mark.parametrize(("method", "call"), [
    ("GET", "/json"), ("GET", "/logs?stdout=1&follow=1"), ("POST", "/start"),
    ("POST", "/stop?t=10"), ("POST", "/wait"), ("DELETE", "?force=1"),
])
def test_calls_on_the_runs_own_container_go_to_its_full_id_with_a_fake_daemon_lookup(
        method, call):
    full_id = "mine" + "0" * 58
    assert _check(method, f"/v1.41/containers/mine{call}") == f"/v1.41/containers/{full_id}{call}"


def test_a_serving_container_as_container_spec_describes_it_may_be_created():
    assert _check_create(_create_body(), "/v1.41/containers/create?name=s1").endswith("=s1")
    data = {"Target": str(DATA), "Source": str(DATA), "Type": "bind", "ReadOnly": True}
    assert _check_create(_create_body(Mounts=[data])) == "/containers/create"
    assert _check_create(_create_body(Binds=[f"{HOME}:{HOME}:rw"])) == "/containers/create"


@pytest.mark.parametrize(("host_config", "reason"), [
    ({"Privileged": True}, "privileged mode"),
    ({"PidMode": "host"}, "process namespace"),
    ({"IpcMode": "host"}, "IPC namespace"),
    ({"CapAdd": ["SYS_ADMIN"]}, "added capabilities"),
    ({"Devices": [{"PathOnHost": "/dev/sda"}]}, "host devices"),
    ({"SecurityOpt": ["seccomp=unconfined"]}, "security options"),
    ({"MaskedPaths": []}, "unmasked /proc"),
    ({"NetworkMode": "container:abc"}, "NetworkMode"),
    ({"DeviceRequests": [{"Driver": "", "Count": 1, "Capabilities": [["gpu", "compute"]]}]},
     "only GPUs by count"),
    ({"Binds": ["/:/host"]}, "only at its own path"),
    ({"Binds": ["/:/"]}, "binding '/'"),
    ({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}, "binding '/var/run/docker.sock'"),
    ({"Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/etc"}]}, "binding '/etc'"),
    ({"Mounts": [{"Type": "bind", "Source": str(HOME / containers.PROXY_DIR_NAME / "a.sock"),
                  "Target": str(HOME / containers.PROXY_DIR_NAME / "a.sock")}]},
     "only the InferBench home"),
    ({"Mounts": [{"Type": "bind", "Source": str(DATA), "Target": str(DATA)}]},
     "data directories read-only"),
    ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}]}, "'volume' mount"),
    ({"Mounts": [{"Type": "bind", "Source": str(HOME), "Target": str(HOME),
                  "BindOptions": {"Propagation": "rshared"}}]}, "propagation"),
    ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "kernel settings"),
    ({"OomScoreAdj": -1000}, "not a setting a serving container needs"),
])
def test_the_filter_refuses_a_create_that_asks_for_more_than_container_spec(host_config,
                                                                           reason):
    with pytest.raises(Refused, match=reason) as refused:
        _check_create(_create_body(**host_config))
    assert refused.value.status == 403


@pytest.mark.parametrize(("labels", "reason"), [
    ({}, f"label {containers.LABEL_RUN}={RUN}"),
    ({containers.LABEL_RUN: "r2", containers.LABEL_ROLE: SERVER}, "this run's"),
    ({containers.LABEL_RUN: RUN, containers.LABEL_ROLE: "measure"}, "serving container"),
])
def test_the_filter_refuses_a_create_without_this_runs_serving_labels(labels, reason):
    body = json.loads(_create_body())
    body["Labels"] = labels
    with pytest.raises(Refused, match=reason):
        _check_create(json.dumps(body).encode())


@pytest.mark.parametrize(("method", "target", "reason"), [
    ("GET", "/containers/other-run/json", "not one of this run's"),
    ("POST", "/containers/unlabelled/stop", "not one of this run's"),
    ("DELETE", "/containers/unlabelled?force=1", "not one of this run's"),
    ("POST", "/containers/mine/exec", "not a call a stage needs"),
    ("POST", "/containers/mine/attach", "not a call a stage needs"),
    ("GET", "/containers/mine/archive?path=/", "not a call a stage needs"),
    ("GET", "/containers/json", "only with the filter"),
    ("GET", "/containers/json?" + urlencode({"filters": '{"label": ["org.inferbench.run=r2"]}'}),
     "only with the"),
    ("POST", "/images/create?fromImage=alpine", "not a call a stage needs"),
    ("GET", "/swarm", "not a call a stage needs"), ("GET", "/plugins", "not a call"),
    ("POST", "/volumes/create", "not a call a stage needs"),
    ("GET", "/containers/mine/../../swarm", "plain names only"),
    ("GET", "/containers/mine%2F..%2F..%2Fswarm/json", "plain names only"),
])
def test_the_filter_refuses_everything_else_naming_why_with_a_fake_daemon_lookup(
        method, target, reason):
    with pytest.raises(Refused, match=reason):
        _check(method, target)


def test_a_container_the_daemon_does_not_know_is_not_found_with_a_fake_daemon_lookup():
    with pytest.raises(Refused, match="No such container: gone") as refused:
        _check("DELETE", "/containers/gone?force=1")
    assert refused.value.status == 404  # the docker SDK raises NotFound, as from the daemon


# --- reading exactly one request, over a real socket pair ---------------------------------

def _read(raw: bytes):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        theirs.shutdown(socket.SHUT_WR)
        return read_request(ours)


def test_one_request_is_read_with_its_body_by_content_length():
    request = _read(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n"
                    b"\r\n{}")
    assert (request.method, request.target, request.body) == ("POST", "/containers/create",
                                                               b"{}")


@pytest.mark.parametrize(("raw", "why"), [
    (b"GET /_ping HTTP/1.1\r\n\r\nGET /swarm HTTP/1.1\r\n\r\n", "one request per connection"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST /containers/a/stop HTTP/1.1\r\n\r\n",
     "one request per connection"),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "chunked"),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
     "more than one Content-Length"),
    (b"GET /_ping HTTP/1.1\r\nContent-Length : 5\r\n\r\n", "malformed header"),
    (b"GET /_ping HTTP/1.1\r\nA: b\nContent-Length: 5\r\n\r\n", "malformed header"),
    (b"GET /_ping HTTP/1.1\r\n folded\r\n\r\n", "malformed header"),
    (b"GET http://x/_ping HTTP/1.1\r\n\r\n", "not an HTTP/1.x request line"),
    (b"GET /_ping HTTP/1.1\r\n", "inside the request head"),
])
def test_anything_but_exactly_one_plain_request_is_refused(raw, why):
    with pytest.raises((BadRequest, Refused), match=why):
        _read(raw)


# --- a real proxy in front of the real daemon ---------------------------------------------

@dataclass
class Proxied:
    client: Any           # a docker SDK client of the proxy
    socket_path: str      # the proxy's socket
    run_id: str
    home: Path
    refusals: list[str]   # what the proxy logged


@pytest.fixture
def proxied(docker_client, stage_image):
    """A proxy for a fresh run in front of the real daemon, and a docker SDK client of it.
    Its directory is short: a unix socket's address holds about 100 bytes."""
    import docker

    base = Path(tempfile.mkdtemp(prefix="ibproxy-", dir="/tmp"))
    home = base / "home"
    home.mkdir()
    run_id = f"proxy-{os.getpid()}-{base.name}"
    refusals: list[str] = []
    proxy = DockerProxy(base / "docker.sock", StagePolicy(run_id=run_id, home=home.resolve()),
                        upstream=containers.daemon_socket(), log=refusals.append).start()
    client = docker.DockerClient(base_url=f"unix://{base / 'docker.sock'}")
    try:
        yield Proxied(client, str(base / "docker.sock"), run_id, home, refusals)
    finally:
        client.close()
        proxy.stop()
        for container in containers.run_containers(docker_client, run_id):
            containers.remove(container)
        shutil.rmtree(base, ignore_errors=True)


def _server_kwargs(image: str, run_id: str, home: Path, command: list[str], **extra) -> dict:
    spec = containers.ContainerSpec(image=image, command=command, entrypoint=["sh", "-c"],
                                    run_id=run_id, role=SERVER, home=home)
    return {**spec.create_kwargs(), **extra}


@pytest.fixture
def no_gpus(monkeypatch):
    monkeypatch.setenv(containers.GPUS_ENV, "none")


@pytest.mark.docker
@pytest.mark.integration
def test_a_stage_manages_its_runs_serving_container_through_the_proxy(
        proxied, stage_image, no_gpus):
    client, run_id, home = proxied.client, proxied.run_id, proxied.home
    assert client.ping() and client.version()["ApiVersion"] and client.info()["ID"]
    assert client.images.get(stage_image).id
    server = client.containers.run(**_server_kwargs(
        stage_image, run_id, home, ["echo ready; sleep 1; echo done"]))
    assert server.labels[containers.LABEL_RUN] == run_id
    assert [c.id for c in containers.run_containers(client, run_id)] == [server.id]
    followed = b"".join(server.logs(stream=True, follow=True))  # streamed until it exits
    assert followed == b"ready\ndone\n"
    assert server.wait(timeout=30)["StatusCode"] == 0
    server.reload()
    assert server.status == "exited"
    server.start()
    server.stop(timeout=1)
    containers.remove(server)
    containers.remove(server)  # gone already is fine: the proxy answers 404 as the daemon
    assert containers.run_containers(client, run_id) == []
    assert proxied.refusals == []


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.parametrize(("extra", "reason"), [
    ({"labels": {}}, "only with the label org.inferbench.run="),
    ({"privileged": True}, "privileged mode"),
    ({"mounts": [], "volumes": {"/": {"bind": "/host", "mode": "rw"}}}, "at its own path"),
    ({"mounts": [], "volumes": {"/": {"bind": "/", "mode": "ro"}}}, "binding '/'"),
    ({"mounts": [], "volumes": {containers.DOCKER_SOCKET: {
        "bind": containers.DOCKER_SOCKET, "mode": "rw"}}}, "binding '/var/run/docker.sock'"),
    ({"pid_mode": "host"}, "process namespace"),
    ({"cap_add": ["SYS_ADMIN"]}, "added capabilities"),
])
def test_the_proxy_refuses_a_create_beyond_a_serving_container_with_403_and_why(
        proxied, stage_image, docker_client, no_gpus, extra, reason):
    import docker.errors

    name = f"refused-{proxied.run_id}"
    kwargs = _server_kwargs(stage_image, proxied.run_id, proxied.home, ["sleep 60"], name=name,
                            **extra)
    with pytest.raises(docker.errors.APIError) as refused:
        proxied.client.containers.run(**kwargs)
    assert refused.value.response.status_code == 403
    assert reason in refused.value.explanation
    assert reason in proxied.refusals[-1] and "POST /" in proxied.refusals[-1]
    assert docker_client.containers.list(all=True, filters={"name": name}) == []


@pytest.fixture
def stranger(docker_client, stage_image):
    """A running container that is not InferBench's."""
    container = docker_client.containers.run(stage_image, ["60"], entrypoint=["sleep"],
                                             detach=True, network_mode="none")
    yield container
    containers.remove(container)


@pytest.mark.docker
@pytest.mark.integration
def test_the_proxy_refuses_any_call_on_a_container_that_is_not_the_runs(
        proxied, stranger, docker_client, stage_image):
    import docker.errors

    client = proxied.client
    other_run = docker_client.containers.run(
        stage_image, ["60"], entrypoint=["sleep"], detach=True, network_mode="none",
        labels={containers.LABEL_RUN: f"other-{proxied.run_id}", containers.LABEL_ROLE: SERVER})
    try:
        for target in (stranger, other_run):
            for call, kwargs in ((client.api.inspect_container, {}),
                                 (client.api.stop, {"timeout": 1}),
                                 (client.api.remove_container, {"force": True}),
                                 (client.api.logs, {})):
                with pytest.raises(docker.errors.APIError, match="not one of this run's") as e:
                    call(target.id, **kwargs)
                assert e.value.response.status_code == 403
            target.reload()
            assert target.status == "running"
    finally:
        containers.remove(other_run)


def _raw(socket_path: str, request: bytes, then: bytes = b"") -> list[bytes]:
    """What the proxy answers on one connection: to `request`, then (after reading that
    answer to its end) to `then` on the same connection, if it is still open."""
    answers = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(socket_path)
        for payload in (request, then):
            if not payload:
                break
            try:
                sock.sendall(payload)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
            answers.append(answer)
    return answers


def _status_and_message(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["message"]


@pytest.mark.docker
@pytest.mark.integration
def test_a_second_request_on_a_kept_alive_connection_never_reaches_the_daemon(
        proxied, stranger):
    stop_it = (f"POST /containers/{stranger.id}/stop?t=0 HTTP/1.1\r\nHost: docker\r\n"
               "Content-Length: 0\r\n\r\n").encode()
    ping = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n"

    # Pipelined behind an allowed call: the whole connection is refused.
    (pipelined,) = _raw(proxied.socket_path, ping + stop_it)
    assert pipelined.count(b"HTTP/1.1 ") == 1
    status, message = _status_and_message(pipelined)
    assert status == 403 and "one request per connection" in message

    # Sent after the first answer: that answer said `Connection: close`, and the proxy
    # closed the connection, so the second request gets nothing.
    first, second = _raw(proxied.socket_path, ping, then=stop_it)
    assert first.startswith(b"HTTP/1.1 200") and b"connection: close" in first.lower()
    assert first.endswith(b"OK") and second == b""
    stranger.reload()
    assert stranger.status == "running"


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.parametrize("target", ["GET /swarm", "GET /plugins", "GET /v1.41/volumes",
                                    "POST /v1.41/images/create?fromImage=alpine&tag=3",
                                    "POST /containers/{own}/exec", "GET /secrets",
                                    "POST /containers/{own}/attach?stream=1&stdout=1"])
def test_the_proxy_refuses_endpoints_a_stage_does_not_need(proxied, stage_image, no_gpus,
                                                           target):
    own = proxied.client.containers.run(**_server_kwargs(stage_image, proxied.run_id,
                                                          proxied.home, ["sleep 60"]))
    request_line = target.format(own=own.id)
    body = b'{"Cmd": ["sh"], "AttachStdout": true}' if "exec" in target else b""
    (answer,) = _raw(proxied.socket_path,
                     f"{request_line} HTTP/1.1\r\nHost: docker\r\nContent-Length: "
                     f"{len(body)}\r\n\r\n".encode() + body)
    status, message = _status_and_message(answer)
    assert status == 403
    assert request_line.split("?")[0].split()[1].replace("/v1.41", "") in message
    assert "not a call a stage needs" in message
