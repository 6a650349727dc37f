"""The remote-inference circuit breaker: closed -> open after N failures -> half-open trial."""
from __future__ import annotations

from utils.serving.remote_inference import CircuitBreaker, local_served_by


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_failures_in_a_row_and_a_success_resets_the_count():
    breaker = CircuitBreaker(3, 30.0, Clock())
    breaker.failed(), breaker.failed(), breaker.succeeded(), breaker.failed(), breaker.failed()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()


def test_half_open_lets_one_trial_through_whose_outcome_decides():
    clock = Clock()
    breaker = CircuitBreaker(2, 30.0, clock)
    breaker.failed(), breaker.failed()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failed()  # the trial failed: open for another cool-down
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 30.1
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_trial_that_never_ran_releases_the_half_open_slot():
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.failed()
    clock.now += 6
    assert breaker.allow()
    breaker.released()
    assert breaker.allow()


def test_served_by_labels():
    assert local_served_by("cpu") == "local:cpu"
    assert local_served_by("gpu:0", "timeout") == "local:cuda:0 (fallback: timeout)"
