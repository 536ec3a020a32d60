"""Which requests of an open-loop point arrived while nothing was in flight."""

from __future__ import annotations

import numpy as np

from inferbench.load.profile import idle_arrivals


def test_an_arrival_is_idle_only_when_every_earlier_request_was_answered():
    # Due at 0, 10, 12, 30, 31 ms; answered at 5, 20, 14, 35, 40 ms (ns below).
    scheduled = np.array([0, 10, 12, 30, 31]) * 1_000_000
    done = np.array([5, 20, 14, 35, 40]) * 1_000_000
    # 0: no known past; 10: the first was answered at 5; 12: the second is out until 20;
    # 30: everything due before was answered by 20; 31: the fourth is out until 35.
    assert idle_arrivals(scheduled, done).tolist() == [False, True, False, True, False]


def test_the_order_of_the_records_does_not_matter():
    scheduled = np.array([30, 0, 12, 10, 31]) * 1_000_000
    done = np.array([35, 5, 14, 20, 40]) * 1_000_000
    assert idle_arrivals(scheduled, done).tolist() == [True, False, False, True, False]


def test_a_long_request_keeps_later_ones_from_being_idle():
    # The first is out until 100 ms: the others (answered quickly) were not idle arrivals.
    scheduled = np.array([0, 10, 50, 120]) * 1_000_000
    done = np.array([100, 15, 55, 125]) * 1_000_000
    assert idle_arrivals(scheduled, done).tolist() == [False, False, False, True]
