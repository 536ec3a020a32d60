"""How long a light profile's levels and probes run (inferbench/load/profile.py).

Kept apart from the profiler so that the job-length predictor, which schedules by these
figures, reads them without importing the load generator's numeric stack.
"""

# Each level needs at least this many answers for its percentiles to mean anything.
MIN_LEVEL_REQUESTS = 50
# Profiling a server that keeps scaling stops here (its capacity is then a lower bound).
MAX_IN_FLIGHT = 16
# Later levels run on a warm server: a short warm-up at their own concurrency suffices.
LEVEL_SETTLE_S = 0.5
# The idle-arrival probe: Poisson at this share of the profiled capacity, so most arrivals
# find the server idle after a gap like the light rungs' (a lower rate would take longer to
# collect them); it runs until this many did, within PROBE_MAX_S.
PROBE_RHO = 0.2
PROBE_MIN_IDLE = 40
PROBE_MAX_S = 15.0
# The loaded probe: half the closed-loop capacity (a queue's mean there moves with the
# service time, yet a few seconds estimate it), at least this many requests.
PROBE_LOADED_RHO = 0.5
PROBE_LOADED_MIN = 150
# The near-capacity probe: this share of the capacity the first loaded probe calibrates
# (high enough that the load's effect on the service shows, low enough that a factor still
# falling with the load keeps the queue stable); run only where that is at least
# PROBE_NEAR_STEP times the first probe's rate (else the first already measured it).
PROBE_NEAR_RHO = 0.85
PROBE_NEAR_STEP = 1.2
# Fewer idle arrivals than this give no idle-arrival law (the prediction goes without).
PROBE_LEAST_IDLE = 10
