"""L5: the operator's service controller: what the Kubernetes API server and
kube-controller-manager do for Services when there is no Kubernetes.

Run by the leading operator (one writer, so allocations never race):

* **ClusterIPs** (the API server's allocator): a Service with no ``spec.clusterIP`` gets the
  next free address of the service CIDR (``--service-cluster-ip-range``, default
  10.96.0.0/12); one naming an address keeps it (``None`` is headless). The allocator is
  rebuilt from the stored Services on every pass, oldest first, so it needs no state of its
  own; a Service naming an address another one holds, or one outside the range, is left
  as written and reported in the log (the API server would have refused it).
* **NodePorts**: NodePort and LoadBalancer Services (unless
  ``allocateLoadBalancerNodePorts: false``) get a nodePort from 30000-32767 per port that has
  none, the same way.
* **EndpointSlices** (the endpointslice controller): for every Service with a selector, the
  Pods of its namespace whose labels match and that have an IP, with ``serving`` from the Pod
  phase (Running), ``terminating`` while it is being deleted (``deletionTimestamp``) and
  ``ready`` = serving and not terminating, their node and a targetRef; numeric or defaulted
  ``targetPort`` as the slice port, a named one resolved from each Pod's container ports
  (Pods resolving differently go to different slices). Slices are labelled
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
  pylium-operator``; only those are rewritten or deleted, so hand-written slices (Services
  without selectors) are the user's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.base.errors import AllocationError
from pylium.core.lb.allocate import DEFAULT_SERVICE_CIDR, ClusterIPAllocator, NodePortAllocator
from pylium.core.lb.k8s import SERVICE_NAME_LABEL
from pylium.model.resource import Resource, ResourceKey

log = logging.getLogger(__name__)

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "pylium-operator"


def _version(r: Resource) -> int:
    try:
        return int(r.metadata.get("resourceVersion") or 0)
    except ValueError:
        return 0


def _selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_serving(pod: Resource) -> bool:
    """The pod can take traffic (its Ready condition: here, Running), terminating or not."""
    return (pod.body.get("status") or {}).get("phase") == "Running"


def _conditions(pod: Resource) -> dict[str, bool]:
    """The endpointslice controller's conditions: ``serving`` follows readiness even while
    the pod terminates (KEP-1672), ``ready`` is serving and not terminating."""
    terminating = bool(pod.metadata.get("deletionTimestamp"))
    serving = _pod_serving(pod)
    return {"ready": serving and not terminating, "serving": serving, "terminating": terminating}


def _target_port(port: Mapping[str, Any], pod: Resource) -> int | None:
    """The pod port a service port sends to: targetPort (number or container-port name),
    defaulting to the service port."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.body.get("spec") or {}).get("containers") or []:
        for cp in container.get("ports") or []:
            if cp.get("name") == target:
                return int(cp["containerPort"])
    return None


def slice_name(service: str, group: int) -> str:
    digest = hashlib.sha256(f"{service}/{group}".encode()).hexdigest()[:5]
    return f"{service}-{digest}"


def endpoint_slices(service: Resource, pods: Sequence[Resource]) -> list[dict[str, Any]]:
    """The slices the endpointslice controller keeps for ``service`` (a selector needed)."""
    spec = service.body.get("spec") or {}
    selector = spec.get("selector") or {}
    ports = spec.get("ports") or []
    groups: dict[tuple[int | None, ...], list[Resource]] = {}
    for pod in pods:
        status = pod.body.get("status") or {}
        if pod.namespace != service.namespace or not status.get("podIP"):
            continue
        if not _selector_matches(selector, pod.labels):
            continue
        resolved = tuple(_target_port(p, pod) for p in ports)
        groups.setdefault(resolved, []).append(pod)
    out = []
    for index, (resolved, members) in enumerate(sorted(groups.items(), key=lambda kv: str(kv))):
        slice_ports = [
            {"name": p.get("name") or "", "port": target, "protocol": p.get("protocol") or "TCP"}
            for p, target in zip(ports, resolved, strict=True)
            if target is not None
        ]
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name(service.name, index),
                    "namespace": service.namespace,
                    "labels": {SERVICE_NAME_LABEL: service.name, MANAGED_BY_LABEL: MANAGED_BY},
                },
                "addressType": "IPv4",
                "ports": slice_ports,
                "endpoints": [
                    {
                        "addresses": [str((pod.body.get("status") or {})["podIP"])],
                        "conditions": _conditions(pod),
                        "nodeName": str((pod.body.get("spec") or {}).get("nodeName") or ""),
                        "targetRef": {
                            "kind": "Pod",
                            "namespace": pod.namespace,
                            "name": pod.name,
                        },
                    }
                    for pod in sorted(members, key=lambda p: p.name)
                ],
            }
        )
    return out


class ServiceController:
    def __init__(
        self,
        store: Store,
        *,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        node_port_range: tuple[int, int] = (30000, 32767),
    ) -> None:
        self.client = ResourceClient(store)
        self.cidr = ipaddress.ip_network(service_cidr)
        self.node_port_range = node_port_range
        self._reported: set[str] = set()

    def reconcile(self) -> None:
        services, _ = self.client.list("Service")
        services.sort(key=_version)
        services = self._allocate(services)
        pods, _ = self.client.list("Pod")
        slices, _ = self.client.list("EndpointSlice")
        self._endpoint_slices(services, pods, slices)

    # -- allocation -------------------------------------------------------------------------

    def _report(self, owner: str, message: str) -> None:
        if f"{owner}: {message}" not in self._reported:
            self._reported.add(f"{owner}: {message}")
            log.error("service %s: %s", owner, message)

    def _allocate(self, services: list[Resource]) -> list[Resource]:
        ips = ClusterIPAllocator(self.cidr)
        ports = NodePortAllocator(*self.node_port_range)
        needs: list[Resource] = []
        for svc in services:
            owner = f"{svc.namespace}/{svc.name}"
            spec = svc.body.get("spec") or {}
            ip = spec.get("clusterIP")
            missing = not ip
            if ip and str(ip).lower() != "none":
                try:
                    ips.allocate(owner, str(ip))
                except AllocationError as err:
                    self._report(owner, str(err))
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    try:
                        ports.allocate(owner, int(p["nodePort"]))
                    except AllocationError as err:
                        self._report(owner, str(err))
                elif self._wants_node_port(spec):
                    missing = True
            if missing:
                needs.append(svc)
        if not needs:
            return services
        updated = {}
        for svc in needs:
            owner = f"{svc.namespace}/{svc.name}"

            def fill(body: dict[str, Any] | None, owner: str = owner) -> dict[str, Any] | None:
                if body is None:
                    return None
                spec = body.setdefault("spec", {})
                if not spec.get("clusterIP"):
                    ip = str(ips.allocate(owner))
                    spec["clusterIP"] = ip
                    spec["clusterIPs"] = [ip]
                if self._wants_node_port(spec):
                    for p in spec.get("ports") or []:
                        if not p.get("nodePort"):
                            p["nodePort"] = ports.allocate(owner)
                return body

            try:
                written = self.client.mutate("Service", svc.name, svc.namespace, fn=fill)
            except AllocationError as err:
                self._report(owner, str(err))
                continue
            if written is not None:
                updated[written.key] = written
                log.info(
                    "allocated",
                    extra={"service": owner, "clusterIP": written.body["spec"].get("clusterIP")},
                )
        return [updated.get(s.key, s) for s in services]

    @staticmethod
    def _wants_node_port(spec: Mapping[str, Any]) -> bool:
        typ = spec.get("type") or "ClusterIP"
        if typ == "NodePort":
            return True
        return typ == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False

    # -- endpoint slices --------------------------------------------------------------------

    def _endpoint_slices(
        self, services: list[Resource], pods: list[Resource], slices: list[Resource]
    ) -> None:
        desired: dict[ResourceKey, dict[str, Any]] = {}
        for svc in services:
            if (svc.body.get("spec") or {}).get("selector"):
                for body in endpoint_slices(svc, pods):
                    r = Resource(body)
                    desired[r.key] = body
        existing = {s.key: s for s in slices if s.labels.get(MANAGED_BY_LABEL) == MANAGED_BY}
        for key, body in desired.items():
            old = existing.get(key)
            if old is not None and _same_slice(old.body, body):
                continue
            self.client.put(Resource(body))
        stale = [key for key in existing if key not in desired]
        if stale:
            self.client.delete_many(stale)


def _same_slice(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(old.get(f) == new.get(f) for f in ("addressType", "ports", "endpoints")) and (
        (old.get("metadata") or {}).get("labels") == new["metadata"]["labels"]
    )
