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
The backends are hashed together with numpy, and the last turns, when most permutation
steps hit taken slots, pick the nearest free slot by modular arithmetic (:func:`_endgame`);
both give exactly the table of the plain loop.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pylium.base.errors import ConfigError

TABLE_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
DEFAULT_TABLE_SIZE = 16381
DEFAULT_HASH_SEED = "JLfvgnHc2kaSUFaI"
DEFAULT_BACKEND_WEIGHT = 100
"""``loadbalancer.DefaultBackendWeight``: the weight of a backend nobody weighted."""

TABLE_SIZE_KEY = "bpf-lb-maglev-table-size"
HASH_SEED_KEY = "bpf-lb-maglev-hash-seed"

_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]


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


def _rotl(x: _U64, r: int) -> _U64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix(k: _U64) -> _U64:
    k = k ^ (k >> np.uint64(33))
    k = k * np.uint64(0xFF51AFD7ED558CCD)
    k = k ^ (k >> np.uint64(33))
    k = k * np.uint64(0xC4CEB9FE1A85EC53)
    return k ^ (k >> np.uint64(33))


def _mix_k1(k1: _U64) -> _U64:
    return _rotl(k1 * _C1, 31) * _C2


def _mix_k2(k2: _U64) -> _U64:
    return _rotl(k2 * _C2, 33) * _C1


def murmur3_x64_128_many(data: Sequence[bytes], seed: int) -> tuple[_U64, _U64]:
    """MurmurHash3_x64_128 (smhasher) of each input at once, blocks read little-endian, as
    Cilium's ``Hash128``; numpy's uint64 arithmetic wraps like Go's.

    Inputs are zero-padded to a common number of 16-byte blocks: a block past an input's end
    leaves its state alone, and its tail words read as zeros beyond its length, which mix to
    zero, so the tail needs no case analysis.
    """
    lengths = np.array([len(d) for d in data], dtype=np.uint64)
    nblocks = (lengths // np.uint64(16)).astype(np.intp)
    width = (int(nblocks.max(initial=0)) + 1) * 16
    words = np.frombuffer(b"".join(d.ljust(width, b"\0") for d in data), dtype="<u8")
    words = words.astype(np.uint64).reshape(len(data), width // 8)
    h1 = np.full(len(data), seed & 0xFFFFFFFF, dtype=np.uint64)
    h2 = h1.copy()
    for i in range(width // 16 - 1):
        n1 = _rotl(h1 ^ _mix_k1(words[:, 2 * i]), 27) + h2
        n1 = n1 * np.uint64(5) + np.uint64(0x52DCE729)
        n2 = _rotl(h2 ^ _mix_k2(words[:, 2 * i + 1]), 31) + n1
        n2 = n2 * np.uint64(5) + np.uint64(0x38495AB5)
        live = nblocks > i
        h1 = np.where(live, n1, h1)
        h2 = np.where(live, n2, h2)
    rows = np.arange(len(data))
    h2 ^= _mix_k2(words[rows, 2 * nblocks + 1])
    h1 ^= _mix_k1(words[rows, 2 * nblocks])
    h1 ^= lengths
    h2 ^= lengths
    h1 += h2
    h2 += h1
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 += h2
    h2 += h1
    return h1, h2


def murmur3_x64_128(data: bytes, seed: int) -> tuple[int, int]:
    """MurmurHash3_x64_128 of one input (see :func:`murmur3_x64_128_many`)."""
    h1, h2 = murmur3_x64_128_many([data], seed)
    return int(h1[0]), int(h2[0])


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
    offsets, skips = _offsets_and_skips([hash_string], table_size, seed_murmur)
    return int(offsets[0]), int(skips[0])


def _offsets_and_skips(
    hash_strings: Sequence[str], table_size: int, seed_murmur: int
) -> tuple[_I64, _I64]:
    h1, h2 = murmur3_x64_128_many([s.encode() for s in hash_strings], seed_murmur)
    m = np.uint64(table_size)
    offsets = (h1 % m).astype(np.int64)
    skips = (h2 % (m - np.uint64(1)) + np.uint64(1)).astype(np.int64)
    return offsets, skips


def _weighted_turns(weights: list[int], m: int) -> _I64 | None:
    """Whose turn each of the M turns is when weights make backends skip turns (upstream's
    loop, which does not depend on the table); ``None`` for plain turns, backend ``n % N``
    at turn n."""
    count = len(weights)
    weight_sum = sum(weights)
    # Equal weights never skip a turn (the test below is never true for them).
    if weight_sum // count <= 1 or len(set(weights)) == 1:
        return None
    # Upstream keeps these counters in float64; Python floats are the same doubles, so the
    # truncation below (uint64(weightCntr[i])) gives identical turns.
    counters = [w / count for w in weights]
    turns = [0] * m
    for n in range(m):
        i = n % count
        while (n + 1) * weights[i] < int(counters[i]):
            i = (i + 1) % count
        counters[i] += weight_sum
        turns[n] = i
    return np.array(turns, dtype=np.int64)


_ENDGAME = 128
"""The last M/_ENDGAME turns pick by distance (:func:`_endgame`) instead of stepping: about
where one Python step per probe (M/free of them per turn) costs more than a numpy scan of
the free slots."""


def _endgame(
    turns: Iterable[int],
    position: list[int],
    skips: list[int],
    taken: bytearray,
    entry: list[int],
    ids: list[int],
) -> None:
    """The last turns, one per free slot. A backend's permutation reaches a free slot s after
    ``(s - position) / skip`` steps (mod M, M prime); each turn takes the free slot it
    reaches first. With few slots left this replaces M/free steps per turn by one scan of
    the free slots."""
    m = len(entry)
    turn_list = list(turns)
    free = np.flatnonzero(np.frombuffer(taken, dtype=np.uint8) == 0)
    backends = sorted(set(turn_list))
    column = {b: c for c, b in enumerate(backends)}
    start = np.array([position[b] for b in backends], dtype=np.int64)
    inverse = np.array([pow(skips[b], -1, m) for b in backends], dtype=np.int64)
    # Rows are free slots, so that taking a slot writes one contiguous row.
    steps = (free[:, None] - start[None, :]) % m * inverse[None, :] % m
    for b in turn_list:
        nearest = int(steps[:, column[b]].argmin())
        entry[int(free[nearest])] = ids[b]
        steps[nearest, :] = m


def _populate(
    offsets: _I64, skip_array: _I64, m: int, ids: list[int], turns: _I64 | None
) -> list[int]:
    """Upstream's population: turn after turn, a backend takes the next slot of its
    permutation that is still free; the M entries of backend IDs."""
    count = len(ids)
    position = offsets.tolist()
    skips = skip_array.tolist()
    taken = bytearray(m)
    entry = [0] * m
    order: Iterator[int] = itertools.cycle(range(count)) if turns is None else iter(turns.tolist())
    last = m // _ENDGAME if m >= 16 * _ENDGAME else 0  # small tables: numpy costs more
    for i in itertools.islice(order, m - last):
        c = position[i]
        skip = skips[i]
        while taken[c]:
            c += skip
            if c >= m:
                c -= m
        taken[c] = 1
        entry[c] = ids[i]
        c += skip
        position[i] = c - m if c >= m else c
    if last:
        _endgame(itertools.islice(order, last), position, skips, taken, entry, ids)
    return entry


def lookup_table(backends: Iterable[MaglevBackend], config: MaglevConfig) -> tuple[int, ...]:
    """The M-entry table of backend IDs; empty when there are no backends.

    The result depends only on the set of (hash string, weight, id) and the config, never on
    the order of ``backends``.
    """
    ordered = sorted(backends, key=lambda b: (b.hash_string, b.id))
    if not ordered:
        return ()
    m = config.table_size
    offsets, skips = _offsets_and_skips([b.hash_string for b in ordered], m, config.seed_murmur)
    turns = _weighted_turns([b.weight for b in ordered], m)
    return tuple(_populate(offsets, skips, m, [b.id for b in ordered], turns))
