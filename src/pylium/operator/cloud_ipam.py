"""L5: the cloud IPAM controller shared by ``ipam: eni``, ``azure`` and ``alibabacloud``.

One loop, one state machine (:mod:`pylium.core.ipam.cloud.plan`), several clouds: a
:class:`CloudProvider` supplies the inventory (the instance's interfaces, the subnets or
vSwitches with their free addresses, security groups), the instance type's limits and the
calls that change the cloud (assign addresses to an interface, create and attach an
interface, unassign addresses). For every CiliumNode carrying the provider's spec section
(``spec.eni``, ``spec.azure``, ``spec.alibaba-cloud``) the controller plans with the node's
watermarks (``spec.ipam``), executes the plan, and writes ``spec.ipam.pool`` (IP -> interface
id as its ``resource``), the provider's status section and
``status.ipam.operator-status.error``.

Nothing is remembered between passes but the release grace periods: the pool is always what
the cloud says is attached, so a restarted operator resumes from the cloud's state and never
allocates twice. Where the provider releases excess IPs (``aws-release-excess-ips``,
``alibaba-cloud-release-excess-ips``) they go back through upstream's handshake in
``status.ipam.release-ips``. :meth:`CloudIPAMController.collector` serves
``cilium_operator_<api>_api_*`` and ``cilium_operator_ipam_*`` metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pylium.adapters.cloudapi import CloudAPIError, Metrics
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.base.errors import PyliumError
from pylium.core.ipam.cloud.plan import (
    AllocationPlan,
    CreateInterface,
    Interface,
    Limits,
    NodeSpec,
    ReleaseState,
    Subnet,
    Watermarks,
    plan_allocation,
    plan_release,
    pool_of,
    release_step,
)
from pylium.model.config import OperatorSettings

log = logging.getLogger(__name__)

RESYNC_SECONDS = 60.0
"""Upstream refreshes its cloud cache every minute."""


class CloudProvider(Protocol):
    """What a cloud supplies to the shared controller."""

    mode: str
    """The ``ipam`` value (``eni``, ``azure``, ``alibabacloud``)."""
    spec_key: str
    """The CiliumNode spec/status section (``eni``, ``azure``, ``alibaba-cloud``)."""
    cloud: str
    """The cloud's name in messages (``EC2``, ``Azure``, ``AlibabaCloud``)."""
    create_interfaces: bool
    """Whether new interfaces may be created (Azure IPAM only adds IP configurations)."""
    release_excess_ips: bool
    """Whether excess IPs go back to the cloud."""

    @property
    def metrics(self) -> Metrics:
        """The API client's call counters."""

    def refresh(self) -> None:
        """Re-read the whole inventory."""

    def refresh_instance(self, instance_id: str) -> None:
        """Re-read one instance's interfaces and the subnets' free counts."""

    def node_spec(self, spec: Mapping[str, Any]) -> NodeSpec:
        """The provider's section of ``CiliumNode.spec`` as a :class:`NodeSpec`."""

    def interfaces_of(self, spec: NodeSpec) -> list[Interface]:
        """The node's instance's attached interfaces, by device index (from the cache)."""

    def subnets(self) -> list[Subnet]:
        """Every subnet (vSwitch) with its free addresses (from the cache)."""

    def limits_of(self, spec: NodeSpec) -> Limits | None:
        """The instance type's limits; None when unknown."""

    def security_groups_for(self, spec: NodeSpec, interfaces: list[Interface]) -> tuple[str, ...]:
        """Security groups for a new interface."""

    def assign(self, spec: NodeSpec, interface_id: str, count: int) -> None:
        """``count`` more addresses on the interface."""

    def unassign(self, spec: NodeSpec, interface_id: str, ips: list[str]) -> None:
        """Give ``ips`` of the interface back."""

    def create_interface(self, spec: NodeSpec, create: CreateInterface) -> None:
        """Create an interface with ``create.count`` addresses and attach it."""

    def status_of(self, spec: NodeSpec, interfaces: list[Interface]) -> dict[str, Any]:
        """Fields of ``status.<spec_key>`` describing the interfaces."""

    def subnet_of(self, interface_id: str) -> str:
        """The subnet of an interface (the ``subnet_id`` label of the ops metrics)."""


LIMITS_REFRESH_SECONDS = 60.0
"""An instance type missing from the known limits is asked for at most this often."""


class InstanceLimits:
    """Limits per instance type: the known ones, and an unknown type asked from the cloud
    (``fetch``) at most once per ``LIMITS_REFRESH_SECONDS``; a failed call is logged and
    the type stays unknown until the next try."""

    def __init__(
        self,
        fetch: Callable[[list[str]], Mapping[str, Limits]],
        clock: Callable[[], float],
        known: Mapping[str, Limits] | None = None,
    ) -> None:
        self._fetch, self._clock = fetch, clock
        self.known: dict[str, Limits] = dict(known or {})
        self._asked: dict[str, float] = {}

    def update(self, more: Mapping[str, Limits]) -> None:
        self.known.update(more)

    def get(self, instance_type: str) -> Limits | None:
        found = self.known.get(instance_type)
        if found is not None:
            return found
        if self._clock() - self._asked.get(instance_type, float("-inf")) >= LIMITS_REFRESH_SECONDS:
            self._asked[instance_type] = self._clock()
            try:
                self.known.update(self._fetch([instance_type]))
            except CloudAPIError as err:
                log.warning("instance type limits of %s not available: %s", instance_type, err)
        return self.known.get(instance_type)


@dataclass(slots=True)
class NodeReport:
    """What one pass did for a node (for logs, tests and the status)."""

    node: str
    plan: AllocationPlan | None = None
    allocated: int = 0
    released: list[str] = field(default_factory=list)
    error: str = ""


ReleaseOps = tuple[list[str], list[str], list[str]]
"""Changes to ``status.ipam.release-ips``: IPs to mark, released, to unmark."""


class CloudIPAMController:
    """Reconciles every CiliumNode of the provider's mode against the cloud; call
    :meth:`reconcile` from the operator's loop (it calls the cloud only when something needs
    doing or the cache is stale)."""

    def __init__(
        self,
        store: Store,
        provider: CloudProvider,
        settings: OperatorSettings,
        *,
        resync: float = RESYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = ResourceClient(store)
        self.provider = provider
        self.settings = settings
        self.resync = resync
        self.clock = clock
        self._refreshed = float("-inf")
        self._first_seen: dict[str, dict[str, float]] = {}
        self._looked_up: dict[str, float] = {}
        self.reports: dict[str, NodeReport] = {}
        self.specs: dict[str, NodeSpec] = {}
        """The last spec seen per node (for the metrics)."""
        self.ops: dict[tuple[str, str], int] = {}
        """(allocation | release | interface_creation, subnet id) -> operations done."""

    def refresh(self) -> None:
        """Re-read the provider's whole inventory."""
        self.provider.refresh()
        self._refreshed = self.clock()

    # -- one pass -----------------------------------------------------------------------------

    def reconcile(self) -> dict[str, NodeReport]:
        if self.clock() - self._refreshed >= self.resync:
            self.refresh()
        nodes, _ = self.client.list("CiliumNode")
        self.specs = {}
        reports = {}
        key = self.provider.spec_key
        for node in nodes:
            body = dict(node.body)
            if key not in (body.get("spec") or {}):  # `azure: {}` is a node of ours too
                continue
            try:
                reports[node.name] = self._reconcile_node(node.name, body)
            except PyliumError as err:
                log.warning(
                    "cloud IP allocation failed",
                    extra={"node": node.name, "mode": self.provider.mode, "error": str(err)},
                )
                reports[node.name] = NodeReport(node.name, error=str(err))
                self._write(node.name, error=str(err))
        self.after_pass()
        self.reports = reports
        return reports

    def after_pass(self) -> None:
        """Hook for provider-specific periodic work (ENI garbage collection)."""

    def _reconcile_node(self, name: str, body: dict[str, Any]) -> NodeReport:
        spec_raw = body.get("spec") or {}
        p = self.provider
        spec = p.node_spec(spec_raw)
        self.specs[name] = spec
        report = NodeReport(name)
        problems = spec.problems()
        if problems:
            report.error = "; ".join(problems)
            self._write(name, error=report.error)
            return report
        status_ipam = (body.get("status") or {}).get("ipam") or {}
        used_all = set((status_ipam.get("used") or {}).keys())
        watermarks = Watermarks.from_spec(spec_raw.get("ipam") or {})
        limits = p.limits_of(spec)
        interfaces = p.interfaces_of(spec)
        last_look = self._looked_up.get(spec.instance_id, float("-inf"))
        if not interfaces and self.clock() - last_look >= self.resync:
            # A new instance since the last refresh, or a wrong instance-id: one look per
            # resync period, not one per pass.
            self._looked_up[spec.instance_id] = self.clock()
            p.refresh_instance(spec.instance_id)
            interfaces = p.interfaces_of(spec)
        if not interfaces:
            report.error = (
                f"instance {spec.instance_id} not found in {p.cloud} (no network interface "
                "is attached to it): check spec.instance-id"
            )
            self._write(name, error=report.error)
            return report
        pool = pool_of(interfaces, spec)
        used = len(used_all & set(pool))
        plan = plan_allocation(
            spec=spec,
            watermarks=watermarks,
            limits=limits,
            enis=interfaces,
            used=used,
            subnets=p.subnets(),
            security_groups=p.security_groups_for(spec, interfaces),
            subnet_ids_filter=self.settings.subnet_ids_filter,
            subnet_tags_filter=tuple(sorted(self.settings.subnet_tags_filter)),
            create_interfaces=p.create_interfaces,
        )
        report.plan = plan
        errors = [plan.error] if plan.error else []
        if plan.total:
            try:
                report.allocated = self._execute(spec, plan)
            except CloudAPIError as err:
                errors.append(str(err))
            p.refresh_instance(spec.instance_id)
            interfaces = p.interfaces_of(spec)
            log.info(
                "allocated cloud IPs",
                extra={"node": name, "ips": report.allocated, "needed": plan.needed},
            )
        release_ips = dict(status_ipam.get("release-ips") or {})
        ops: ReleaseOps | None = None
        if p.release_excess_ips and not plan.total:
            report.released, ops = self._release(
                name, spec, watermarks, interfaces, used_all, release_ips
            )
            if report.released:
                interfaces = p.interfaces_of(spec)
        report.error = "; ".join(errors)
        self._write(name, spec=spec, interfaces=interfaces, error=report.error, release_ops=ops)
        return report

    def _count(self, kind: str, subnet: str) -> None:
        self.ops[(kind, subnet)] = self.ops.get((kind, subnet), 0) + 1

    def _execute(self, spec: NodeSpec, plan: AllocationPlan) -> int:
        done = 0
        for a in plan.assign:
            self.provider.assign(spec, a.eni_id, a.count)
            self._count("allocation", self.provider.subnet_of(a.eni_id))
            done += a.count
        for c in plan.create:
            self.provider.create_interface(spec, c)
            self._count("interface_creation", c.subnet_id)
            self._count("allocation", c.subnet_id)
            done += c.count
        return done

    def _release(
        self,
        name: str,
        spec: NodeSpec,
        watermarks: Watermarks,
        interfaces: list[Interface],
        used: set[str],
        release_ips: dict[str, str],
    ) -> tuple[list[str], ReleaseOps]:
        """One step of the release handshake; returns the IPs unassigned and the changes to
        ``status.ipam.release-ips``."""
        handshaking = {ip for ip, st in release_ips.items() if st != ReleaseState.RELEASED}
        _, candidates = plan_release(
            spec=spec, watermarks=watermarks, enis=interfaces, used=used | handshaking
        )
        pending = [ip for ip, st in release_ips.items() if st == ReleaseState.MARKED]
        step = release_step(
            candidates=candidates + pending,
            release_ips=release_ips,
            first_seen=self._first_seen.get(name, {}),
            now=self.clock(),
            delay=float(self.settings.excess_ip_release_delay),
        )
        self._first_seen[name] = step.first_seen
        owner = pool_of(interfaces, spec)
        by_interface: dict[str, list[str]] = {}
        unmark = list(step.unmark)
        for ip in step.release:
            if ip in used:  # the agent said ready but uses it now: keep it
                unmark.append(ip)
            elif ip in owner:
                by_interface.setdefault(owner[ip], []).append(ip)
        released: list[str] = []
        for iface, ips in sorted(by_interface.items()):
            self.provider.unassign(spec, iface, sorted(ips))
            self._count("release", self.provider.subnet_of(iface))
            released.extend(sorted(ips))
        for ip in released:
            self._first_seen[name].pop(ip, None)
        if released:
            self.provider.refresh_instance(spec.instance_id)
            log.info("released excess cloud IPs", extra={"node": name, "ips": released})
        return released, (step.mark, released, unmark)

    # -- CiliumNode -----------------------------------------------------------------------------

    def _write(
        self,
        name: str,
        *,
        spec: NodeSpec | None = None,
        interfaces: list[Interface] | None = None,
        error: str = "",
        release_ops: ReleaseOps | None = None,
    ) -> None:
        pool = (
            {ip: {"resource": i} for ip, i in sorted(pool_of(interfaces, spec).items())}
            if spec is not None and interfaces is not None
            else None
        )
        section = (
            self.provider.status_of(spec, interfaces)
            if spec is not None and interfaces is not None
            else None
        )
        key = self.provider.spec_key

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            if pool is not None:
                body.setdefault("spec", {}).setdefault("ipam", {})["pool"] = pool
            status = body.setdefault("status", {})
            if section is not None:
                status.setdefault(key, {}).update(section)
            ipam = status.setdefault("ipam", {})
            ipam["operator-status"] = {"error": error} if error else {}
            if release_ops is not None:
                # Applied to the current map: the agent may have answered meanwhile.
                marks, released, unmarks = release_ops
                current = dict(ipam.get("release-ips") or {})
                for ip in marks:
                    current.setdefault(ip, ReleaseState.MARKED)
                for ip in released:
                    current[ip] = ReleaseState.RELEASED
                for ip in unmarks:
                    if current.get(ip) in (ReleaseState.MARKED, ReleaseState.DO_NOT_RELEASE):
                        current.pop(ip)
                if current:
                    ipam["release-ips"] = current
                else:
                    ipam.pop("release-ips", None)
            return body

        self.client.mutate("CiliumNode", name, fn=update)

    # -- metrics --------------------------------------------------------------------------------

    def free_interface_slots(self) -> int:
        """Interface slots still free on the nodes' instances (by their limits)."""
        free = 0
        for spec in list(self.specs.values()):
            limits = self.provider.limits_of(spec)
            if limits is not None:
                free += max(limits.adapters - len(self.provider.interfaces_of(spec)), 0)
        return free

    def collector(self) -> Collector:
        return CloudIPAMCollector(self)


class CloudIPAMCollector(Collector):
    """Upstream's metric names: ``cilium_operator_<api>_api_duration_seconds`` and
    ``cilium_operator_<api>_api_rate_limit_duration_seconds`` (histograms with a single +Inf
    bucket: only counts and sums are kept), ``cilium_operator_ipam_{allocation,release,
    interface_creation}_ops`` per ``subnet_id`` (counters: the Python client adds ``_total``),
    ``cilium_operator_ipam_available_interfaces`` (free interface slots over all nodes)."""

    def __init__(self, ctl: CloudIPAMController) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        m = self.ctl.provider.metrics
        duration = HistogramMetricFamily(
            f"cilium_operator_{m.api}_api_duration_seconds",
            f"Duration of interactions with the {m.api} API",
            labels=["operation", "response_code"],
        )
        for (op, code), n in sorted(m.calls.items()):
            duration.add_metric([op, code], [("+Inf", float(n))], m.seconds.get((op, code), 0.0))
        yield duration
        limited = HistogramMetricFamily(
            f"cilium_operator_{m.api}_api_rate_limit_duration_seconds",
            "Duration of client-side rate limiter blocking",
            labels=["operation"],
        )
        for op, n in sorted(m.rate_limit_waits.items()):
            limited.add_metric([op], [("+Inf", float(n))], m.rate_limit_seconds.get(op, 0.0))
        yield limited
        for kind, help_text in (
            ("allocation", "Number of IP allocation operations"),
            ("release", "Number of IP release operations"),
            ("interface_creation", "Number of interfaces created"),
        ):
            family = CounterMetricFamily(
                f"cilium_operator_ipam_{kind}_ops", help_text, labels=["subnet_id"]
            )
            for (k, subnet), n in sorted(self.ctl.ops.items()):
                if k == kind:
                    family.add_metric([subnet], n)
            yield family
        yield GaugeMetricFamily(
            "cilium_operator_ipam_available_interfaces",
            "Number of interface slots still free on the nodes' instances",
            value=self.ctl.free_interface_slots(),
        )
