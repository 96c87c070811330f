"""L5: ``pylium-operator``, one active per cluster (leader-elected through the store).

The operator campaigns for the ``operator/leader`` lease; while it leads, it runs the IPAM
controller of its mode (cluster-pool node CIDRs or multi-pool chunks), woken by every
CiliumNode change and at least every few seconds, and the identity garbage collector every
``identity-gc-interval``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from pylium import __version__
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.adapters.store.factory import open_store
from pylium.base.errors import PyliumError
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.operator import ipam_mode
from pylium.operator.identity_gc import IdentityGC
from pylium.operator.multipool import MultiPoolController
from pylium.operator.nodecidr import NodeCIDRController
from pylium.runtime.daemon import read_configmap, setup_logging, stop_on_signals
from pylium.runtime.leader import LeaderElector

log = logging.getLogger("pylium.operator")

LEADER_KEY = "operator/leader"
LEADER_TTL = 5
RESYNC_SECONDS = 2.0


def _watch_nodes(store: Store, stop: threading.Event, wake: threading.Event) -> None:
    """Set ``wake`` on every CiliumNode change; re-watches after errors. A daemon thread: it
    ends with the process."""
    client = ResourceClient(store)
    while not stop.is_set():
        try:
            watch = client.watch("CiliumNode", start_revision=store.revision() + 1)
            for _ in watch:
                wake.set()
        except PyliumError as err:
            log.warning("CiliumNode watch failed: %s", err)
            stop.wait(1.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pylium-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="local:PATH or etcd:URL")
    parser.add_argument("--config", type=Path, help="cilium-config as a JSON object")
    parser.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument(
        "--force-ipam-mode-change",
        action="store_true",
        help="accept an IPAM mode different from the one nodes hold allocations from",
    )
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.debug)
    stop = stop_on_signals()
    try:
        settings = OperatorSettings.from_configmap(read_configmap(args.config))
        store = open_store(args.store)
        store.revision()
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("starting pylium-operator %s", __version__, extra={"identity": args.identity})
    elector = LeaderElector(store, key=LEADER_KEY, identity=args.identity, ttl=LEADER_TTL)
    thread = threading.Thread(target=elector.run, args=(stop,), name="leader-election")
    thread.start()
    wake = threading.Event()
    watcher = threading.Thread(target=_watch_nodes, args=(store, stop, wake), daemon=True)
    watcher.start()
    controller: NodeCIDRController | MultiPoolController = (
        MultiPoolController(store)
        if settings.ipam is IPAMMode.MULTI_POOL
        else NodeCIDRController(store, settings)
    )
    gc = IdentityGC(store, grace_seconds=settings.identity_heartbeat_timeout.total_seconds())
    gc_interval = settings.identity_gc_interval.total_seconds()
    last_gc = time.monotonic()
    last_mode_error = ""
    try:
        while not stop.is_set():
            if elector.is_leader:
                try:
                    mode_error = ipam_mode.guard(
                        store, settings.ipam.value, force=args.force_ipam_mode_change
                    )
                    if mode_error:
                        if mode_error != last_mode_error:
                            log.error("%s", mode_error)
                            ipam_mode.report(store, mode_error)
                        last_mode_error = mode_error
                    else:
                        controller.reconcile()
                    if time.monotonic() - last_gc >= gc_interval:
                        gc.run_once(time.time())
                        last_gc = time.monotonic()
                except PyliumError as err:
                    log.warning("operator reconcile failed: %s", err)
            wake.wait(RESYNC_SECONDS)
            wake.clear()
    finally:
        thread.join()
        store.close()
    log.info("stopped")
