"""Crafted packets for the datapath tests (struct-built, checksums computed)."""

from __future__ import annotations

import ipaddress
import struct

POD_SIDE_MAC = b"\x02\x00\x00\x00\x00\x02"
HOST_SIDE_MAC = b"\x02\x00\x00\x00\x00\x01"
SYN, ACK, FIN = 0x02, 0x10, 0x01


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(ethertype: int, body: bytes = b"\0" * 46) -> bytes:
    return HOST_SIDE_MAC + POD_SIDE_MAC + struct.pack("!H", ethertype) + body


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    saddr, daddr = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ethernet(0x0800, ip + l4)


def _l4_csum(src: str, dst: str, proto: int, l4: bytes, at: int) -> bytes:
    pseudo = (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!BBH", 0, proto, len(l4))
    )
    return l4[:at] + struct.pack("!H", _csum(pseudo + l4)) + l4[at + 2 :]


def ipv4_tcp(
    src: str,
    dst: str,
    sport: int = 40000,
    dport: int = 80,
    flags: int = SYN,
    payload: bytes = b"hello",
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 64240, 0, 0) + payload
    return ipv4(src, dst, 6, _l4_csum(src, dst, 6, tcp, 16))


def ipv4_udp(src: str, dst: str, sport: int = 40000, dport: int = 53) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"ping"
    return ipv4(src, dst, 17, _l4_csum(src, dst, 17, udp, 6))


def ipv4_icmp(src: str, dst: str, icmp_type: int = 8, code: int = 0) -> bytes:
    """An ICMP message (echo request by default; identifier 1, sequence 1)."""
    icmp = struct.pack("!BBHHH", icmp_type, code, 0, 1, 1) + b"ping"
    return ipv4(src, dst, 1, icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:])


def ipv4_icmp_error(src: str, dst: str, quoted: bytes, icmp_type: int = 3, code: int = 4) -> bytes:
    """An ICMP error (fragmentation needed by default) quoting ``quoted`` (an IPv4 packet
    without its Ethernet header; the first 28 bytes are kept, as routers at least do)."""
    icmp = struct.pack("!BBHI", icmp_type, code, 0, 1400 if code == 4 else 0) + quoted[:28]
    return ipv4(src, dst, 1, icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:])
