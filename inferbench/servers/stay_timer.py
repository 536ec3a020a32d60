"""Time each inference request's whole stay in the server, from the moment the HTTP server
hands over its parsed head to the moment the answer's last bytes are handed back to it.

An ASGI middleware, so it sees what a timer inside the request handler cannot: the routing,
reading the body, building the answer's response and writing it out. The time spent waiting
for the body's bytes to arrive is kept apart (`receive_ns`): it is the request's transmission,
set by the client's network, not work the server does.

It imports nothing of inferbench: MLServer's start-up (mlserver_start.py) runs it in
MLServer's own environment, around MLServer's REST application.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class StayCounters:
    """Cumulative, over the requests answered with status 200."""

    requests: int = 0
    stay_ns: int = 0     # in the server, less the waits for the body below
    receive_ns: int = 0  # waiting for the request body's bytes after its head

    def add(self, stay_ns: int, receive_ns: int) -> None:
        self.requests += 1
        self.stay_ns += stay_ns
        self.receive_ns += receive_ns


class StayTimer:
    """Times every POST whose path ends with `path_suffix` and answered 200, handing
    `record(stay_ns, receive_ns)` each (StayCounters.add, or a metric's)."""

    def __init__(self, app: ASGIApp, record: Callable[[int, int], None],
                 path_suffix: str = "/infer"):
        self.app, self.record, self.path_suffix = app, record, path_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or not scope["path"].endswith(self.path_suffix)):
            await self.app(scope, receive, send)
            return
        arrived_ns = time.perf_counter_ns()
        waited_ns = 0
        status = 0
        body_done = False

        async def timed_receive() -> Message:
            # Only the body's waits: a later receive() waits for the client to disconnect.
            nonlocal waited_ns, body_done
            if body_done:
                return await receive()
            started = time.perf_counter_ns()
            message = await receive()
            waited_ns += time.perf_counter_ns() - started
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if (message["type"] == "http.response.body" and not message.get("more_body")
                    and status == 200):
                self.record(time.perf_counter_ns() - arrived_ns - waited_ns, waited_ns)

        await self.app(scope, timed_receive, timed_send)
