"""A filtering Docker API proxy: what a stage container gets instead of the Docker socket.

The proxy listens on a unix socket and forwards to the daemon's socket only the calls its
`StagePolicy` (inferbench.docker_policy) allows; anything else is answered 403 with a JSON
{"message": ...} naming what was refused and why, as the daemon words its own errors, so the
docker SDK raises it as an APIError.

One request per connection, both ways: the request forwarded is exactly the one that was
checked (its head rebuilt, its body read by Content-Length), rewritten to `Connection:
close`, and the daemon's answer is relayed byte for byte until the daemon closes (streamed
logs and waits included); then the client's connection is closed too. A client that sends
a second request before the first one's answer gets a 403 for the whole connection, so a
kept-alive connection cannot carry an unchecked request.

Standard library only, a thread per connection; `DockerProxy.stop` ends them all.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from inferbench.containers import DOCKER_SOCKET
from inferbench.docker_policy import Refused, StagePolicy

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a container create is a few kB
CLIENT_TIMEOUT_S = 30.0       # to send a whole request
CHUNK = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(r"(?P<method>[A-Z]+) (?P<target>/\S*) HTTP/1\.[01]")
# Hop-by-hop headers (this proxy sets its own) and Expect (the body is already here).
_DROPPED = {"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect",
            "content-length", "trailer"}


class BadRequest(Refused):
    """A request this proxy cannot read as exactly one HTTP/1.x request."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class DockerProxy:
    """Serves `policy` on the unix socket `socket_path`, forwarding to `upstream`.

    :param log: called with one line per refused call (the task log in a stage run).
    """

    def __init__(self, socket_path: Path, policy: StagePolicy, upstream: str = DOCKER_SOCKET,
                 log: Callable[[str], None] | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.policy = policy
        self.upstream = upstream
        self.log = log or (lambda _line: None)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> DockerProxy:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under another name and renamed once listening: a socket file with the final
        # name always answers, so remove_stale_sockets never takes it for a dead one.
        binding = self.socket_path.with_name(self.socket_path.name + ".binding")
        _bind(listener, binding)
        listener.listen(16)
        os.rename(binding, self.socket_path)
        listener.settimeout(0.5)  # to notice stop()
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, name="docker-proxy",
                                           daemon=True)
        self._accepting.start()
        return self

    def stop(self) -> None:
        """Stop listening, end every open connection, remove the socket file."""
        self._stopping.set()
        if self._accepting is not None:
            self._accepting.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _shut(sock)
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> DockerProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(client,), daemon=True,
                             name="docker-proxy-connection").start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        request: Request | None = None
        try:
            try:
                request = read_request(client)
                target = self.policy.check(request.method, request.target, request.body,
                                           self._inspect)
            except Refused as refused:  # BadRequest too
                if refused.status != 404:  # a removed container's inspect is no news
                    call = f" {request.method} {request.path}" if request else ""
                    self.log(f"docker proxy refused{call}: {refused.message}")
                _answer(client, refused.status, refused.message)
                return
            self._forward(client, request, target)
        except OSError:
            pass  # the client or the daemon went away: nothing to answer to
        finally:
            self._untrack(client)
            client.close()

    def _forward(self, client: socket.socket, request: Request, target: str) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._track(upstream)
        try:
            upstream.connect(self.upstream)
            upstream.sendall(upstream_bytes(request, target))
            client.settimeout(None)
            self._relay(upstream, client)
        finally:
            self._untrack(upstream)
            upstream.close()

    def _relay(self, upstream: socket.socket, client: socket.socket) -> None:
        """The daemon's answer to the client until the daemon closes; anything more from
        the client (a second request) ends the connection unanswered."""
        with selectors.DefaultSelector() as selector:
            selector.register(upstream, selectors.EVENT_READ)
            selector.register(client, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(CHUNK)  # type: ignore[union-attr]
                    if key.fileobj is client or not data:
                        return
                    client.sendall(data)

    def _inspect(self, name: str) -> dict[str, Any] | None:
        """The daemon's view of a container (None: no such container)."""
        connection = _UnixHTTPConnection(self.upstream)
        try:
            connection.request("GET", f"/containers/{name}/json")
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            raise Refused(f"the daemon could not be asked about container {name}: {exc}",
                          status=502) from None
        finally:
            connection.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise Refused(f"the daemon could not inspect container {name} (HTTP "
                          f"{response.status})", status=502)
        return json.loads(data)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)


def read_request(client: socket.socket) -> Request:
    """Exactly one request from `client`; BadRequest when it is malformed, Refused when the
    client sent more than one."""
    client.settimeout(CLIENT_TIMEOUT_S)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest("request head too large", status=431)
        data = client.recv(CHUNK)
        if not data:
            raise BadRequest("the connection ended inside the request head")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    method, target, headers = parse_head(head)
    length = content_length(headers)
    while len(rest) < length:
        data = client.recv(CHUNK)
        if not data:
            raise BadRequest("the connection ended inside the request body")
        rest += data
    if rest[length:]:
        raise Refused("one request per connection: a second request was sent before the "
                      "first one's answer (pipelining is not accepted)")
    return Request(method, target, headers, rest[:length])


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, target, headers) of a request head; strict, so that the daemon cannot read
    it differently from this proxy."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("the request head is not ASCII") from None
    line, *header_lines = text.split("\r\n")
    request_line = _REQUEST_LINE.fullmatch(line)
    if not request_line:
        raise BadRequest(f"not an HTTP/1.x request line: {line[:100]!r}")
    headers = []
    for header in header_lines:
        name, colon, value = header.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise BadRequest(f"malformed header line {header[:100]!r}")
        headers.append((name, value.strip()))
    return request_line["method"], request_line["target"], headers


def content_length(headers: list[tuple[str, str]]) -> int:
    names = [name.lower() for name, _ in headers]
    if "transfer-encoding" in names:
        raise Refused("chunked request bodies are not accepted (send a Content-Length)")
    lengths = [value for name, value in headers if name.lower() == "content-length"]
    if len(lengths) > 1:
        raise BadRequest("more than one Content-Length")
    if not lengths:
        return 0
    if not lengths[0].isdigit() or int(lengths[0]) > MAX_BODY_BYTES:
        raise BadRequest(f"Content-Length {lengths[0][:20]!r} is not a size up to "
                         f"{MAX_BODY_BYTES} bytes")
    return int(lengths[0])


def upstream_bytes(request: Request, target: str) -> bytes:
    """The checked request as sent to the daemon: the checked target, `Connection: close`."""
    lines = [f"{request.method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers
              if name.lower() not in _DROPPED]
    if not any(name.lower() == "host" for name, _ in request.headers):
        lines.append("Host: docker")
    lines += ["Connection: close", f"Content-Length: {len(request.body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + request.body


def remove_stale_sockets(directory: Path) -> list[Path]:
    """Remove the socket files in `directory` that nothing listens on any more (proxies of
    task processes that were killed outright); returns them."""
    removed = []
    for path in directory.glob("*.sock"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _connect(probe, path)
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            pass  # not ours to judge
        finally:
            probe.close()
    return removed


def _answer(client: socket.socket, status: int, message: str) -> None:
    body = json.dumps({"message": f"InferBench docker proxy: {message}"}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    client.sendall(head.encode("ascii") + body)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# A unix socket's address holds at most 107 bytes; a home deep in a file system (a test's
# temporary directory) has longer paths. Through the directory's file descriptor the
# address stays short and names the same file.
_MAX_ADDRESS = 100


def _via_directory(sock_call: Callable[[str], None], path: Path) -> None:
    if len(os.fsencode(path)) < _MAX_ADDRESS:
        sock_call(str(path))
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        sock_call(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def _bind(sock: socket.socket, path: Path) -> None:
    _via_directory(sock.bind, path)


def _connect(sock: socket.socket, path: Path) -> None:
    _via_directory(sock.connect, path)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over the daemon's unix socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("docker", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        _connect(self.sock, Path(self.unix_path))
