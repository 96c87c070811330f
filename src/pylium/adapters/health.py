"""L3: cilium-health's network side: the HTTP responder on port 4240 and the two probes,
ICMP echo and ``HTTP GET /hello``, each returning a :class:`~pylium.core.health.Connectivity`
(latency in nanoseconds, or why it failed). Probes never raise for network failures.

ICMP goes through a raw socket (the agent runs as root; a datagram ICMP socket needs
``net.ipv4.ping_group_range``, which a fresh network namespace sets to nobody), falling back to
the datagram socket without ``CAP_NET_RAW``. Upstream sends 3 requests 100 ms apart and counts
any reply as success.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import logging
import os
import select
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pylium.base.errors import PyliumError
from pylium.core.health import Connectivity

log = logging.getLogger(__name__)

HEALTH_PORT = 4240
HELLO_PATH = "/hello"
ICMP_REQUESTS = 3
ICMP_SPACING = 0.1
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0

_ids = itertools.count((os.getpid() * 7919) & 0xFFFF)


class HealthServerError(PyliumError):
    """The responder could not listen (port taken, address missing)."""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _echo_request(ident: int, seq: int) -> bytes:
    payload = b"pylium-health"
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


def _open_icmp() -> tuple[socket.socket, bool]:
    """(socket, raw?)."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True
    except PermissionError:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False


def icmp_probe(
    ip: str,
    *,
    requests: int = ICMP_REQUESTS,
    spacing: float = ICMP_SPACING,
    timeout: float = 2.0,
) -> Connectivity:
    """Echo requests to ``ip``; the RTT of the first reply, or why there was none."""
    try:
        sock, raw = _open_icmp()
    except OSError as err:
        return Connectivity(status=f"ICMP socket: {err.strerror or err}")
    ident = next(_ids) & 0xFFFF
    sent: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    try:
        sock.setblocking(False)
        seq = 0
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return Connectivity(status=f"no ICMP echo reply from {ip} within {timeout:g}s")
            if seq < requests and now >= next_send:
                seq += 1
                try:
                    sock.sendto(_echo_request(ident, seq), (ip, 0))
                except OSError as err:
                    return Connectivity(status=f"ICMP echo to {ip}: {err.strerror or err}")
                sent[seq] = time.monotonic()
                next_send = now + spacing
            wait = max(0.0, min(deadline, next_send if seq < requests else deadline) - now)
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                continue
            try:
                packet, addr = sock.recvfrom(2048)
            except BlockingIOError:
                continue
            got = time.monotonic()
            if addr[0] != ip:
                continue
            if raw:
                packet = packet[(packet[0] & 0x0F) * 4 :]
            if len(packet) < 8:
                continue
            kind, _, _, r_ident, r_seq = struct.unpack("!BBHHH", packet[:8])
            if kind != ICMP_ECHO_REPLY or (raw and r_ident != ident) or r_seq not in sent:
                continue
            return Connectivity(latency_ns=int((got - sent[r_seq]) * 1e9))
    finally:
        sock.close()


def http_probe(ip: str, port: int = HEALTH_PORT, *, timeout: float = 2.0) -> Connectivity:
    """``GET http://ip:port/hello``; success is a 200 answer."""
    url = f"http://{ip}:{port}{HELLO_PATH}"
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request("GET", HELLO_PATH)
        response = conn.getresponse()
        response.read()
        latency = int((time.monotonic() - start) * 1e9)
    except TimeoutError:
        return Connectivity(status=f"Get {url}: connection timed out after {timeout:g}s")
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.ECONNREFUSED:
            reason = "connection refused"
        return Connectivity(status=f"Get {url}: {reason}")
    except http.client.HTTPException as err:
        return Connectivity(status=f"Get {url}: {err!r}")
    finally:
        conn.close()
    if response.status != 200:
        return Connectivity(status=f"Get {url}: HTTP {response.status}")
    return Connectivity(latency_ns=latency)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, body = (200, b"Hello\n") if self.path == HELLO_PATH else (404, b"not found\n")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HealthResponder:
    """The node's ``:4240`` responder (upstream's agent health server on the node address)."""

    def __init__(self, address: str, port: int = HEALTH_PORT) -> None:
        self.address = address
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            server = _Server((self.address, self.port), _Handler)
        except OSError as err:
            raise HealthServerError(
                f"health responder cannot listen on {self.address}:{self.port}: "
                f"{err.strerror or err}"
            ) from err
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="health-responder", daemon=True
        )
        self._thread.start()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
