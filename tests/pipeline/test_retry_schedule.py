import random

from syncd.pipeline.retry_schedule import RetrySchedule


def test_backoff_grows_and_is_capped():
    policy = RetrySchedule(max_attempts=10, initial_backoff=5, max_backoff=60)
    rng = random.Random(1)
    delays = [policy.delay(n, rng=rng) for n in range(1, 9)]
    assert 2.5 <= delays[0] <= 5
    assert 5 <= delays[1] <= 10
    assert all(30 <= d <= 60 for d in delays[4:])


def test_retry_after_is_a_floor():
    policy = RetrySchedule(initial_backoff=1, max_backoff=2)
    assert policy.delay(1, retry_after=30, rng=random.Random(0)) == 30


def test_exhaustion():
    policy = RetrySchedule(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_built_from_the_retry_config():
    from syncd.config import RetryConfig

    schedule = RetrySchedule.from_config(RetryConfig(max_attempts=4, initial_backoff=2.0, max_backoff=8.0))
    assert schedule == RetrySchedule(4, 2.0, 8.0)
