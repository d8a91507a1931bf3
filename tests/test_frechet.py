"""The Fréchet distance against closed forms and scipy's matrix square root."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from aelab.apps.frechet import frechet_distance, gaussian_stats


def _random_cov(rng, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T + (0 if rank else 0.1 * np.eye(d))


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The formula written out with scipy's general (non-symmetric) matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean.real))


@pytest.mark.parametrize(("m1", "s1", "m2", "s2"), [(0.0, 1.0, 0.0, 1.0), (1.5, 2.0, -0.5, 0.5),
                                                    (3.0, 0.1, 3.0, 4.0)])
def test_one_dimension_is_the_squared_differences_of_means_and_deviations(m1, s1, m2, s2):
    d = frechet_distance([m1], [[s1 ** 2]], [m2], [[s2 ** 2]])
    assert d == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12, abs=1e-12)


def test_diagonal_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_full_non_commuting_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
    assert not np.allclose(s1 @ s2, s2 @ s1)  # the case where sqrt(S1) sqrt(S2) would be wrong
    m1, m2 = rng.standard_normal(8), rng.standard_normal(8)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(_scipy_frechet(m1, s1, m2, s2), rel=1e-10)


def test_identical_stats_give_zero_and_the_distance_is_symmetric():
    rng = np.random.default_rng(2)
    mu, s = rng.standard_normal(16), _random_cov(rng, 16)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)
    mu2, s2 = rng.standard_normal(16), _random_cov(rng, 16)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s), rel=1e-10)


def test_singular_covariances_give_a_finite_value():
    rng = np.random.default_rng(3)
    s1, s2 = _random_cov(rng, 20, rank=3), _random_cov(rng, 20, rank=5)
    assert np.linalg.matrix_rank(s1) == 3
    mu = np.zeros(20)
    d = frechet_distance(mu, s1, mu, s2)
    assert math.isfinite(d) and d > 0
    assert isinstance(d, float)
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(mu, np.zeros((20, 20)), mu, s2) == pytest.approx(np.trace(s2), rel=1e-10)


def test_gaussian_stats_of_samples_approach_the_gaussian_they_came_from():
    rng = np.random.default_rng(4)
    mu, s = rng.standard_normal(5), _random_cov(rng, 5)
    x = rng.multivariate_normal(mu, s, size=200_000)
    m_hat, s_hat = gaussian_stats(torch.from_numpy(x).float())  # a float32 tensor goes in too
    assert m_hat.dtype == s_hat.dtype == np.float64 and s_hat.shape == (5, 5)
    assert np.allclose(m_hat, mu, atol=0.03) and np.allclose(s_hat, s, atol=0.05 * np.abs(s).max())
    assert frechet_distance(m_hat, s_hat, mu, s) < 1e-3


def test_gaussian_stats_is_the_unbiased_covariance():
    x = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    mu, s = gaussian_stats(x)
    centred = x - x.mean(0)
    assert np.allclose(mu, [2.0, 3.0]) and np.allclose(s, centred.T @ centred / 2)
    _, s1 = gaussian_stats(x[:, :1])  # one feature: still a (1, 1) matrix
    assert s1.shape == (1, 1) and s1[0, 0] == pytest.approx(4.0)
