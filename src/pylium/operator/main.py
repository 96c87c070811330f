"""L5: ``pylium-operator``, one active per cluster (leader-elected through the store).

Today the operator campaigns for the ``operator/leader`` lease and holds it; cluster-pool IPAM
and garbage collection are wired in by the IPAM issue.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from pylium import __version__
from pylium.adapters.store.factory import open_store
from pylium.base.errors import PyliumError
from pylium.model.config import OperatorSettings
from pylium.runtime.daemon import read_configmap, setup_logging, stop_on_signals
from pylium.runtime.leader import LeaderElector

log = logging.getLogger("pylium.operator")

LEADER_KEY = "operator/leader"
LEADER_TTL = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pylium-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="local:PATH or etcd:URL")
    parser.add_argument("--config", type=Path, help="cilium-config as a JSON object")
    parser.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.debug)
    stop = stop_on_signals()
    try:
        OperatorSettings.from_configmap(read_configmap(args.config))
        store = open_store(args.store)
        store.revision()
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("starting pylium-operator %s", __version__, extra={"identity": args.identity})
    elector = LeaderElector(store, key=LEADER_KEY, identity=args.identity, ttl=LEADER_TTL)
    thread = threading.Thread(target=elector.run, args=(stop,), name="leader-election")
    thread.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        thread.join()
        store.close()
    log.info("stopped")
