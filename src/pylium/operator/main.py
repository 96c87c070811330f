"""L5: ``pylium-operator``, one active per cluster (leader-elected through the store).

The operator campaigns for the ``operator/leader`` lease; while it leads, it runs the IPAM
controller of its mode (cluster-pool node CIDRs, multi-pool chunks, or cloud IPs -- AWS ENI,
Azure, AlibabaCloud: :mod:`pylium.operator.clouds`), woken by every
CiliumNode change and at least every few seconds, the identity garbage collector every
``identity-gc-interval``, and the service controller (ClusterIP and NodePort allocation,
EndpointSlices from Services' selectors and Pods: :mod:`pylium.operator.services`), woken by
every Service and Pod change, and the node garbage collector (:mod:`pylium.operator.nodegc`:
the state of nodes removed from the cluster).

Several replicas may run (Helm ``operator.replicas``): each registers under
``operator/instances/`` and campaigns; the controllers write through a
:class:`~pylium.runtime.leader.FencedStore`, so a deposed leader's late write fails instead of
allocating next to its successor's. Store errors are logged and retried at the next pass.
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
from pylium.core.lb.allocate import DEFAULT_SERVICE_CIDR
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.operator import ipam_mode
from pylium.operator import metrics as operator_metrics
from pylium.operator.cloud_ipam import CloudIPAMController
from pylium.operator.clouds import cloud_controller
from pylium.operator.identity_gc import IdentityGC
from pylium.operator.multipool import MultiPoolController
from pylium.operator.nodecidr import NodeCIDRController
from pylium.operator.nodegc import NodeGC
from pylium.operator.services import ServiceController
from pylium.runtime.daemon import read_configmap, setup_logging, stop_on_signals
from pylium.runtime.leader import FencedStore, LeaderElector
from pylium.runtime.nodekeys import OPERATOR_INSTANCES_PREFIX, OPERATOR_LEADER_KEY

log = logging.getLogger("pylium.operator")

LEADER_KEY = OPERATOR_LEADER_KEY
LEADER_TTL = 5
RESYNC_SECONDS = 2.0


def _watch_nodes(
    store: Store, stop: threading.Event, wake: threading.Event, kind: str = "CiliumNode"
) -> None:
    """Set ``wake`` on every change of ``kind``; re-watches after errors. A daemon thread: it
    ends with the process."""
    client = ResourceClient(store)
    while not stop.is_set():
        try:
            watch = client.watch(kind, start_revision=store.revision() + 1)
            for _ in watch:
                wake.set()
        except PyliumError as err:
            log.warning("%s watch failed: %s", kind, err)
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
    parser.add_argument(
        "--service-cluster-ip-range",
        default=DEFAULT_SERVICE_CIDR,
        help="where ClusterIPs come from (kube-apiserver's flag; default %(default)s)",
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
        elector = LeaderElector(
            store,
            key=LEADER_KEY,
            identity=args.identity,
            ttl=LEADER_TTL,
            presence_prefix=OPERATOR_INSTANCES_PREFIX,
        )
        fenced = FencedStore(store, elector)
        cloud = cloud_controller(fenced, settings)
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("starting pylium-operator %s", __version__, extra={"identity": args.identity})
    wake = threading.Event()  # set on every watched change and when leadership changes
    thread = threading.Thread(target=elector.run, args=(stop, wake), name="leader-election")
    thread.start()
    metrics = operator_metrics.start(
        settings,
        ResourceClient(store),
        lambda: elector.is_leader,
        extra=[cloud.collector()] if cloud is not None else [],
    )
    for kind in ("CiliumNode", "Service", "Pod"):
        threading.Thread(
            target=_watch_nodes, args=(store, stop, wake, kind), daemon=True, name=f"watch-{kind}"
        ).start()
    services = ServiceController(fenced, service_cidr=args.service_cluster_ip_range)
    controller: NodeCIDRController | MultiPoolController | CloudIPAMController
    if cloud is not None:
        controller = cloud
    elif settings.ipam is IPAMMode.MULTI_POOL:
        controller = MultiPoolController(fenced)
    else:
        controller = NodeCIDRController(fenced, settings)
    gc = IdentityGC(fenced, grace_seconds=settings.identity_heartbeat_timeout.total_seconds())
    node_gc = NodeGC(fenced)
    gc_interval = settings.identity_gc_interval.total_seconds()
    last_gc = time.monotonic()
    last_mode_error = ""
    try:
        while not stop.is_set():
            if elector.is_leader:
                try:
                    node_gc.run_once()
                    mode_error = ipam_mode.guard(
                        fenced, settings.ipam.value, force=args.force_ipam_mode_change
                    )
                    if mode_error:
                        if mode_error != last_mode_error:
                            log.error("%s", mode_error)
                            ipam_mode.report(fenced, mode_error)
                        last_mode_error = mode_error
                    else:
                        controller.reconcile()
                    if time.monotonic() - last_gc >= gc_interval:
                        gc.run_once(time.time())
                        last_gc = time.monotonic()
                except PyliumError as err:
                    log.warning("operator reconcile failed: %s", err)
                try:
                    services.reconcile()
                except PyliumError as err:
                    log.warning("service controller failed: %s", err)
            wake.wait(RESYNC_SECONDS)
            wake.clear()
    finally:
        if metrics is not None:
            metrics.stop()
        thread.join()
        store.close()
    log.info("stopped")
