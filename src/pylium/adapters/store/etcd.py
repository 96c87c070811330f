"""L3: the ``etcd`` store over etcd v3's grpc-gateway JSON API (``etcd3gw`` transport).

Every key is stored under a root prefix (default ``pylium/``), so several stores can share
one etcd. Calls go through :meth:`etcd3gw.client.Etcd3Client.post` (its URL building and
error classes); the watch stream is read directly from ``/v3/watch`` because etcd3gw's
watcher neither reports ``compact_revision`` nor resumes after a dropped connection.

Watch resumption: events of one revision always arrive in one response line (etcd never
splits a revision across watch responses unless ``fragment`` is asked for), so after a
drop the watch reconnects from the last delivered revision + 1: no gap, no duplicate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from etcd3gw import exceptions as gw_errors
from etcd3gw.client import Etcd3Client

from pylium.adapters.store.api import (
    Compare,
    EventType,
    KeyValue,
    ListResult,
    Op,
    Put,
    TxnResult,
    WatchEvent,
)
from pylium.adapters.store.common import RECONNECT_TIMEOUT, check_ops, check_ttl, prefix_end
from pylium.base.errors import CompactedError, StoreError, StoreUnavailable

DEFAULT_PREFIX = "pylium/"
REQUEST_TIMEOUT = 10.0
"""Seconds for one request (connect and read) before the endpoint counts as unavailable."""

_API_PATH = "/v3/"  # etcd >= 3.4 serves /v3/; naming it skips etcd3gw's discovery request

Json = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int(msg: Json, name: str) -> int:
    """int64 fields arrive as strings and are left out when 0 (proto3 JSON)."""
    return int(msg.get(name, 0))


def _client(endpoint: str) -> Etcd3Client:
    url = urllib.parse.urlsplit(endpoint)
    return Etcd3Client(
        host=url.hostname or "127.0.0.1",
        port=url.port or 2379,
        protocol=url.scheme or "http",
        timeout=REQUEST_TIMEOUT,
        api_path=_API_PATH,
    )


def _error_text(err: gw_errors.Etcd3Exception) -> str:
    text = err.detail_text or str(err)
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(text).get("error", text))
    return text


class EtcdStore:
    """The ``etcd`` backend; ``endpoints`` are client URLs tried in turn on connection errors."""

    def __init__(self, endpoints: Sequence[str], *, prefix: str = DEFAULT_PREFIX) -> None:
        if not endpoints:
            raise StoreError("etcd", "no endpoints given")
        self.endpoints = tuple(endpoints)
        self.prefix = prefix
        self._clients = [_client(e) for e in self.endpoints]
        self._current = 0

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _strip(self, raw: str) -> str:
        return base64.b64decode(raw).decode()[len(self.prefix) :]

    def _kv(self, msg: Json) -> KeyValue:
        return KeyValue(
            key=self._strip(msg["key"]),
            value=base64.b64decode(msg.get("value", "")),
            create_revision=_int(msg, "create_revision"),
            mod_revision=_int(msg, "mod_revision"),
            version=_int(msg, "version"),
            lease=_int(msg, "lease"),
        )

    def post(self, path: str, body: Json, *, key: str) -> Json:
        """POST to the gateway, moving to the next endpoint when one cannot be reached."""
        last: Exception | None = None
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result: Json = client.post(client.get_url(path), json=body)
            except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError) as err:
                last = err
                continue
            except gw_errors.Etcd3Exception as err:
                raise StoreError(key, f"etcd: {_error_text(err)}") from err
            except requests.RequestException as err:
                last = err
                continue
            self._current = index
            return result
        raise StoreUnavailable(
            key, f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}"
        ) from last

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        resp = self.post("/kv/range", {"key": _b64(self._key(key))}, key=key)
        kvs = resp.get("kvs", [])
        return self._kv(kvs[0]) if kvs else None

    def _range(self, prefix: str) -> Json:
        start = self._key(prefix)
        end = prefix_end(start)
        return {"key": _b64(start or b"\0"), "range_end": _b64(end or b"\0")}

    def list(self, prefix: str) -> ListResult:
        resp = self.post("/kv/range", {**self._range(prefix), "sort_target": "KEY"}, key=prefix)
        items = tuple(self._kv(kv) for kv in resp.get("kvs", []))
        return ListResult(items=items, revision=_int(resp["header"], "revision"))

    def revision(self) -> int:
        resp = self.post(
            "/kv/range", {"key": _b64(self._key("")), "count_only": True}, key="revision"
        )
        return _int(resp["header"], "revision")

    # -- writes -----------------------------------------------------------------------------

    def _put_request(self, key: str, value: bytes, lease: int) -> Json:
        req: Json = {"key": _b64(self._key(key)), "value": _b64(value)}
        if lease:
            req["lease"] = lease
        return req

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        resp = self.post("/kv/put", self._put_request(key, value, lease), key=key)
        return _int(resp["header"], "revision")

    def delete(self, key: str) -> bool:
        resp = self.post("/kv/deleterange", {"key": _b64(self._key(key))}, key=key)
        return _int(resp, "deleted") > 0

    def _compare(self, cmp: Compare) -> Json:
        key = _b64(self._key(cmp.key))
        if cmp.mod_revision == 0:
            # "absent": a missing key has create_revision 0 (mod_revision 0 would also match
            # nothing else, but etcd documents create_revision == 0 as the existence test).
            return {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        return {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": cmp.mod_revision}

    def commit(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_ops(ops)
        success: list[Json] = []
        for op in ops:
            if isinstance(op, Put):
                success.append({"request_put": self._put_request(op.key, op.value, op.lease)})
            else:
                success.append({"request_delete_range": {"key": _b64(self._key(op.key))}})
        where = ops[0].key if ops else (compares[0].key if compares else "txn")
        resp = self.post(
            "/kv/txn",
            {"compare": [self._compare(c) for c in compares], "success": success, "failure": []},
            key=where,
        )
        return TxnResult(
            succeeded=bool(resp.get("succeeded", False)),
            revision=_int(resp["header"], "revision"),
        )

    # -- leases -----------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        check_ttl(ttl)
        resp = self.post("/lease/grant", {"TTL": ttl, "ID": 0}, key="lease")
        return _int(resp, "ID")

    def keepalive(self, lease: int) -> None:
        resp = self.post("/lease/keepalive", {"ID": lease}, key=f"lease {lease}")
        if _int(resp.get("result", {}), "TTL") <= 0:
            raise StoreError(f"lease {lease}", "lease not found (expired or revoked)")

    def revoke(self, lease: int) -> None:
        self.post("/kv/lease/revoke", {"ID": lease}, key=f"lease {lease}")

    # -- history ----------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        try:
            self.post("/kv/compaction", {"revision": revision, "physical": True}, key="compact")
        except StoreUnavailable:
            raise
        except StoreError as err:
            if "has been compacted" not in err.message:
                raise

    def watch(self, prefix: str, *, start_revision: int) -> EtcdWatch:
        if start_revision <= 0:
            start_revision = self.revision() + 1
        return EtcdWatch(self, prefix, start_revision)

    def close(self) -> None:
        for client in self._clients:
            client.session.close()


class EtcdWatch:
    """A watch stream that survives server restarts (see the module docstring)."""

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._next = start_revision
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._session = requests.Session()

    def close(self) -> None:
        """End the iteration promptly; safe from any thread."""
        self._closed.set()
        with self._lock:
            if self._response is not None:
                _shutdown(self._response)

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            yield from self._follow()
        finally:
            self._session.close()

    def _follow(self) -> Iterator[WatchEvent]:
        down_since: float | None = None
        while not self._closed.is_set():
            resp = self._connect()
            if resp is None:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > RECONNECT_TIMEOUT:
                    raise StoreUnavailable(
                        self._prefix,
                        f"watch lost etcd ({', '.join(self._store.endpoints)}) for "
                        f"{RECONNECT_TIMEOUT:.0f}s; resume from revision {self._next}",
                    )
                self._closed.wait(0.2)
                continue
            down_since = None
            try:
                for line in resp.iter_lines(chunk_size=None):
                    if line:
                        yield from self._events(json.loads(line))
            except (requests.RequestException, OSError, ValueError):
                pass  # the stream broke (server gone, or close()): reconnect or stop
            finally:
                with self._lock:
                    self._response = None
                resp.close()

    def _connect(self) -> requests.Response | None:
        start = self._store._key(self._prefix)
        end = prefix_end(start)
        request: Json = {
            "key": _b64(start or b"\0"),
            "range_end": _b64(end or b"\0"),
            "start_revision": self._next,
        }
        for client in self._store._clients:
            try:
                resp = self._session.post(
                    client.get_url("/watch"),
                    json={"create_request": request},
                    stream=True,
                    timeout=(REQUEST_TIMEOUT, None),
                )
            except requests.RequestException:
                continue
            if resp.status_code != 200:
                resp.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    resp.close()
                    return None
                self._response = resp
            return resp
        return None

    def _events(self, msg: Json) -> Iterator[WatchEvent]:
        if "error" in msg:
            raise StoreError(self._prefix, f"etcd watch: {msg['error'].get('message', msg)}")
        result: Json = msg.get("result", {})
        compacted = _int(result, "compact_revision")
        if compacted:
            raise CompactedError(self._prefix, self._next, compacted)
        if result.get("canceled"):
            reason = result.get("cancel_reason", "no reason given")
            raise StoreError(self._prefix, f"etcd canceled the watch: {reason}")
        for ev in result.get("events", ()):
            kv: Json = ev["kv"]
            revision = _int(kv, "mod_revision")
            is_delete = ev.get("type") == "DELETE"
            yield WatchEvent(
                type=EventType.DELETE if is_delete else EventType.PUT,
                key=self._store._strip(kv["key"]),
                value=b"" if is_delete else base64.b64decode(kv.get("value", "")),
                revision=revision,
            )
            self._next = revision + 1


def _shutdown(resp: requests.Response) -> None:
    """Wake a reader blocked on the stream by shutting its socket down (close() alone won't)."""
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
