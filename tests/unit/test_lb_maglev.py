"""Maglev tables: murmur3 vectors, upstream's reproducible tables, balance, disruption."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pylium.base.errors import ConfigError
from pylium.core.lb import maglev
from pylium.core.lb.maglev import (
    DEFAULT_TABLE_SIZE,
    MaglevBackend,
    backend_hash_string,
    lookup_table,
    maglev_config,
    murmur3_x64_128,
)


def test_murmur3_smhasher_verification_value() -> None:
    # smhasher's VerificationTest: hash keys 0..i with seed 256-i, then hash the hashes.
    key = bytes(range(256))
    hashes = b""
    for i in range(256):
        h1, h2 = murmur3_x64_128(key[:i], 256 - i)
        hashes += h1.to_bytes(8, "little") + h2.to_bytes(8, "little")
    h1, _ = murmur3_x64_128(hashes, 0)
    assert h1 & 0xFFFFFFFF == 0x6384BA69


def test_murmur3_empty_input_seed_zero() -> None:
    assert murmur3_x64_128(b"", 0) == (0, 0)


def test_murmur3_many_inputs_of_mixed_lengths_hash_as_each_alone() -> None:
    # One call pads every input to the longest's blocks; no input may see another's.
    keys = [bytes(range(255 - i, 255)) for i in (40, 0, 17, 16, 1, 33, 8, 9, 255)]
    h1, h2 = maglev.murmur3_x64_128_many(keys, 0x24B7EF82)
    assert list(zip(h1.tolist(), h2.tolist(), strict=True)) == [
        murmur3_x64_128(k, 0x24B7EF82) for k in keys
    ]


@pytest.mark.parametrize("weights", [(100,) * 300, tuple(range(1, 301))])
def test_endgame_picks_the_slots_stepping_picks(
    weights: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last M/_ENDGAME turns choose by modular distance; stepping every turn (the plain
    loop, endgame off) must give the same table, weighted or not."""
    cfg = maglev_config(16381)
    backends = [
        MaglevBackend(id=i + 1, hash_string=upstream_addr(i + 1), weight=w)
        for i, w in enumerate(weights)
    ]
    table = lookup_table(backends, cfg)
    monkeypatch.setattr(maglev, "_ENDGAME", cfg.table_size + 1)
    assert lookup_table(backends, cfg) == table


def test_default_seed_split() -> None:
    cfg = maglev_config()
    assert cfg.table_size == DEFAULT_TABLE_SIZE == 16381
    # base64 "JLfvgnHc2kaSUFaI" = 24 b7 ef 82 | 71 dc da 46 | 92 50 56 88
    assert (cfg.seed_murmur, cfg.seed_jhash0, cfg.seed_jhash1) == (
        0x24B7EF82,
        0x71DCDA46,
        0x92505688,
    )


@pytest.mark.parametrize(
    ("size", "seed", "message"),
    [
        (16383, "JLfvgnHc2kaSUFaI", "bpf-lb-maglev-table-size: invalid value 16383"),
        (16381, "not base64!", "bpf-lb-maglev-hash-seed: cannot decode"),
        (16381, "AAAA", "decoded hash seed is 3 bytes (not 12 bytes)"),
    ],
)
def test_config_errors_name_the_key(size: int, seed: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        maglev_config(size, seed)


def upstream_addr(i: int) -> str:
    """``mkAddr`` in upstream's maglev_test.go: IP from big-endian i, port i, TCP."""
    return backend_hash_string(ipaddress.IPv4Address(i), i % 65535, "TCP")


def test_hash_string_shape() -> None:
    assert upstream_addr(1) == "[0.0.0.1:1/TCP,State:active]"
    v6 = backend_hash_string(ipaddress.IPv6Address("fd00::5"), 80, "UDP", internal_scope=True)
    assert v6 == "[[fd00::5]:80/UDP/i,State:active]"


def run_length(ids: tuple[int, ...]) -> str:
    runs: list[str] = []
    current, count = ids[0], 1
    for i in ids[1:]:
        if i == current:
            count += 1
        else:
            runs.append(f"{current}({count})")
            current, count = i, 1
    runs.append(f"{current}({count})")
    return ",".join(runs)


def test_reproduces_upstream_table() -> None:
    """Upstream's TestReproducible: the exact table every Cilium node computes."""
    expected = (
        "2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1),"
        "1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),"
        "2(4),3(1),2(3),1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),"
        "2(9),1(2),2(5),1(1),2(7),3(1),2(1),3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),"
        "2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1),2(4),3(1),2(2),1(1),2(7)"
    )
    backends = [
        MaglevBackend(id=0, hash_string=upstream_addr(1), weight=2),
        MaglevBackend(id=1, hash_string=upstream_addr(3), weight=13),
        MaglevBackend(id=2, hash_string=upstream_addr(4), weight=111),
        MaglevBackend(id=3, hash_string=upstream_addr(5), weight=10),
    ]
    assert run_length(lookup_table(backends, maglev_config(251))) == expected


def test_weights_and_removal_as_upstream() -> None:
    """Upstream's TestWeightedBackendWithRemoval: exact counts, < 1 % of survivors moved."""
    cfg = maglev_config(1021)
    backends = [
        MaglevBackend(id=i + 1, hash_string=upstream_addr(i + 1), weight=w)
        for i, w in enumerate((2, 13, 111, 10))
    ]
    before = lookup_table(backends, cfg)
    after = lookup_table(backends[1:], cfg)
    assert Counter(before) == {1: 16, 2: 98, 3: 832, 4: 75}
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != 1 and a != b)
    assert set(after) == {2, 3, 4}
    assert moved / 1021 < 0.01


def test_no_backends_no_table() -> None:
    assert lookup_table([], maglev_config()) == ()


hash_strings = st.builds(
    backend_hash_string,
    st.ip_addresses(v=4),
    st.integers(1, 65535),
    st.sampled_from(["TCP", "UDP"]),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(hash_strings, min_size=1, max_size=40, unique=True), st.randoms())
def test_balance_and_order_independence(strings: list[str], rnd: random.Random) -> None:
    """Equal weights: every backend holds floor(M/N) or ceil(M/N) entries (one per turn),
    and the table does not depend on the order backends are given in (same on every node)."""
    cfg = maglev_config(4093)
    backends = [MaglevBackend(id=i + 1, hash_string=s) for i, s in enumerate(strings)]
    table = lookup_table(backends, cfg)
    assert len(table) == 4093
    counts = Counter(table)
    assert set(counts) == {b.id for b in backends}
    low, high = divmod(4093, len(backends))
    assert all(low <= c <= low + (1 if high else 0) for c in counts.values())
    shuffled = list(backends)
    rnd.shuffle(shuffled)
    assert lookup_table(shuffled, cfg) == table


DISRUPTION_BOUND = 0.05
"""Share of M that may move between *surviving* backends when one backend is removed.

The paper (§3.4, §5.3) sizes M > 100·N so that backends' shares differ by about 1 %, and
shows that removals move a few entries of survivors too: Maglev trades perfect stability
for balance. Cilium's own test holds 3 backends at M=1021 under 1 % (reproduced above).
Sampled over random backend sets at M=16381 with N <= 100 the worst seen was 1.8 % (mean
about 1 %). Maglev gives no worst-case bound, though: hypothesis found three backends (the
``@example`` below) where 3.7 % of survivors' entries move, so the bound is 5 %, which still
catches a regression to plain modulo hashing, which moves about (N-1)/N of all entries.
"""


@settings(max_examples=15, deadline=None)
@given(
    st.lists(hash_strings, min_size=2, max_size=100, unique=True),
    st.integers(min_value=0),
)
@example(
    [
        "[0.0.0.0:1/TCP,State:active]",
        "[33.62.150.104:5046/TCP,State:active]",
        "[172.17.16.41:2/TCP,State:active]",
    ],
    1,
)
def test_minimal_disruption_on_removal(strings: list[str], pick: int) -> None:
    cfg = maglev_config(DEFAULT_TABLE_SIZE)
    backends = [MaglevBackend(id=i + 1, hash_string=s) for i, s in enumerate(strings)]
    gone = backends[pick % len(backends)]
    before = lookup_table(backends, cfg)
    after = lookup_table([b for b in backends if b is not gone], cfg)
    assert gone.id not in after
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != gone.id and a != b)
    assert moved / cfg.table_size < DISRUPTION_BOUND


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(hash_strings, st.integers(1, 1000)),
        min_size=2,
        max_size=10,
        unique_by=lambda t: t[0],
    )
)
def test_weights_share_the_table_in_proportion(pairs: list[tuple[str, int]]) -> None:
    """Each backend gets about M·w/W entries; off by at most N (one turn per backend)."""
    cfg = maglev_config(4093)
    backends = [MaglevBackend(id=i + 1, hash_string=s, weight=w) for i, (s, w) in enumerate(pairs)]
    total = sum(w for _, w in pairs)
    counts = Counter(lookup_table(backends, cfg))
    if total // len(pairs) > 1:
        for b in backends:
            assert abs(counts[b.id] - 4093 * b.weight / total) <= len(backends)
