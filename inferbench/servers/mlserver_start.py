"""Start MLServer with each REST inference request's stay in it timed.

Copied by `MLServerBackend.prepare` into MLServer's repository as `inferbench_mlserver_start.py`,
beside stay_timer.py (as `inferbench_stay_timer.py`), and run by the side environment's
Python in place of the `mlserver` command, with the same arguments. It runs in MLServer's
own virtual environment (inferbench.sidevenv "mlserver"), so it must not import inferbench.

MLServer's metrics time its data plane (the batcher, the workers, the runtime), not its REST
layer: routing, reading and parsing the JSON body, encoding the JSON answer, which for a
large tensor cost more than the inference. So the REST application MLServer builds is
wrapped in the StayTimer, which adds each answered request's stay (less the waits for its
body's bytes) and those waits to two counters, STAY_METRIC and RECEIVE_METRIC, beside the
count REQUESTS_METRIC. They are made after MLServer has set Prometheus up for its worker
processes, so they are written to the same multiprocess files as MLServer's metrics and
served on its metrics port (read by inferbench/backends/mlserver.py).
"""

from __future__ import annotations

import sys

import mlserver.rest.server
from inferbench_stay_timer import StayTimer
from mlserver.cli import main
from prometheus_client import Counter

REQUESTS_METRIC = "inferbench_rest_requests"
STAY_METRIC = "inferbench_rest_stay_seconds"
RECEIVE_METRIC = "inferbench_rest_receive_seconds"

_create_app = mlserver.rest.server.create_app


def timed_create_app(*args, **kwargs):
    app = _create_app(*args, **kwargs)
    # registry=None: the multiprocess files export them; MLServer's registry need not.
    requests = Counter(REQUESTS_METRIC, "REST inference requests answered 200",
                       registry=None)
    stay = Counter(STAY_METRIC, "their time in the REST server, less the waits for "
                   "their bodies' bytes", registry=None)
    receive = Counter(RECEIVE_METRIC, "their waits for their bodies' bytes", registry=None)

    def record(stay_ns: int, receive_ns: int) -> None:
        requests.inc()
        stay.inc(stay_ns / 1e9)
        receive.inc(receive_ns / 1e9)

    app.add_middleware(StayTimer, record=record)
    return app


mlserver.rest.server.create_app = timed_create_app

if __name__ == "__main__":
    sys.exit(main())
