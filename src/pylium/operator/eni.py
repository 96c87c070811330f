"""L5: the ENI allocator (``ipam: eni``): pod IPs for CiliumNodes out of AWS ENIs.

The only component that talks to EC2. It keeps a cache of the account's network interfaces,
subnets, VPCs and security groups (DescribeNetworkInterfaces/Subnets/Vpcs/SecurityGroups),
refreshed every ``resync`` seconds (a minute, as upstream) and, for the instance concerned,
after each allocation. For every CiliumNode carrying ``spec.eni`` it plans with
:mod:`pylium.core.ipam.eni.plan` (watermarks from ``spec.ipam``, the instance type's limits),
executes the plan (AssignPrivateIpAddresses on existing ENIs; CreateNetworkInterface +
AttachNetworkInterface + ModifyNetworkInterfaceAttribute for new ones, tagged with
``eni-tags`` and the GC tags), and writes ``spec.ipam.pool`` (IP -> ENI id as its
``resource``), ``status.eni.enis`` and ``status.ipam.operator-status.error``.

Nothing is remembered between passes but the release grace periods: the pool is always what
EC2 says is attached, so a restarted operator resumes from EC2's state and never allocates
twice. With ``aws-release-excess-ips`` excess IPs go back through upstream's handshake in
``status.ipam.release-ips``. Unattached ENIs carrying every ``eni-gc-tags`` tag (default
``io.cilium/cilium-managed=true``, ``io.cilium/cluster-name=<cluster-name>``) are deleted when
two GC passes, ``eni-gc-interval`` apart, find them unattached. :meth:`ENIController.collector`
serves upstream's ``cilium_operator_ec2_api_*`` and ``cilium_operator_ipam_*_ops`` metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pylium.adapters.ec2 import EC2API, EC2Error, Interface
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.base.errors import PyliumError
from pylium.core.ipam.eni.limits import STATIC_LIMITS, Limits
from pylium.core.ipam.eni.plan import (
    ENI,
    AllocationPlan,
    ENISpec,
    ReleaseState,
    SecurityGroup,
    Subnet,
    Tags,
    Watermarks,
    matches_all,
    plan_allocation,
    plan_release,
    pool_of,
    release_step,
    security_groups_for,
)
from pylium.model.config import OperatorSettings

log = logging.getLogger(__name__)

RESYNC_SECONDS = 60.0
"""Upstream refreshes its EC2 cache every minute."""
LIMITS_REFRESH_SECONDS = 60.0
"""DescribeInstanceTypes for an unknown type at most once a minute (upstream's trigger)."""
MANAGED_TAG = ("io.cilium/cilium-managed", "true")
CLUSTER_TAG = "io.cilium/cluster-name"


def gc_tags(settings: OperatorSettings) -> Tags:
    """``eni-gc-tags``, or upstream's default: managed by Cilium, in this cluster."""
    if settings.eni_gc_tags:
        return tuple(sorted(settings.eni_gc_tags))
    return tuple(sorted([MANAGED_TAG, (CLUSTER_TAG, settings.cluster_name)]))


@dataclass(slots=True)
class NodeReport:
    """What one pass did for a node (for logs, tests and the status)."""

    node: str
    plan: AllocationPlan | None = None
    allocated: int = 0
    released: list[str] = field(default_factory=list)
    error: str = ""


class ENIController:
    """Reconciles every ENI CiliumNode against EC2; call :meth:`reconcile` from the
    operator's loop (it does EC2 calls only when something needs doing or the cache is
    stale)."""

    def __init__(
        self,
        store: Store,
        api: EC2API,
        settings: OperatorSettings,
        *,
        resync: float = RESYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = ResourceClient(store)
        self.api = api
        self.settings = settings
        self.resync = resync
        self.clock = clock
        self.gc_tags = gc_tags(settings)
        self.create_tags: Tags = tuple(sorted(set(settings.eni_tags) | set(self.gc_tags)))
        self.limits: dict[str, Limits] = dict(STATIC_LIMITS)
        self._limits_asked: dict[str, float] = {}
        self.interfaces: list[Interface] = []
        self.subnets: list[Subnet] = []
        self.vpcs: dict[str, list[str]] = {}
        self.groups: list[SecurityGroup] = []
        self._refreshed = float("-inf")
        self._gc_last = clock()
        self._gc_suspects: set[str] = set()
        self._first_seen: dict[str, dict[str, float]] = {}
        self._looked_up: dict[str, float] = {}
        self.reports: dict[str, NodeReport] = {}
        self.specs: dict[str, ENISpec] = {}
        """The last ENI spec seen per node (for the metrics)."""
        self.ops: dict[tuple[str, str], int] = {}
        """(allocation | release | interface_creation, subnet id) -> operations done."""

    # -- the cache ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read every interface, subnet, VPC and security group."""
        self.interfaces = self.api.interfaces()
        self.subnets = self.api.subnets()
        self.vpcs = self.api.vpcs()
        self.groups = self.api.security_groups()
        self._refreshed = self.clock()

    def _refresh_instance(self, instance_id: str) -> None:
        """After an allocation: that instance's interfaces and the subnets' free counts."""
        fresh = self.api.interfaces([{"Name": "attachment.instance-id", "Values": [instance_id]}])
        self.interfaces = [i for i in self.interfaces if i.instance_id != instance_id] + fresh
        self.subnets = self.api.subnets()

    def _limits_of(self, instance_type: str) -> Limits | None:
        found = self.limits.get(instance_type)
        if found is not None:
            return found
        last = self._limits_asked.get(instance_type, float("-inf"))
        if self.clock() - last >= LIMITS_REFRESH_SECONDS:
            self._limits_asked[instance_type] = self.clock()
            try:
                self.limits.update(self.api.instance_type_limits([instance_type]))
            except EC2Error as err:
                log.warning("DescribeInstanceTypes failed: %s", err)
        return self.limits.get(instance_type)

    def enis_of(self, instance_id: str) -> list[ENI]:
        return sorted(
            (i.eni for i in self.interfaces if i.instance_id == instance_id and instance_id),
            key=lambda e: e.number,
        )

    # -- one pass -----------------------------------------------------------------------------

    def reconcile(self) -> dict[str, NodeReport]:
        if self.clock() - self._refreshed >= self.resync:
            self.refresh()
        nodes, _ = self.client.list("CiliumNode")
        self.specs = {}
        reports = {}
        for node in nodes:
            body = dict(node.body)
            if not (body.get("spec") or {}).get("eni"):
                continue
            try:
                reports[node.name] = self._reconcile_node(node.name, body)
            except PyliumError as err:
                log.warning("ENI allocation failed", extra={"node": node.name, "error": str(err)})
                reports[node.name] = NodeReport(node.name, error=str(err))
                self._write(node.name, error=str(err))
        self._maybe_gc()
        self.reports = reports
        return reports

    def _reconcile_node(self, name: str, body: dict[str, Any]) -> NodeReport:
        spec_raw = body.get("spec") or {}
        spec = ENISpec.from_cilium_node(spec_raw)
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
        limits = self._limits_of(spec.instance_type)
        enis = self.enis_of(spec.instance_id)
        last_look = self._looked_up.get(spec.instance_id, float("-inf"))
        if not enis and self.clock() - last_look >= self.resync:
            # A new instance since the last refresh, or a wrong instance-id: one look per
            # resync period, not one per pass.
            self._looked_up[spec.instance_id] = self.clock()
            self._refresh_instance(spec.instance_id)
            enis = self.enis_of(spec.instance_id)
        if not enis:
            report.error = (
                f"instance {spec.instance_id} not found in EC2 (no network interface is "
                "attached to it): check spec.instance-id"
            )
            self._write(name, error=report.error)
            return report
        pool = pool_of(enis, spec)
        used = len(used_all & set(pool))
        plan = plan_allocation(
            spec=spec,
            watermarks=watermarks,
            limits=limits,
            enis=enis,
            used=used,
            subnets=self.subnets,
            security_groups=security_groups_for(spec, self.groups, enis),
            subnet_ids_filter=self.settings.subnet_ids_filter,
            subnet_tags_filter=tuple(sorted(self.settings.subnet_tags_filter)),
        )
        report.plan = plan
        errors = [plan.error] if plan.error else []
        if plan.total:
            try:
                report.allocated = self._execute(spec, plan)
            except EC2Error as err:
                errors.append(str(err))
            self._refresh_instance(spec.instance_id)
            enis = self.enis_of(spec.instance_id)
            log.info(
                "allocated ENI IPs",
                extra={"node": name, "ips": report.allocated, "needed": plan.needed},
            )
        release_ips = dict(status_ipam.get("release-ips") or {})
        ops: tuple[list[str], list[str], list[str]] | None = None
        if self.settings.aws_release_excess_ips and not plan.total:
            report.released, ops = self._release(
                name, spec, watermarks, enis, used_all, release_ips
            )
            if report.released:
                enis = self.enis_of(spec.instance_id)
        report.error = "; ".join(errors)
        self._write(name, spec=spec, enis=enis, error=report.error, release_ops=ops)
        return report

    def _count(self, kind: str, subnet: str) -> None:
        self.ops[(kind, subnet)] = self.ops.get((kind, subnet), 0) + 1

    def _subnet_of(self, eni_id: str) -> str:
        return next((i.eni.subnet_id for i in self.interfaces if i.eni.id == eni_id), "")

    def _execute(self, spec: ENISpec, plan: AllocationPlan) -> int:
        done = 0
        for a in plan.assign:
            self.api.assign(a.eni_id, a.count)
            self._count("allocation", self._subnet_of(a.eni_id))
            done += a.count
        for c in plan.create:
            eni_id = self.api.create_interface(
                subnet_id=c.subnet_id,
                count=c.count,
                groups=c.security_groups,
                description=f"Cilium-CNI ({spec.instance_id})",
                tags=self.create_tags,
            )
            try:
                self.api.attach(
                    eni_id,
                    spec.instance_id,
                    c.index,
                    delete_on_termination=spec.delete_on_termination,
                )
            except EC2Error:
                # Not attached: delete it now rather than leave it to the GC.
                try:
                    self.api.delete_interface(eni_id)
                except EC2Error as err:
                    log.warning("could not delete unattached ENI %s: %s", eni_id, err)
                raise
            self._count("interface_creation", c.subnet_id)
            self._count("allocation", c.subnet_id)
            done += c.count
        return done

    def _release(
        self,
        name: str,
        spec: ENISpec,
        watermarks: Watermarks,
        enis: list[ENI],
        used: set[str],
        release_ips: dict[str, str],
    ) -> tuple[list[str], tuple[list[str], list[str], list[str]]]:
        """One step of the release handshake; returns the IPs unassigned and the changes to
        ``status.ipam.release-ips`` (IPs to mark, released, to unmark)."""
        handshaking = {ip for ip, st in release_ips.items() if st != ReleaseState.RELEASED}
        _, candidates = plan_release(
            spec=spec, watermarks=watermarks, enis=enis, used=used | handshaking
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
        owner = pool_of(enis, spec)
        by_eni: dict[str, list[str]] = {}
        unmark = list(step.unmark)
        for ip in step.release:
            if ip in used:  # the agent said ready but uses it now: keep it
                unmark.append(ip)
            elif ip in owner:
                by_eni.setdefault(owner[ip], []).append(ip)
        released: list[str] = []
        for eni, ips in sorted(by_eni.items()):
            self.api.unassign(eni, sorted(ips))
            self._count("release", self._subnet_of(eni))
            released.extend(sorted(ips))
        for ip in released:
            self._first_seen[name].pop(ip, None)
        if released:
            self._refresh_instance(spec.instance_id)
            log.info("released excess ENI IPs", extra={"node": name, "ips": released})
        return released, (step.mark, released, unmark)

    # -- CiliumNode -----------------------------------------------------------------------------

    def _enis_status(self, spec: ENISpec, enis: list[ENI]) -> dict[str, Any]:
        subnets = {s.id: s for s in self.subnets}
        out: dict[str, Any] = {}
        for e in enis:
            subnet = subnets.get(e.subnet_id)
            iface = next((i for i in self.interfaces if i.eni.id == e.id), None)
            vpc_id = iface.vpc_id if iface else spec.vpc_id
            cidrs = self.vpcs.get(vpc_id, [])
            out[e.id] = {
                "id": e.id,
                "ip": e.primary_ip,
                "mac": e.mac,
                "number": e.number,
                "availability-zone": iface.availability_zone if iface else "",
                "subnet": {"id": e.subnet_id, "cidr": subnet.cidr if subnet else ""},
                "vpc": {"id": vpc_id, "primary-cidr": cidrs[0] if cidrs else "", "cidrs": cidrs},
                "addresses": list(e.addresses),
                "security-groups": list(e.security_groups),
                "tags": dict(e.tags),
            }
        return out

    def _write(
        self,
        name: str,
        *,
        spec: ENISpec | None = None,
        enis: list[ENI] | None = None,
        error: str = "",
        release_ops: tuple[list[str], list[str], list[str]] | None = None,
    ) -> None:
        pool = (
            {ip: {"resource": eni} for ip, eni in sorted(pool_of(enis, spec).items())}
            if spec is not None and enis is not None
            else None
        )
        enis_status = self._enis_status(spec, enis) if spec and enis is not None else None

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            if pool is not None:
                body.setdefault("spec", {}).setdefault("ipam", {})["pool"] = pool
            status = body.setdefault("status", {})
            if enis_status is not None:
                status.setdefault("eni", {})["enis"] = enis_status
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

    # -- garbage collection ---------------------------------------------------------------------

    def _maybe_gc(self) -> None:
        interval = self.settings.eni_gc_interval.total_seconds()
        if interval <= 0 or self.clock() - self._gc_last < interval:
            return
        self._gc_last = self.clock()
        self.gc()

    def gc(self) -> list[str]:
        """Delete unattached ENIs carrying every GC tag that the previous pass also found
        unattached (an ENI between create and attach is never taken). Returns the deleted."""
        available = self.api.interfaces(
            [{"Name": "status", "Values": ["available"]}]
            + [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.gc_tags]
        )
        now = {i.eni.id for i in available if matches_all(i.eni.tags, self.gc_tags)}
        doomed = sorted(now & self._gc_suspects)
        deleted = []
        for eni_id in doomed:
            try:
                self.api.delete_interface(eni_id)
                deleted.append(eni_id)
            except EC2Error as err:
                log.warning("ENI GC: %s", err)
        if deleted:
            log.info("garbage-collected unattached ENIs", extra={"enis": deleted})
            self.interfaces = [i for i in self.interfaces if i.eni.id not in deleted]
        self._gc_suspects = now - set(deleted)
        return deleted

    # -- metrics --------------------------------------------------------------------------------

    def collector(self) -> Collector:
        return _ENICollector(self)


class _ENICollector(Collector):
    """Upstream's ENI metric names: ``cilium_operator_ec2_api_duration_seconds`` and
    ``cilium_operator_ec2_api_rate_limit_duration_seconds`` (histograms with a single +Inf
    bucket: only counts and sums are kept), ``cilium_operator_ipam_{allocation,release,
    interface_creation}_ops`` per ``subnet_id`` (counters: the Python client adds ``_total``),
    ``cilium_operator_ipam_available_interfaces`` (free interface slots over all nodes)."""

    def __init__(self, ctl: ENIController) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        m = self.ctl.api.metrics
        duration = HistogramMetricFamily(
            "cilium_operator_ec2_api_duration_seconds",
            "Duration of interactions with the EC2 API",
            labels=["operation", "response_code"],
        )
        for (op, code), n in sorted(m.calls.items()):
            duration.add_metric([op, code], [("+Inf", float(n))], m.seconds.get((op, code), 0.0))
        yield duration
        limited = HistogramMetricFamily(
            "cilium_operator_ec2_api_rate_limit_duration_seconds",
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
        free_slots = 0
        for spec in list(self.ctl.specs.values()):
            limits = self.ctl.limits.get(spec.instance_type)
            if limits is not None:
                free_slots += max(limits.adapters - len(self.ctl.enis_of(spec.instance_id)), 0)
        yield GaugeMetricFamily(
            "cilium_operator_ipam_available_interfaces",
            "Number of interface slots still free on the nodes' instances",
            value=free_slots,
        )
