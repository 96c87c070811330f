"""L2: Maglev consistent-hashing lookup tables, computed as upstream Cilium computes them.

Given the same backends, table size and hash seed, every node builds the same table (the
datapath indexes it with a hash of the packet's 5-tuple), so a flow keeps its backend across
nodes and across agent restarts. Facts, from ``pkg/maglev/maglev.go``:

* M is one of :data:`TABLE_SIZES` (primes); the default is 16381.
* The seed is base64 of exactly 12 bytes: bytes 0-3 (big-endian) seed murmur3, bytes 4-7 and
  8-11 are the two jhash seeds the datapath uses for the packet hash.
* Each backend is hashed by a *hash string* (:func:`backend_hash_string`) with
  MurmurHash3 x64 128: ``offset = h1 % M``, ``skip = h2 % (M - 1) + 1``; its permutation is
  ``offset, offset + skip, offset + 2*skip, ... (mod M)``.
* Backends are sorted by hash string (IDs are node-local, strings are not), then take turns
  claiming their next free permutation slot. Weights (Envoy's scheme) skip a backend's turn
  while ``(n + 1) * weight < counter``; they only apply when ``sum(weights) // N > 1``.

The permutations are never materialised (N x M ints); each backend keeps its current position.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pylium.base.errors import ConfigError

TABLE_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
DEFAULT_TABLE_SIZE = 16381
DEFAULT_HASH_SEED = "JLfvgnHc2kaSUFaI"
DEFAULT_BACKEND_WEIGHT = 100
"""``loadbalancer.DefaultBackendWeight``: the weight of a backend nobody weighted."""

TABLE_SIZE_KEY = "bpf-lb-maglev-table-size"
HASH_SEED_KEY = "bpf-lb-maglev-hash-seed"

_M64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


@dataclass(frozen=True, slots=True, kw_only=True)
class MaglevConfig:
    """Validated Maglev settings with the seed split as the agent and datapath use it."""

    table_size: int = DEFAULT_TABLE_SIZE
    hash_seed: str = DEFAULT_HASH_SEED
    seed_murmur: int
    seed_jhash0: int
    seed_jhash1: int


def maglev_config(
    table_size: int = DEFAULT_TABLE_SIZE, hash_seed: str = DEFAULT_HASH_SEED
) -> MaglevConfig:
    """Check ``bpf-lb-maglev-table-size`` and ``bpf-lb-maglev-hash-seed``; split the seed."""
    if table_size not in TABLE_SIZES:
        raise ConfigError(
            TABLE_SIZE_KEY,
            f"invalid value {table_size}, supported values are: {list(TABLE_SIZES)}",
        )
    try:
        raw = base64.b64decode(hash_seed, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ConfigError(HASH_SEED_KEY, f"cannot decode base64 seed {hash_seed!r}: {err}") from err
    if len(raw) != 12:
        raise ConfigError(HASH_SEED_KEY, f"decoded hash seed is {len(raw)} bytes (not 12 bytes)")
    return MaglevConfig(
        table_size=table_size,
        hash_seed=hash_seed,
        seed_murmur=int.from_bytes(raw[0:4], "big"),
        seed_jhash0=int.from_bytes(raw[4:8], "big"),
        seed_jhash1=int.from_bytes(raw[8:12], "big"),
    )


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def _mix_k1(k1: int) -> int:
    return (_rotl64((k1 * _C1) & _M64, 31) * _C2) & _M64


def _mix_k2(k2: int) -> int:
    return (_rotl64((k2 * _C2) & _M64, 33) * _C1) & _M64


def murmur3_x64_128(data: bytes, seed: int) -> tuple[int, int]:
    """MurmurHash3_x64_128 (smhasher), blocks read little-endian, as Cilium's ``Hash128``."""
    h1 = h2 = seed & 0xFFFFFFFF
    nblocks = len(data) // 16
    for i in range(nblocks):
        k1 = int.from_bytes(data[i * 16 : i * 16 + 8], "little")
        k2 = int.from_bytes(data[i * 16 + 8 : i * 16 + 16], "little")
        h1 ^= _mix_k1(k1)
        h1 = (_rotl64(h1, 27) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        h2 ^= _mix_k2(k2)
        h2 = (_rotl64(h2, 31) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[nblocks * 16 :]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def backend_hash_string(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    protocol: str,
    *,
    internal_scope: bool = False,
) -> str:
    """Upstream's ``BackendInfo.setHashString``: ``[10.0.0.5:80/TCP,State:active]``.

    This string decides every node's table: it must never change, or nodes running different
    versions would disagree on where flows go.
    """
    host = f"[{address}]" if address.version == 6 else str(address)
    scope = "/i" if internal_scope else ""
    return f"[{host}:{port}/{protocol}{scope},State:active]"


@dataclass(frozen=True, slots=True, kw_only=True)
class MaglevBackend:
    """One backend as the table sees it: its node-local ID, hash string and weight."""

    id: int
    hash_string: str
    weight: int = DEFAULT_BACKEND_WEIGHT


def offset_and_skip(hash_string: str, table_size: int, seed_murmur: int) -> tuple[int, int]:
    """Where a backend's permutation starts and how far it steps."""
    h1, h2 = murmur3_x64_128(hash_string.encode(), seed_murmur)
    return h1 % table_size, h2 % (table_size - 1) + 1


def lookup_table(backends: Iterable[MaglevBackend], config: MaglevConfig) -> tuple[int, ...]:
    """The M-entry table of backend IDs; empty when there are no backends.

    The result depends only on the set of (hash string, weight, id) and the config, never on
    the order of ``backends``.
    """
    ordered = sorted(backends, key=lambda b: (b.hash_string, b.id))
    if not ordered:
        return ()
    m = config.table_size
    count = len(ordered)
    ids = [b.id for b in ordered]
    weights = [b.weight for b in ordered]
    position: list[int] = []
    skips: list[int] = []
    for b in ordered:
        offset, skip = offset_and_skip(b.hash_string, m, config.seed_murmur)
        position.append(offset)
        skips.append(skip)
    weight_sum = sum(weights)
    # Equal weights never skip a turn (the test below is never true for them), so plain
    # turns give the same table without the bookkeeping.
    weighted = weight_sum // count > 1 and len(set(weights)) > 1
    # Upstream keeps these counters in float64; Python floats are the same doubles, so the
    # truncation below (uint64(weightCntr[i])) gives identical turns.
    counters = [w / count for w in weights]
    entry = [-1] * m
    for n in range(m):
        i = n % count
        if weighted:
            while (n + 1) * weights[i] < int(counters[i]):
                i = (i + 1) % count
            counters[i] += weight_sum
        c = position[i]
        skip = skips[i]
        while entry[c] >= 0:
            c += skip
            if c >= m:
                c -= m
        entry[c] = ids[i]
        c += skip
        position[i] = c - m if c >= m else c
    return tuple(entry)
