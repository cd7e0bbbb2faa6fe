"""The Poisson tail and the Bernoulli log-likelihood ratio against sums computed independently."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.core.windows.stats import bernoulli_llr, poisson_sf


def _exact_sf(count: int, mean: int) -> float:
    """1 - P(X < count) in exact rational arithmetic (the series of e^-mean to 200 terms is exact enough)."""
    e_minus = sum(Fraction((-mean) ** k, math.factorial(k)) for k in range(200))
    cdf = sum(e_minus * Fraction(mean**k, math.factorial(k)) for k in range(count))
    return float(1 - cdf)


@pytest.mark.parametrize(("count", "mean"), [(1, 1), (3, 2), (10, 4), (25, 10), (40, 12), (5, 20), (60, 30)])
def test_poisson_tail_matches_exact_arithmetic(count: int, mean: int) -> None:
    assert poisson_sf(count, float(mean)) == pytest.approx(_exact_sf(count, mean), rel=1e-9, abs=1e-15)


@given(st.integers(1, 400), st.floats(0.01, 200))
def test_poisson_tail_is_a_probability_that_falls_as_the_count_grows(count: int, mean: float) -> None:
    here, next_up = poisson_sf(count, mean), poisson_sf(count + 1, mean)
    assert 0.0 <= next_up <= here <= 1.0


def test_poisson_tail_edges_and_huge_counts() -> None:
    assert poisson_sf(0, 5.0) == 1.0 and poisson_sf(-3, 5.0) == 1.0
    assert poisson_sf(4, 0.0) == 0.0
    tiny = poisson_sf(10_000, 10.0)  # far out in the tail: no overflow, not zero by underflow of each term
    assert 0.0 <= tiny < 1e-300


@given(st.integers(0, 50), st.integers(0, 50), st.floats(0.01, 0.45), st.floats(0.5, 0.99))
def test_bernoulli_llr_is_the_log_of_the_likelihood_ratio(disclosed: int, extra: int, p0: float, p1: float) -> None:
    responses = disclosed + extra
    ratio = (p1**disclosed * (1 - p1) ** extra) / (p0**disclosed * (1 - p0) ** extra)
    if 0 < ratio < math.inf:
        assert bernoulli_llr(disclosed, responses, p0, p1) == pytest.approx(math.log(ratio), rel=1e-9, abs=1e-9)
