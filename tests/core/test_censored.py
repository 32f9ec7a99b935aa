from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendserve.core.sched.censored import REFRESH_SAMPLE, JobLengths, product_limit_moments, running_bounds

lengths = st.lists(st.floats(1, 5000, allow_nan=False), min_size=1, max_size=40)
bounds = st.lists(st.floats(1, 5000, allow_nan=False), max_size=40)


@given(lengths)
def test_without_running_lines_the_moments_are_the_sample_moments(events):
    mean, second = product_limit_moments(events, [])
    assert mean == pytest.approx(statistics.fmean(events))
    assert second == pytest.approx(statistics.fmean(d * d for d in events))


@given(lengths, bounds)
def test_running_lines_only_raise_the_estimate_and_never_past_the_evidence(events, censored):
    mean, second = product_limit_moments(events, censored)
    assert mean >= statistics.fmean(events) * (1 - 1e-9)  # mass moves only to longer lengths
    assert mean <= max(events + censored) * (1 + 1e-9)  # no extrapolation beyond what was seen
    assert second >= mean * mean * (1 - 1e-9)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(1, 1000, allow_nan=False)), max_size=30),
       st.lists(st.integers(0, 30), max_size=30))  # fmt: skip
def test_a_running_line_is_bound_by_the_longest_line_admitted_no_earlier_that_finished(done, running):
    got = running_bounds(done, running)
    want = [b for b in (max([d for s, d in done if s >= seq], default=0.0) for seq in running) if b > 0]
    assert got == pytest.approx(want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.2, 1.2))
def test_survivorship_short_lines_first_is_corrected(seed, sigma):
    """All lines start together and finish shortest first: after half finished, finished lines alone say the
    median-ish; with the running half as lower bounds the estimate sits between that and the truth."""
    rng = random.Random(seed)
    true = sorted(rng.lognormvariate(5, sigma) for _ in range(64))
    job = JobLengths()
    for i in range(64):
        job.admitted(i, 1)  # one admission round
    for i in range(32):
        job.finished(i, true[i])
    job.refresh()
    naive = statistics.fmean(true[:32])
    assert naive * (1 - 1e-9) <= job.mean <= statistics.fmean(true) * (1 + 1e-9)
    assert job.mean >= (naive + true[31]) / 2 * (1 - 1e-9)  # the running half at least at the longest finished


def test_a_line_that_ends_without_a_length_is_forgotten():
    job = JobLengths()
    job.admitted("a", 1)
    job.admitted("b", 1)
    job.dropped("a")
    job.finished("b", 10.0)
    job.finished("c", 30.0)  # never seen admitted: counts as admitted just now
    job.refresh()
    assert job.n == 2 and job.mean == pytest.approx(20.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_refresh_of_a_large_job_reads_a_sample_that_agrees_with_all_of_it(seed):
    """Above REFRESH_SAMPLE finished lines the estimate comes from a strided sample (bounded cost per refresh):
    within 2% of the estimate over every line, on lines that start in rounds and finish shortest first."""
    rng = random.Random(seed)
    job = JobLengths()
    lines = [(round_, rng.lognormvariate(5, 0.8)) for round_ in range(500) for _ in range(100)]
    for key, (round_, _) in enumerate(lines):
        job.admitted(key, round_)
    finished = sorted(range(len(lines)), key=lambda k: lines[k][0] * 50 + lines[k][1])[: 4 * REFRESH_SAMPLE]
    for key in finished:
        job.finished(key, lines[key][1])
    job.refresh()
    running = set(range(len(lines))) - set(finished)
    done = [(lines[k][0], lines[k][1]) for k in finished]
    exact = product_limit_moments([d for _, d in done], running_bounds(done, [lines[k][0] for k in running]))
    assert job.n == 4 * REFRESH_SAMPLE
    assert job.mean == pytest.approx(exact[0], rel=0.02)
    assert job.second_moment == pytest.approx(exact[1], rel=0.05)
