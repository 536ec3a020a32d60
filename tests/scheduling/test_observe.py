"""How much of its time a job spent sharing its worker with another job in progress."""

import pytest

from inferbench.scheduling.observe import JobRecord, overlaps, shared_share


def job(label: str, worker: str, start_s: float, end_s: float) -> JobRecord:
    return JobRecord(run_id=label, label=label, worker=worker, submitted_s=0.0,
                     start_s=start_s, end_s=end_s, predicted_s=1.0, priority_weight=1)


def test_jobs_run_one_after_the_other_share_nothing():
    jobs = [job("a", "w0", 0, 10), job("b", "w0", 10, 20), job("c", "w1", 5, 15)]
    assert shared_share(jobs) == 0.0
    assert overlaps(jobs) == []


def test_interleaved_jobs_share_their_common_span_each():
    # a and b in progress together on w0 from 5 to 10: 5 s of a's 10 and 5 of b's 10.
    jobs = [job("a", "w0", 0, 10), job("b", "w0", 5, 15), job("c", "w1", 0, 10)]
    assert shared_share(jobs) == pytest.approx(10 / 30)
    assert overlaps(jobs) == [("w0", "a", "b")]


def test_a_span_shared_with_two_jobs_counts_once():
    # b and c both overlap a's 0-10 at 2-8 and 4-6: a shares 6 s of its time, not 8.
    jobs = [job("a", "w0", 0, 10), job("b", "w0", 2, 8), job("c", "w0", 4, 6)]
    assert shared_share(jobs) == pytest.approx((6 + 6 + 2) / (10 + 6 + 2))
