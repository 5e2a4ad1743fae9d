"""Minibatch sampling: the iterations-per-epoch rule, seeding, saved state, window bounds."""

import math

import numpy as np
import pytest

from benchmark.errors import ConfigError
from benchmark.training.sampler import WindowSampler, iterations_per_epoch


def test_iterations_follow_the_99_percent_coverage_rule():
    # paper: 671 basins, 15 training years, 100 basins x 365 days per batch
    coverage = 100 * 365 / (671 * 5479)
    assert iterations_per_epoch(100, 365, 671, 5479) == math.ceil(math.log(0.01) / math.log(1 - coverage))
    assert iterations_per_epoch(35, 365, 35, 5479) == 67
    assert iterations_per_epoch(10, 365, 4, 365) == 1


def test_same_seed_same_batches_and_state_resumes_the_stream():
    a = WindowSampler(35, 400, 5000, 10, 365, seed=7)
    b = WindowSampler(35, 400, 5000, 10, 365, seed=7)
    first = [a.sample() for _ in range(3)]
    for batch in first:
        other = b.sample()
        np.testing.assert_array_equal(batch.basins, other.basins)
        np.testing.assert_array_equal(batch.sequence_start, other.sequence_start)
    state = a.state_dict()
    expected = a.sample()
    c = WindowSampler(35, 400, 5000, 10, 365, seed=999)
    c.load_state_dict(state)
    got = c.sample()
    np.testing.assert_array_equal(got.basins, expected.basins)
    np.testing.assert_array_equal(got.sequence_start, expected.sequence_start)


def test_batches_hold_distinct_basins_and_windows_inside_bounds():
    sampler = WindowSampler(6, 400, 410, 10, 365, seed=1)
    for _ in range(50):
        batch = sampler.sample()
        assert sorted(set(batch.basins.tolist())) == list(range(6))
        starts = batch.sequence_start + 365
        assert starts.min() >= 400 and starts.max() <= 410


def test_too_short_training_period_is_a_config_error():
    with pytest.raises(ConfigError, match="too short"):
        WindowSampler(4, 500, 499, 4, 365, seed=1)
