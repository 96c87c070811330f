"""L1: the kinds pylium knows: group, version, names (plural, short names) and scope.

Short names are upstream's (``cnp``/``ciliumnp``, ``ccnp``, ``cn``/``ciliumn``,
``cep``/``ciliumep``, ``ciliumid``, ``cpip``) and kubectl's for the built-in kinds.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pylium.base.errors import Location, ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class KindInfo:
    kind: str
    group: str
    """API group; "" for the core group (v1)."""
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    namespaced: bool
    crd: bool = False
    """True for Cilium's custom resources (exported as CustomResourceDefinitions)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="Pod",
        group="",
        version="v1",
        plural="pods",
        singular="pod",
        short_names=("po",),
        namespaced=True,
    ),
    KindInfo(
        kind="Node",
        group="",
        version="v1",
        plural="nodes",
        singular="node",
        short_names=("no",),
        namespaced=False,
    ),
    KindInfo(
        kind="Namespace",
        group="",
        version="v1",
        plural="namespaces",
        singular="namespace",
        short_names=("ns",),
        namespaced=False,
    ),
    KindInfo(
        kind="Service",
        group="",
        version="v1",
        plural="services",
        singular="service",
        short_names=("svc",),
        namespaced=True,
    ),
    KindInfo(
        kind="EndpointSlice",
        group="discovery.k8s.io",
        version="v1",
        plural="endpointslices",
        singular="endpointslice",
        namespaced=True,
    ),
    KindInfo(
        kind="NetworkPolicy",
        group="networking.k8s.io",
        version="v1",
        plural="networkpolicies",
        singular="networkpolicy",
        short_names=("netpol",),
        namespaced=True,
    ),
    KindInfo(
        kind="CiliumNetworkPolicy",
        group="cilium.io",
        version="v2",
        plural="ciliumnetworkpolicies",
        singular="ciliumnetworkpolicy",
        short_names=("cnp", "ciliumnp"),
        namespaced=True,
        crd=True,
    ),
    KindInfo(
        kind="CiliumClusterwideNetworkPolicy",
        group="cilium.io",
        version="v2",
        plural="ciliumclusterwidenetworkpolicies",
        singular="ciliumclusterwidenetworkpolicy",
        short_names=("ccnp",),
        namespaced=False,
        crd=True,
    ),
    KindInfo(
        kind="CiliumNode",
        group="cilium.io",
        version="v2",
        plural="ciliumnodes",
        singular="ciliumnode",
        short_names=("cn", "ciliumn"),
        namespaced=False,
        crd=True,
    ),
    KindInfo(
        kind="CiliumEndpoint",
        group="cilium.io",
        version="v2",
        plural="ciliumendpoints",
        singular="ciliumendpoint",
        short_names=("cep", "ciliumep"),
        namespaced=True,
        crd=True,
    ),
    KindInfo(
        kind="CiliumIdentity",
        group="cilium.io",
        version="v2",
        plural="ciliumidentities",
        singular="ciliumidentity",
        short_names=("ciliumid",),
        namespaced=False,
        crd=True,
    ),
    KindInfo(
        kind="CiliumPodIPPool",
        group="cilium.io",
        version="v2alpha1",
        plural="ciliumpodippools",
        singular="ciliumpodippool",
        short_names=("cpip",),
        namespaced=False,
        crd=True,
    ),
)

_BY_NAME: dict[str, KindInfo] = {}
for _info in KINDS:
    for _name in (_info.kind, _info.plural, _info.singular, *_info.short_names):
        _BY_NAME[_name.lower()] = _info
        _BY_NAME[f"{_name.lower()}.{_info.group}"] = _info


def suggest(text: str) -> str | None:
    """The known name (kind, plural, singular or short name) closest to ``text``, if any is
    close; a capitalised ``text`` gets a kind name back (``CiliumNetworkPolcy`` ->
    ``CiliumNetworkPolicy``)."""
    if text[:1].isupper():
        kinds = {info.kind.lower(): info.kind for info in KINDS}
        close = difflib.get_close_matches(text.lower(), list(kinds), n=1, cutoff=0.6)
        if close:
            return kinds[close[0]]
    close = difflib.get_close_matches(text.lower(), list(_BY_NAME), n=1, cutoff=0.6)
    return close[0] if close else None


def lookup_kind(text: str) -> KindInfo:
    """The kind named by a kind, plural, singular or short name (optionally ``.group``),
    case-insensitively; a ValidationError naming the closest known name otherwise."""
    info = _BY_NAME.get(text.lower())
    if info is not None:
        return info
    guess = suggest(text)
    hint = f' (did you mean "{guess}"?)' if guess else ""
    raise ValidationError([(Location(), f'unknown kind "{text}"{hint}')])


def by_kind(kind: str) -> KindInfo | None:
    """The kind with exactly this ``kind`` name, or None."""
    for info in KINDS:
        if info.kind == kind:
            return info
    return None
