"""The EC2 adapter's client-side token bucket (limit-ipam-api-qps / limit-ipam-api-burst)."""

from __future__ import annotations

import pytest

from pylium.adapters.ec2 import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_then_qps() -> None:
    t = FakeTime()
    bucket = TokenBucket(4.0, 2, clock=t.clock, sleep=t.sleep)
    waits = [bucket.wait() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert t.now == pytest.approx(1.0)  # 6 calls: 2 from the burst, 4 at 4 a second


def test_idle_time_refills_up_to_burst_only() -> None:
    t = FakeTime()
    bucket = TokenBucket(10.0, 3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        bucket.wait()
    t.now += 100.0
    assert [bucket.wait() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait() == pytest.approx(0.1)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
