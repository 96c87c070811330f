"""The benchmarks' own machinery: §8.1's statistics in ``benchmarks/_lab.py`` and B7's C
reference (``benchmarks/tools/maglev_ref.c``), which must build the very tables
``lookup_table`` builds, or the B7 ratio compares different work."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from pylium.core.lb.maglev import MaglevBackend, backend_hash_string, lookup_table, maglev_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _lab  # noqa: E402
import maglev as maglev_bench  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert _lab.percentile(values, 0.99) == 20.0
    assert _lab.percentile(values, 0.5) == 11.0
    assert _lab.percentile([3.0], 0.99) == 3.0


def test_ratio_summary_pairs_rounds_and_brackets_the_median() -> None:
    s = _lab.ratio_summary([9.0, 10.0, 11.0, 10.0, 12.0], [10.0, 10.0, 10.0, 10.0, 10.0])
    assert s["pairs"] == [0.9, 1.0, 1.1, 1.0, 1.2]
    assert s["median"] == 1.0
    assert 0.9 <= s["low"] <= s["median"] <= s["high"] <= 1.2
    assert _lab.ratio_summary([9.0, 10.0], [10.0, 10.0]) == _lab.ratio_summary(
        [9.0, 10.0], [10.0, 10.0]
    )  # seeded: the same samples give the same interval


def test_ratio_summary_refuses_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="unpaired samples: 2 test, 3 baseline"):
        _lab.ratio_summary([1.0, 2.0], [1.0, 2.0, 3.0])


def test_met_rule_both_directions() -> None:
    # "at least" goal 0.9: median past it and the low bound within 0.05.
    assert _lab.met({"median": 0.92, "low": 0.86, "high": 0.95}, 0.9)
    assert not _lab.met({"median": 0.92, "low": 0.84, "high": 0.95}, 0.9)
    assert not _lab.met({"median": 0.89, "low": 0.88, "high": 0.95}, 0.9)
    # "at most" goal 2.0 mirrors it on the high bound.
    assert _lab.met({"median": 1.9, "low": 1.5, "high": 2.04}, 2.0, at_least=False)
    assert not _lab.met({"median": 1.9, "low": 1.5, "high": 2.06}, 2.0, at_least=False)
    assert not _lab.met({"median": 2.1, "low": 1.5, "high": 2.04}, 2.0, at_least=False)


def test_equal_weights_of_any_size_give_the_same_table() -> None:
    """Equal weights never skip a turn, whatever their size: weight 1 takes upstream's
    unweighted path, weight 100 (the default) and 7 its weighted one."""
    cfg = maglev_config(1021)
    strings = [
        backend_hash_string(ipaddress.IPv4Address(f"10.1.{i // 200}.{i % 200}"), 80, "TCP")
        for i in range(37)
    ]
    tables = {
        w: lookup_table(
            [MaglevBackend(id=i + 1, hash_string=s, weight=w) for i, s in enumerate(strings)], cfg
        )
        for w in (1, 7, 100)
    }
    assert tables[1] == tables[7] == tables[100]


@pytest.mark.parametrize(("m", "n"), [(251, 1), (251, 3), (1021, 50), (16381, 100)])
def test_c_reference_builds_the_same_table(tmp_path: Path, m: int, n: int) -> None:
    binary = tmp_path / "maglev_ref"
    subprocess.run(
        ["cc", "-O2", "-o", str(binary), str(BENCHMARKS / "tools" / "maglev_ref.c")], check=True
    )
    cfg = maglev_config(m)
    backends = maglev_bench.backends(n)
    _, checksum = maglev_bench.c_build(binary, m, cfg.seed_murmur, backends)
    assert checksum == maglev_bench.fnv1a(lookup_table(backends, cfg))
