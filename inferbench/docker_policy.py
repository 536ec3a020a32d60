"""What a stage container may ask of the Docker daemon (enforced by inferbench.docker_proxy).

A stage that controls servers (measure, serve, stop) starts its run's serving containers and
inspects, reads the logs of, stops and removes them, through the docker SDK
(inferbench.stages.serve, inferbench.containers). Those calls, and nothing else, are allowed:

- `_ping`, `version`, `info`; image inspect and list (never a pull: images come from the
  worker);
- listing containers, filtered to this run's label;
- creating a container labelled with this run and a serving role (`server:...`), without
  privileges, host namespaces other than the network, added capabilities or devices beyond
  GPUs requested by count, and with bind mounts only of the InferBench home and the
  read-only data directories at their own paths (as `ContainerSpec` mounts them);
- inspect, logs, start, stop, wait and remove of a container labelled with this run, after
  the real daemon says so (the forwarded call names the container by its full id).

A container with the real socket is root on the host; these rules keep a stage container to
its own run's serving containers. Everything else is refused, naming what and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from inferbench.containers import LABEL_ROLE, LABEL_RUN, SERVER_ROLE_PREFIX

# The daemon's answer to inspecting a container, or None where there is no such container.
Inspect = Callable[[str], "dict[str, Any] | None"]

_VERSIONED = re.compile(r"(?P<version>/v\d+\.\d+)?(?P<path>/.*)")
# Names, ids and image references; nothing that could be decoded or normalised differently
# by the daemon than here (no '%', no '..', no '//').
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/:@-]*")
_QUERY_CHARS = re.compile(r"[!-~]*")  # printable ASCII without the space
_CONTAINER = re.compile(r"/containers/(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:/(?P<call>[a-z]+))?")
_IMAGE_INSPECT = re.compile(r"/images/[A-Za-z0-9][A-Za-z0-9._/:@-]*/json")

_PLAIN_CALLS = {("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/info"),
                ("GET", "/images/json")}
# (method, call after /containers/{id}); "" is the container itself (DELETE removes it).
_CONTAINER_CALLS = {("GET", "json"), ("GET", "logs"), ("POST", "start"), ("POST", "stop"),
                    ("POST", "wait"), ("DELETE", "")}

# Container settings the docker SDK sends for a ContainerSpec; any other must be unset.
_CONFIG_KEYS = {"Image", "Cmd", "Entrypoint", "Env", "Labels", "WorkingDir", "HostConfig"}
_NETWORK_MODES = {"host", "default", "bridge", "none"}
_NUMBER_HOST_KEYS = {"NanoCpus", "CpuShares", "Memory", "MemorySwap", "ShmSize"}
# Why the dangerous host settings are refused, for the message.
_HOST_REASONS = {
    "Privileged": "privileged mode",
    "PidMode": "the host's or another container's process namespace",
    "IpcMode": "the host's or another container's IPC namespace",
    "UTSMode": "the host's UTS namespace",
    "UsernsMode": "the host's user namespace",
    "CgroupnsMode": "the host's cgroup namespace",
    "CapAdd": "added capabilities",
    "Devices": "host devices",
    "DeviceCgroupRules": "device access rules",
    "SecurityOpt": "security options (seccomp, AppArmor)",
    "Sysctls": "kernel settings",
    "VolumesFrom": "another container's volumes",
    "CgroupParent": "another cgroup",
    "Runtime": "another container runtime",
    "MaskedPaths": "unmasked /proc paths",
    "ReadonlyPaths": "writable /proc paths",
}
# An empty list is not the default for these: it unmasks (or makes writable) /proc paths.
_SET_EVEN_WHEN_EMPTY = {"MaskedPaths", "ReadonlyPaths"}


class Refused(Exception):
    """A call the stage may not make; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class StagePolicy:
    """The calls one stage container of run `run_id` may make.

    :param home: the InferBench home, as mounted (same path) in every container.
    :param read_only_dirs: the data directories a container may mount read-only.
    """

    run_id: str
    home: Path
    read_only_dirs: tuple[Path, ...] = ()

    def check(self, method: str, target: str, body: bytes, inspect: Inspect) -> str:
        """The request target to forward for this call, or Refused."""
        version, path, query = _split_target(target)
        if (method, path) in _PLAIN_CALLS or (method == "GET" and _IMAGE_INSPECT.fullmatch(path)):
            return target
        if method == "GET" and path == "/containers/json":
            self._check_listing(query)
            return target
        if method == "POST" and path == "/containers/create":
            self._check_create(body)
            return target
        container = _CONTAINER.fullmatch(path)
        if container and (method, container["call"] or "") in _CONTAINER_CALLS:
            full_id = self._check_container(container["id"], inspect)
            call = f"/{container['call']}" if container["call"] else ""
            return f"{version}/containers/{full_id}{call}" + (f"?{query}" if query else "")
        raise Refused(f"{method} {path} is not a call a stage needs (allowed: its run's "
                      "serving containers: create, inspect, logs, start, stop, wait, remove; "
                      "listing them; ping, version, info; image inspect and list)")

    def _check_listing(self, query: str) -> None:
        wanted = f"{LABEL_RUN}={self.run_id}"
        filters = parse_qs(query).get("filters", [])
        try:
            labels = json.loads(filters[0]).get("label", []) if filters else []
        except (ValueError, AttributeError):
            labels = []
        if wanted not in labels:  # a list, or the older {label: true} form
            raise Refused(f"listing containers is allowed only with the filter label={wanted}")

    def _check_container(self, name: str, inspect: Inspect) -> str:
        attrs = inspect(name)
        if attrs is None:
            # The daemon's own answer, so that the docker SDK raises NotFound.
            raise Refused(f"No such container: {name}", status=404)
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_RUN) != self.run_id:
            raise Refused(f"container {name} is not one of this run's (it lacks the label "
                          f"{LABEL_RUN}={self.run_id})")
        return str(attrs["Id"])

    def _check_create(self, body: bytes) -> None:
        try:
            config = json.loads(body or b"{}")
        except ValueError:
            raise Refused("the container create body is not JSON", status=400) from None
        if not isinstance(config, dict):
            raise Refused("the container create body is not a JSON object", status=400)
        labels = config.get("Labels") or {}
        if labels.get(LABEL_RUN) != self.run_id:
            raise Refused(f"a container is created only with the label {LABEL_RUN}="
                          f"{self.run_id} (this run's)")
        if not str(labels.get(LABEL_ROLE, "")).startswith(SERVER_ROLE_PREFIX):
            raise Refused(f"a container is created only as a serving container (label "
                          f"{LABEL_ROLE}={SERVER_ROLE_PREFIX}<platform>:<config>)")
        host = config.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise Refused("HostConfig is not a JSON object", status=400)
        # The host settings first: a bind also shows as a volume in the container's settings.
        for key, value in host.items():
            self._check_host_setting(key, value)
        for key, value in config.items():
            if key not in _CONFIG_KEYS and not _unset(value):
                raise Refused(f"container setting {key}={value!r} is not allowed")

    def _check_host_setting(self, key: str, value: Any) -> None:
        if key == "NetworkMode":
            if value not in _NETWORK_MODES and not _unset(value):
                raise Refused(f"HostConfig.NetworkMode={value!r} is not allowed (only "
                              f"{', '.join(sorted(_NETWORK_MODES))})")
        elif key == "Mounts":
            for mount in value or []:
                self._check_mount(mount)
        elif key == "Binds":
            for bind in value or []:
                self._check_bind(bind)
        elif key == "DeviceRequests":
            for request in value or []:
                _check_gpu_request(request)
        elif key in _NUMBER_HOST_KEYS:
            if not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
                raise Refused(f"HostConfig.{key}={value!r} is not a number", status=400)
        elif not _unset(value) or (key in _SET_EVEN_WHEN_EMPTY and value is not None):
            reason = _HOST_REASONS.get(key, "not a setting a serving container needs")
            raise Refused(f"HostConfig.{key}={value!r} is not allowed: {reason}")

    def _check_mount(self, mount: Any) -> None:
        if not isinstance(mount, dict):
            raise Refused(f"mount {mount!r} is not a JSON object", status=400)
        kind = mount.get("Type")
        if kind == "tmpfs":
            return  # memory only: nothing of the host
        if kind != "bind":
            raise Refused(f"a {kind!r} mount is not allowed (only binds of the InferBench home "
                          "and the data directories, and tmpfs)")
        options = mount.get("BindOptions") or {}
        if options.get("Propagation") not in (None, "", "private", "rprivate"):
            raise Refused(f"bind propagation {options['Propagation']!r} is not allowed")
        self._check_bind_paths(mount.get("Source"), mount.get("Target"),
                               bool(mount.get("ReadOnly")))

    def _check_bind(self, bind: Any) -> None:
        parts = str(bind).split(":")
        if len(parts) not in (2, 3):
            raise Refused(f"bind {bind!r} is not SOURCE:TARGET[:OPTIONS]", status=400)
        options = parts[2].split(",") if len(parts) == 3 else []
        if any(o not in ("ro", "rw", "z", "Z", "private", "rprivate") for o in options):
            raise Refused(f"bind options in {bind!r} are not allowed")
        self._check_bind_paths(parts[0], parts[1], "ro" in options)

    def _check_bind_paths(self, source: Any, target: Any, read_only: bool) -> None:
        """Exactly the home, or exactly a data directory read-only, at its own path: exact
        paths, so a symlink a stage writes into the home cannot lead the daemon elsewhere."""
        if source != target:
            raise Refused(f"a bind mount is allowed only at its own path (got {source!r} on "
                          f"{target!r})")
        if source == str(self.home):
            return
        if read_only and source in {str(d) for d in self.read_only_dirs}:
            return
        raise Refused(f"binding {source!r} is not allowed (only the InferBench home "
                      f"{str(self.home)!r}, and the data directories read-only)")


def _check_gpu_request(request: Any) -> None:
    """GPUs by count, as ContainerSpec asks for them; no other device."""
    if not isinstance(request, dict):
        raise Refused(f"device request {request!r} is not a JSON object", status=400)
    if (request.get("Driver") not in (None, "", "nvidia")
            or request.get("Capabilities") != [["gpu"]]
            or request.get("DeviceIDs") or request.get("Options")
            or not isinstance(request.get("Count"), int)):
        raise Refused(f"device request {request!r} is not allowed (only GPUs by count: "
                      "Capabilities [['gpu']])")


def _unset(value: Any) -> bool:
    """The settings' defaults as clients send them: nothing asked for."""
    return value is None or value is False or value in ("", [], {})


def _split_target(target: str) -> tuple[str, str, str]:
    """(API version prefix, path, query) of a request target; Refused when the path holds
    anything that the daemon might read differently from this check."""
    raw_path, _, query = target.partition("?")
    match = _VERSIONED.fullmatch(raw_path)
    if (not match or not _PATH_CHARS.fullmatch(match["path"]) or "//" in match["path"]
            or any(part in (".", "..") for part in match["path"].split("/"))
            or not _QUERY_CHARS.fullmatch(query)):
        raise Refused(f"request path {target[:200]!r} is not allowed (plain names only)",
                      status=400)
    return match["version"] or "", match["path"], query
