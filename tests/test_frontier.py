"""frontier.py, the compute multiplier's analysis: the frontier made monotone and inverted by hand, the multiplier
exact on a power law, the fit recovering its parameters, the bootstrap seeded and paired, and the 95% intervals'
coverage of a known multiplier on synthetic studies with seed noise."""
import math
import random

import pytest

import frontier as F


def test_monotone_pools_a_later_point_that_is_higher():
    assert F.monotone([(8, 1.5), (1, 3.0), (2, 2.0), (4, 2.2)]) == [(1, 3.0), (2, pytest.approx(2.1)),
                                                                   (4, pytest.approx(2.1)), (8, 1.5)]
    assert F.monotone([(1, 2.0), (2, 1.0)]) == [(1, 2.0), (2, 1.0)]


def test_steps_to_interpolates_log_steps_against_log_loss_and_flags_what_lies_beyond():
    points = [(100, math.e), (400, 1.0)]
    assert F.steps_to(points, math.exp(0.5)) == (pytest.approx(200.0), "")  # halfway in log y: √(100·400)
    assert F.steps_to(points, 1.0) == (pytest.approx(400.0), "")
    assert F.steps_to(points, 0.9) == (400, ">") and F.steps_to(points, 3.0) == (100, "<")
    assert F.steps_to([(100, 2.0), (200, 1.5), (400, 1.5), (800, 1.0)], 1.5) == (pytest.approx(200), "")  # flat: the first
    assert F.multiplier(points, 50, math.exp(0.5)) == (pytest.approx(4.0), "")


def test_the_multiplier_is_exact_on_a_power_law_and_close_with_an_asymptote():
    lengths = [600 * 2 ** k for k in range(6)]
    law = lambda s, e=0.0: e + 5.0 * s ** -0.3  # noqa: E731
    for m in (0.8, 1.0, 1.37, 2.5):
        assert F.multiplier([(s, law(s)) for s in lengths], 4800, law(m * 4800))[0] == pytest.approx(m, rel=1e-9)
        # with an asymptote, log y is not linear in log S: interpolation between doublings errs, here by ≤ 1.1%
        got = F.multiplier([(s, law(s, 1.0)) for s in lengths], 4800, law(m * 4800, 1.0))[0]
        assert got == pytest.approx(m, rel=2e-2)


def test_fit_recovers_the_power_law():
    points = [(600 * 2 ** k, 0.9 + 4.0 * (600 * 2 ** k) ** -0.35) for k in range(6)]
    e, a, alpha = F.fit(points)
    assert e == pytest.approx(0.9, abs=0.02) and alpha == pytest.approx(0.35, rel=0.05)
    assert F.fit_steps((e, a, alpha), 0.9 + 4.0 * 5000 ** -0.35) == pytest.approx(5000, rel=0.05)
    assert F.fit_steps((e, a, alpha), e) is None


def test_the_bootstrap_is_seeded_and_pairs_each_seed_across_arm_and_frontier():
    rng = random.Random(1)
    lengths = [600, 1200, 2400, 4800, 9600]
    f, arm = F.synthetic((0.0, 5.0, 0.3), lengths, 2400, 1.5, [1, 2, 3, 4, 5], shared=0.05, own=0.01, rng=rng)
    a = F.bootstrap(f, arm, 2400, draws=200, seed=7)
    assert a == F.bootstrap(f, arm, 2400, draws=200, seed=7) and a != F.bootstrap(f, arm, 2400, draws=200, seed=8)
    # with only the seed's shared offset (each run's own noise 0), a seed moves the arm and every point alike, and a
    # paired resample cannot move the multiplier much: the interval is narrow although the seeds spread by 0.05
    f, arm = F.synthetic((0.0, 5.0, 0.3), lengths, 2400, 1.5, [1, 2, 3, 4, 5], shared=0.05, own=0.0, rng=rng)
    lo, hi = F.percentile(F.bootstrap(f, arm, 2400, draws=400))
    assert lo <= 1.5 <= hi and hi / lo < 1.1
    # unpaired (every frontier point on other seeds) the same spread widens it several times
    shifted = {s: {k + 10: v for k, v in by.items()} for s, by in f.items()}
    lo2, hi2 = F.percentile(F.bootstrap(shifted, arm, 2400, draws=400))
    assert (hi2 / lo2) > 2 * (hi / lo) - 1


def test_percentile_and_log_t_by_hand():
    assert F.percentile(list(range(1, 201))) == (5, 195)  # nearest rank: the 5th and the 195th of 200
    f = {600: {1: 2.0, 2: 2.0}, 2400: {1: 1.0, 2: 1.0}}
    arm = {1: 2.0 ** 0.5, 2: 2.0 ** 0.25}  # per seed half and three quarters of the way, in log y, from 600 to 2400
    lo, hi = F.log_t(f, arm, 600)
    logs = [math.log(2.0), math.log(2.0 ** 1.5)]  # multipliers 4^0.5 and 4^0.75
    half = 12.706 * abs(logs[0] - logs[1]) / math.sqrt(2) / math.sqrt(2)
    assert (lo, hi) == (pytest.approx(math.exp(sum(logs) / 2 - half)), pytest.approx(math.exp(sum(logs) / 2 + half)))


def test_the_intervals_cover_a_known_multiplier_at_about_their_nominal_rate():
    """200 synthetic studies with 5 seeds, the seed noise of pycode 2x64 (a seed's shared offset 0.012, each run's
    own 0.008): the t-interval on log multipliers covers the truth about 95% of the time (binomial sd 1.5%)."""
    got = F.coverage((0.9, 4.0, 0.35), [600 * 2 ** k for k in range(6)], 9600, 1.3, [1, 2, 3, 4, 5], shared=0.012,
                     own=0.008, replicates=200, draws=200)
    assert 0.89 <= got["log_t"] <= 1.0, got
    assert 0.0 < got["percentile"] <= 1.0
