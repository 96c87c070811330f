"""L3: what every cloud API client of the operator shares: the client-side token bucket
(``limit-ipam-api-qps``/``limit-ipam-api-burst``), retries with exponential backoff when the
cloud throttles, and per-operation call counters under upstream's metric names
(``cilium_operator_<api>_api_duration_seconds``, ``..._rate_limit_duration_seconds``).

:class:`RateLimitedClient` runs one attempt function per try; the attempt raises
:class:`CloudAPIError` with the cloud's error code, and codes in ``throttle_codes`` are retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pylium.base.errors import PyliumError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_QPS = 4.0
"""Upstream ``limit-ipam-api-qps`` default."""
DEFAULT_BURST = 20
"""Upstream ``limit-ipam-api-burst`` default."""


class CloudAPIError(PyliumError):
    """A cloud API call failed (after retries when it was throttled)."""

    api = "cloud"

    def __init__(self, operation: str, code: str, message: str) -> None:
        self.operation = operation
        self.code = code
        self.message = message
        super().__init__(f"{self.api} {operation}: {code}: {message}")


class TokenBucket:
    """``qps`` tokens a second, at most ``burst`` saved up; :meth:`wait` blocks for one and
    returns how long it waited. Clock and sleep are injectable for tests."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("token bucket needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            delay = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if delay > 0:
            self._sleep(delay)
        return delay


@dataclass(slots=True)
class Metrics:
    """Counters under upstream's names: calls and seconds per (operation, response code),
    seconds spent waiting for the rate limiter per operation, throttled attempts."""

    api: str = "ec2"
    """The metric subsystem: ``cilium_operator_<api>_api_*``."""
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    rate_limit_seconds: dict[str, float] = field(default_factory=dict)
    rate_limit_waits: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)

    def total_calls(self, operation: str | None = None) -> int:
        return sum(n for (op, _), n in self.calls.items() if operation in (None, op))

    def as_prometheus(self) -> dict[str, float]:
        """Samples in Prometheus text naming: ``name{labels}`` -> value."""
        out: dict[str, float] = {}
        base = f"cilium_operator_{self.api}_api_duration_seconds"
        for (op, code), n in sorted(self.calls.items()):
            labels = f'{{operation="{op}",response_code="{code}"}}'
            out[f"{base}_count{labels}"] = n
            out[f"{base}_sum{labels}"] = self.seconds.get((op, code), 0.0)
        limited = f"cilium_operator_{self.api}_api_rate_limit_duration_seconds_sum"
        for op, secs in sorted(self.rate_limit_seconds.items()):
            out[f'{limited}{{operation="{op}"}}'] = secs
        for op, n in sorted(self.throttled.items()):
            out[f'cilium_operator_{self.api}_api_throttled_total{{operation="{op}"}}'] = n
        return out


class RateLimitedClient:
    """Token bucket, throttling retries and metrics around one attempt function per call."""

    throttle_codes: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        api: str,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        max_retries: int = 8,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = TokenBucket(qps, burst, sleep=sleep)
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self.metrics = Metrics(api=api)
        self._lock = threading.Lock()

    def _record(self, operation: str, code: str, seconds: float) -> None:
        with self._lock:
            key = (operation, code)
            self.metrics.calls[key] = self.metrics.calls.get(key, 0) + 1
            self.metrics.seconds[key] = self.metrics.seconds.get(key, 0.0) + seconds

    def _limited(self, operation: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` after a token, again with backoff while it raises a throttling
        :class:`CloudAPIError`."""
        for n in range(self.max_retries + 1):
            waited = self.bucket.wait()
            if waited:
                with self._lock:
                    rl = self.metrics.rate_limit_seconds
                    rl[operation] = rl.get(operation, 0.0) + waited
                    rw = self.metrics.rate_limit_waits
                    rw[operation] = rw.get(operation, 0) + 1
            start = time.monotonic()
            try:
                result = attempt()
            except CloudAPIError as err:
                self._record(operation, err.code, time.monotonic() - start)
                if err.code in self.throttle_codes and n < self.max_retries:
                    with self._lock:
                        th = self.metrics.throttled
                        th[operation] = th.get(operation, 0) + 1
                    delay = self.backoff * (2**n)
                    log.info(
                        "cloud API throttled; backing off", extra={"op": operation, "s": delay}
                    )
                    self._sleep(delay)
                    continue
                raise
            self._record(operation, "OK", time.monotonic() - start)
            return result
        raise AssertionError("unreachable")
