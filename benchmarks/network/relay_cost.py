"""What does the relay itself add to a round trip, and how steady is it?

For each delay d per direction, a relay (inferbench/network/link.py) with nothing taken off
its delay lines starts in a process of its own in front of an echo server in another; the
round trip added is the median of one-byte pings through it less the median straight to
the echo, and the relay's own cost is that less 2 d. Each delay is a fresh relay, as each
run's link is. If the cost were steady, a link could take it off its delay lines exactly
(it measures it at its start); how much it moves from start to start bounds how closely a
short round trip (a LAN's 0.2 ms) can be emulated.

    .venv/bin/python benchmarks/network/relay_cost.py [--pings 300] [--delays 0,0.01,...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys

from calibrate import serve_echo

from inferbench.network.link import Link, ping_ms
from inferbench.network.profiles import LinkProfile


def _relay(delay_ms: float, port: int, out) -> None:
    sys.setswitchinterval(0.0001)  # as the link process runs
    profile = LinkProfile("probe", delay_ms=delay_ms, jitter_ms=0.0, bandwidth_mbps=940,
                          uplink_mbps=940)
    link = Link(profile, ("127.0.0.1", port), own_rtt_ms=0.0)
    out.send(link.port)
    link.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--delays", default="0,0.01,0.03,0.05,0.1,0.2,0.5,1.0")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ours, theirs = multiprocessing.Pipe()
    multiprocessing.Process(target=serve_echo, args=(theirs,), daemon=True).start()
    port = ours.recv()
    straight = statistics.median(ping_ms(port, args.pings, warmup=5))
    print(f"round trip straight to the echo: {straight:.3f} ms (median of {args.pings})\n")
    print("| delay each way (ms) | round trip added (ms) | relay's own cost (ms) |")
    print("|---:|---:|---:|")
    costs = []
    for delay in (float(d) for d in args.delays.split(",")):
        ours, theirs = multiprocessing.Pipe()
        relay = multiprocessing.Process(target=_relay, args=(delay, port, theirs),
                                        daemon=True)
        relay.start()
        through = statistics.median(ping_ms(ours.recv(), args.pings, warmup=20))
        relay.terminate()
        relay.join()
        added = through - straight
        costs.append(added - 2 * delay)
        print(f"| {delay:g} | {added:.3f} | {added - 2 * delay:.3f} |")
    print(f"\nown cost: {min(costs):.3f}-{max(costs):.3f} ms, "
          f"median {statistics.median(costs):.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
