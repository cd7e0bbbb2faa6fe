"""Small, exact statistics for the windowed rules (no numpy needed for a handful of numbers per window)."""

from __future__ import annotations

import math


def poisson_sf(count: int, mean: float) -> float:
    """P(X >= count) for X ~ Poisson(mean), summed in log space so large counts do not overflow."""
    if count <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if count <= mean:
        # Below the mean the upper tail is large: 1 - P(X < count) is accurate enough there.
        log_term = -mean
        cdf = 0.0
        for k in range(count):
            if k:
                log_term += math.log(mean / k)
            cdf += math.exp(log_term)
        return max(0.0, 1.0 - cdf)
    log_term = count * math.log(mean) - mean - math.lgamma(count + 1)
    total, k = 0.0, count
    while True:
        term = math.exp(log_term)
        total += term
        k += 1
        log_term += math.log(mean / k)
        if term < total * 1e-15 or k > count + 10_000:
            return min(1.0, total)


def bernoulli_llr(disclosed: int, responses: int, p0: float, p1: float) -> float:
    """Log-likelihood ratio of ``disclosed`` successes in ``responses`` trials under p1 against p0."""
    return disclosed * math.log(p1 / p0) + (responses - disclosed) * math.log((1 - p1) / (1 - p0))
