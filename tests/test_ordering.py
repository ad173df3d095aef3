import numpy as np
import pytest
from scipy.stats import kendalltau

from rsis.analysis.ordering import ObjectGeometry, sequence_tau, sorting_summary, strategy_key


def _objects(rng, n):
    return [ObjectGeometry(x=float(x), y=float(y), area=float(a))
            for x, y, a in zip(rng.permutation(100)[:n], rng.permutation(100)[:n], rng.permutation(1000)[:n] + 1)]


@pytest.mark.parametrize("strategy", ["r2l", "b2t", "l2s"])
def test_tau_matches_scipy_on_random_orders(strategy):
    rng = np.random.default_rng(1)
    for _ in range(50):
        objects = _objects(rng, int(rng.integers(2, 12)))
        # predicted position i vs. the strategy order (descending key)
        expected = kendalltau(np.arange(len(objects)), -strategy_key(objects, strategy)).statistic
        assert sequence_tau(objects, strategy) == pytest.approx(expected)


def test_exact_strategies_give_plus_and_minus_one():
    r2l = [ObjectGeometry(x=x, y=0.5 * x % 7, area=10 + x % 3) for x in (90.0, 60.0, 30.0, 5.0)]
    assert sequence_tau(r2l, "r2l") == pytest.approx(1.0)
    assert sequence_tau(r2l[::-1], "r2l") == pytest.approx(-1.0)
    b2t = [ObjectGeometry(x=1.0, y=y, area=5.0) for y in (80.0, 50.0, 10.0)]
    assert sequence_tau(b2t, "b2t") == pytest.approx(1.0)
    l2s = [ObjectGeometry(x=1.0, y=2.0, area=a) for a in (500.0, 300.0, 20.0)]
    assert sequence_tau(l2s, "l2s") == pytest.approx(1.0)


def test_short_sequences_are_skipped():
    one = [ObjectGeometry(1.0, 1.0, 1.0)]
    assert sequence_tau(one, "r2l") is None
    summary = sorting_summary([one, [ObjectGeometry(9.0, 1.0, 1.0), ObjectGeometry(1.0, 1.0, 1.0)]])
    assert summary["images_counted"] == 1
    assert summary["tau_r2l"] == pytest.approx(1.0)
