"""L1: the openAPIV3 schema of every kind, declared once: validation and CRD export use it.

Shapes follow upstream's CRDs (``pkg/k8s/apis/cilium.io/client/crds``) and the Kubernetes API
for the built-in kinds, restricted to the fields pylium reads plus the ones users commonly
write; unknown fields are refused like ``kubectl --validate=strict``.
"""

from __future__ import annotations

from typing import Any

from pylium.model.policy.cilium import _ICMP_TYPES
from pylium.model.schema import explain_pattern

Schema = dict[str, Any]

# Cilium's PortProtocol.port pattern: 0-65535 or an IANA-style named port.
PORT_PATTERN = (
    r"^((6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
    r"|([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*)$"
)
MAX_PORTS = 40
"""Upstream's maxPorts: at most 40 ports per PortRule."""
MAX_ICMP_FIELDS = 40
"""Upstream's maxICMPFields."""
ICMP_TYPE_PATTERN = (
    r"^([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]|"
    + "|".join(sorted({name for names in _ICMP_TYPES.values() for name in names}))
    + ")$"
)
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _explain_port(value: str) -> str | None:
    if value.isdigit():
        return "must be in the range 0-65535"
    return None


explain_pattern(PORT_PATTERN, _explain_port)


def obj(
    props: dict[str, Schema] | None = None,
    *,
    required: tuple[str, ...] = (),
    additionalProperties: Schema | bool | None = None,
) -> Schema:
    """An object schema; with ``props``, fields not listed are refused."""
    out: Schema = {"type": "object"}
    if props is not None:
        out["properties"] = props
        out["additionalProperties"] = False
    if required:
        out["required"] = list(required)
    if additionalProperties is not None:
        out["additionalProperties"] = additionalProperties
    return out


def open_obj(props: dict[str, Schema], *, required: tuple[str, ...] = ()) -> Schema:
    """An object whose listed fields are checked and whose other fields are kept as they are
    (Kubernetes kinds where pylium reads only part of the shape)."""
    out = obj(props, required=required)
    out["additionalProperties"] = True
    out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def arr(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def integer(lo: int | None = None, hi: int | None = None) -> Schema:
    out: Schema = {"type": "integer"}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def boolean() -> Schema:
    return {"type": "boolean"}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def one_field_of(*names: str) -> list[Schema]:
    """anyOf/oneOf alternatives each requiring one of ``names`` (upstream's CRD idiom)."""
    return [{"properties": {name: {}}, "required": [name]} for name in names]


STRING_MAP = obj(additionalProperties=string())
FREE_OBJECT: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
INT_OR_STRING: Schema = {"x-kubernetes-int-or-string": True}

METADATA = obj(
    {
        "name": string(maxLength=253, pattern=DNS1123_SUBDOMAIN),
        "namespace": string(maxLength=63, pattern=DNS1123_LABEL),
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "uid": string(),
        "resourceVersion": string(),
        "generation": integer(0),
        "creationTimestamp": string(),
        "ownerReferences": arr(FREE_OBJECT),
        "finalizers": arr(string()),
    },
    required=("name",),
)

LABEL_SELECTOR = obj(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": arr(
            obj(
                {
                    "key": string(minLength=1),
                    "operator": enum("In", "NotIn", "Exists", "DoesNotExist"),
                    "values": arr(string()),
                },
                required=("key", "operator"),
            )
        ),
    }
)

# -- Cilium policy rules (pkg/policy/api) ----------------------------------------------------

# ICMP is matched with ``icmps``, never as a port protocol.
PROTOCOL = enum("TCP", "UDP", "SCTP", "VRRP", "IGMP", "ANY")
PORT_PROTOCOL = obj(
    {
        "port": string(
            pattern=PORT_PATTERN,
            description="must be a port number in the range 0-65535 or a port name (IANA "
            "service name: letters, digits and single dashes, at least one letter)",
        ),
        "endPort": integer(0, 65535),
        "protocol": PROTOCOL,
    }
)
HTTP_RULE = obj(
    {
        "path": string(),
        "method": string(),
        "host": string(),
        "headers": arr(string()),
        "headerMatches": arr(FREE_OBJECT),
    }
)
DNS_RULE = obj(
    {
        "matchName": string(maxLength=255, pattern=r"^([-a-zA-Z0-9_]+[.]?)+$"),
        "matchPattern": string(maxLength=255, pattern=r"^([-a-zA-Z0-9_*]+[.]?)+$"),
    }
)
DNS_RULE["oneOf"] = one_field_of("matchName", "matchPattern")
L7_RULES = obj({"http": arr(HTTP_RULE), "dns": arr(DNS_RULE)})
PORT_RULE = obj(
    {
        "ports": arr(PORT_PROTOCOL, maxItems=MAX_PORTS),
        "rules": L7_RULES,
        "serverNames": arr(string()),
        "terminatingTLS": FREE_OBJECT,
        "originatingTLS": FREE_OBJECT,
        "listener": FREE_OBJECT,
    }
)
PORT_RULE_DENY = obj({"ports": arr(PORT_PROTOCOL, maxItems=MAX_PORTS)})
ICMP_FIELD = obj(
    {
        "family": enum("IPv4", "IPv6"),
        "type": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": ICMP_TYPE_PATTERN,
            "description": "must be an ICMP type number (0-255) or its CamelCase name",
            "x-kubernetes-int-or-string": True,
        },
    },
    required=("type",),
)
ICMP_RULE = obj({"fields": arr(ICMP_FIELD, maxItems=MAX_ICMP_FIELDS)})
CIDR = string(format="cidr")
CIDR_RULE = obj(
    {
        "cidr": CIDR,
        "cidrGroupRef": string(maxLength=253, pattern=DNS1123_SUBDOMAIN),
        "cidrGroupSelector": LABEL_SELECTOR,
        "except": arr(CIDR),
    }
)
CIDR_RULE["oneOf"] = one_field_of("cidr", "cidrGroupRef", "cidrGroupSelector")
ENTITY = enum(
    "all",
    "world",
    "world-ipv4",
    "world-ipv6",
    "cluster",
    "host",
    "remote-node",
    "kube-apiserver",
    "ingress",
    "health",
    "init",
    "unmanaged",
    "none",
)
SERVICE_SELECTOR = obj(
    {
        "k8sService": obj({"serviceName": string(), "namespace": string()}),
        "k8sServiceSelector": obj(
            {"selector": LABEL_SELECTOR, "namespace": string()}, required=("selector",)
        ),
    }
)
FQDN_SELECTOR = DNS_RULE
AUTHENTICATION = obj({"mode": enum("disabled", "required", "test-always-fail")}, required=("mode",))


def _peers(direction: str) -> dict[str, Schema]:
    return {
        f"{direction}Endpoints": arr(LABEL_SELECTOR),
        f"{direction}CIDR": arr(CIDR),
        f"{direction}CIDRSet": arr(CIDR_RULE),
        f"{direction}Entities": arr(ENTITY),
        f"{direction}Nodes": arr(LABEL_SELECTOR),
        f"{direction}Groups": arr(FREE_OBJECT),
        f"{direction}Requires": arr(LABEL_SELECTOR, maxItems=0),
        "icmps": arr(ICMP_RULE),
        "authentication": AUTHENTICATION,
    }


INGRESS_RULE = obj({**_peers("from"), "toPorts": arr(PORT_RULE)})
INGRESS_DENY_RULE = obj({**_peers("from"), "toPorts": arr(PORT_RULE_DENY)})
EGRESS_RULE = obj(
    {
        **_peers("to"),
        "toPorts": arr(PORT_RULE),
        "toServices": arr(SERVICE_SELECTOR),
        "toFQDNs": arr(FQDN_SELECTOR),
    }
)
EGRESS_DENY_RULE = obj(
    {**_peers("to"), "toPorts": arr(PORT_RULE_DENY), "toServices": arr(SERVICE_SELECTOR)}
)
POLICY_RULE = obj(
    {
        "endpointSelector": LABEL_SELECTOR,
        "nodeSelector": LABEL_SELECTOR,
        "ingress": arr(INGRESS_RULE),
        "ingressDeny": arr(INGRESS_DENY_RULE),
        "egress": arr(EGRESS_RULE),
        "egressDeny": arr(EGRESS_DENY_RULE),
        "labels": arr(
            obj({"key": string(), "value": string(), "source": string()}, required=("key",))
        ),
        "enableDefaultDeny": obj({"ingress": boolean(), "egress": boolean()}),
        "description": string(),
        "log": obj({"value": string()}),
    }
)
POLICY_RULE["oneOf"] = one_field_of("endpointSelector", "nodeSelector")
POLICY_RULE["anyOf"] = one_field_of("ingress", "ingressDeny", "egress", "egressDeny")
POLICY_STATUS = FREE_OBJECT


def _policy(kind_props: dict[str, Schema] | None = None) -> Schema:
    return obj(
        {
            "apiVersion": string(),
            "kind": string(),
            "metadata": METADATA,
            "spec": POLICY_RULE,
            "specs": arr(POLICY_RULE),
            "status": POLICY_STATUS,
            **(kind_props or {}),
        }
    )


# -- CiliumNode, CiliumEndpoint, CiliumIdentity, CiliumPodIPPool -----------------------------

IP_OWNER = obj({"owner": string(), "resource": string()})
ALLOCATION_MAP = obj(additionalProperties=IP_OWNER)
CILIUM_NODE_SPEC = obj(
    {
        "instance-id": string(),
        "bootid": string(),
        "addresses": arr(
            obj({"type": string(), "ip": string(format="ip")}, required=("type", "ip"))
        ),
        "health": obj({"ipv4": string(), "ipv6": string()}),
        "ingress": obj({"ipv4": string(), "ipv6": string()}),
        "encryption": obj({"key": integer(0)}),
        "eni": FREE_OBJECT,
        "azure": FREE_OBJECT,
        "alibaba-cloud": FREE_OBJECT,
        "nodeidentity": integer(0),
        "ipam": obj(
            {
                "pool": ALLOCATION_MAP,
                "ipv6-pool": ALLOCATION_MAP,
                "podCIDRs": arr(CIDR),
                "pools": obj(
                    {
                        "requested": arr(
                            obj(
                                {
                                    "pool": string(),
                                    "needed": obj(
                                        {"ipv4-addrs": integer(0), "ipv6-addrs": integer(0)}
                                    ),
                                },
                                required=("pool",),
                            )
                        ),
                        "allocated": arr(
                            obj(
                                {
                                    "pool": string(),
                                    "cidrs": arr(CIDR),
                                    "allowFirstIP": boolean(),
                                    "allowLastIP": boolean(),
                                },
                                required=("pool",),
                            )
                        ),
                    }
                ),
                "min-allocate": integer(0),
                "max-allocate": integer(0),
                "pre-allocate": integer(0),
                "max-above-watermark": integer(0),
                "static-ip-tags": STRING_MAP,
            }
        ),
    }
)
CILIUM_NODE_STATUS = obj(
    {
        "eni": FREE_OBJECT,
        "azure": FREE_OBJECT,
        "alibaba-cloud": FREE_OBJECT,
        "ipam": obj(
            {
                "used": ALLOCATION_MAP,
                "ipv6-used": ALLOCATION_MAP,
                "pod-cidrs": obj(
                    additionalProperties=obj({"status": enum("released", "depleted", "in-use")})
                ),
                "operator-status": obj({"error": string()}),
                "release-ips": STRING_MAP,
                "release-ipv6s": STRING_MAP,
                "assigned-static-ip": string(),
            }
        ),
    }
)


def _ip_pool_family(width: int) -> Schema:
    return obj(
        {"cidrs": arr(CIDR, minItems=1), "maskSize": integer(1, width)},
        required=("cidrs", "maskSize"),
    )


IP_POOL_SPEC = obj(
    {
        "ipv4": _ip_pool_family(32),
        "ipv6": _ip_pool_family(128),
        "allowFirstIP": boolean(),
        "allowLastIP": boolean(),
        "podSelector": LABEL_SELECTOR,
        "namespaceSelector": LABEL_SELECTOR,
    }
)


def _envelope(spec: Schema | None = None, status: Schema | None = None, **more: Schema) -> Schema:
    props: dict[str, Schema] = {"apiVersion": string(), "kind": string(), "metadata": METADATA}
    if spec is not None:
        props["spec"] = spec
    if status is not None:
        props["status"] = status
    props.update(more)
    return obj(props)


# -- Kubernetes built-in kinds (the fields pylium reads) -------------------------------------

CONTAINER_PORT = obj(
    {
        "name": string(maxLength=15),
        "containerPort": integer(1, 65535),
        "hostPort": integer(1, 65535),
        "hostIP": string(),
        "protocol": enum("TCP", "UDP", "SCTP"),
    },
    required=("containerPort",),
)
CONTAINER = obj(
    {"name": string(pattern=DNS1123_LABEL), "image": string(), "ports": arr(CONTAINER_PORT)},
    required=("name",),
)
POD_SPEC = open_obj(
    {
        "nodeName": string(),
        "hostNetwork": boolean(),
        "containers": arr(CONTAINER, minItems=1),
        "initContainers": arr(CONTAINER),
        "serviceAccountName": string(),
    },
    required=("containers",),
)
POD_STATUS = open_obj(
    {
        "phase": string(),
        "podIP": string(format="ip"),
        "podIPs": arr(obj({"ip": string(format="ip")})),
        "hostIP": string(format="ip"),
    },
)
NODE_SPEC = open_obj(
    {
        "podCIDR": CIDR,
        "podCIDRs": arr(CIDR),
        "providerID": string(),
        "unschedulable": boolean(),
        "taints": arr(FREE_OBJECT),
    }
)
NODE_STATUS = obj(
    {
        "addresses": arr(
            obj({"type": string(), "address": string()}, required=("type", "address"))
        ),
    },
)
SERVICE_PORT = obj(
    {
        "name": string(),
        "protocol": enum("TCP", "UDP", "SCTP"),
        "port": integer(1, 65535),
        "targetPort": INT_OR_STRING,
        "nodePort": integer(0, 65535),
        "appProtocol": string(),
    },
    required=("port",),
)
SERVICE_SPEC = obj(
    {
        "type": enum("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"),
        "selector": STRING_MAP,
        "ports": arr(SERVICE_PORT),
        "clusterIP": string(),
        "clusterIPs": arr(string()),
        "externalIPs": arr(string(format="ip")),
        "loadBalancerIP": string(format="ip"),
        "loadBalancerSourceRanges": arr(CIDR),
        "externalTrafficPolicy": enum("Cluster", "Local"),
        "internalTrafficPolicy": enum("Cluster", "Local"),
        "sessionAffinity": enum("None", "ClientIP"),
        "sessionAffinityConfig": obj({"clientIP": obj({"timeoutSeconds": integer(1, 86400)})}),
        "healthCheckNodePort": integer(0, 65535),
        "allocateLoadBalancerNodePorts": boolean(),
        "externalName": string(),
        "ipFamilies": arr(enum("IPv4", "IPv6")),
        "ipFamilyPolicy": enum("SingleStack", "PreferDualStack", "RequireDualStack"),
        "publishNotReadyAddresses": boolean(),
    }
)
SERVICE_STATUS = obj(
    {
        "loadBalancer": obj(
            {"ingress": arr(obj({"ip": string(format="ip"), "hostname": string()}))}
        ),
    }
)
ENDPOINT = obj(
    {
        "addresses": arr(string(), minItems=1, maxItems=100),
        "conditions": obj({"ready": boolean(), "serving": boolean(), "terminating": boolean()}),
        "hostname": string(),
        "nodeName": string(),
        "zone": string(),
        "targetRef": FREE_OBJECT,
        "hints": FREE_OBJECT,
    },
    required=("addresses",),
)
ENDPOINT_PORT = obj(
    {
        "name": string(),
        "protocol": enum("TCP", "UDP", "SCTP"),
        "port": integer(1, 65535),
        "appProtocol": string(),
    }
)
NP_PEER = obj(
    {
        "podSelector": LABEL_SELECTOR,
        "namespaceSelector": LABEL_SELECTOR,
        "ipBlock": obj({"cidr": CIDR, "except": arr(CIDR)}, required=("cidr",)),
    }
)
NP_PORT = obj(
    {"protocol": enum("TCP", "UDP", "SCTP"), "port": INT_OR_STRING, "endPort": integer(1, 65535)}
)
NETWORK_POLICY_SPEC = obj(
    {
        "podSelector": LABEL_SELECTOR,
        "policyTypes": arr(enum("Ingress", "Egress")),
        "ingress": arr(obj({"from": arr(NP_PEER), "ports": arr(NP_PORT)})),
        "egress": arr(obj({"to": arr(NP_PEER), "ports": arr(NP_PORT)})),
    },
    required=("podSelector",),
)

SCHEMAS: dict[str, Schema] = {
    "Pod": _envelope(POD_SPEC, POD_STATUS),
    "Node": _envelope(NODE_SPEC, NODE_STATUS),
    "Namespace": _envelope(obj({"finalizers": arr(string())}), FREE_OBJECT),
    "Service": _envelope(SERVICE_SPEC, SERVICE_STATUS),
    "EndpointSlice": _envelope(
        None,
        None,
        addressType=enum("IPv4", "IPv6", "FQDN"),
        endpoints=arr(ENDPOINT, maxItems=1000),
        ports=arr(ENDPOINT_PORT, maxItems=100),
    ),
    "NetworkPolicy": _envelope(NETWORK_POLICY_SPEC, FREE_OBJECT),
    "CiliumNetworkPolicy": _policy(),
    "CiliumClusterwideNetworkPolicy": _policy(),
    "CiliumNode": _envelope(CILIUM_NODE_SPEC, CILIUM_NODE_STATUS),
    "CiliumEndpoint": _envelope(None, FREE_OBJECT),
    "CiliumIdentity": _envelope(None, None, **{"security-labels": STRING_MAP}),
    "CiliumPodIPPool": _envelope(IP_POOL_SPEC),
}
SCHEMAS["EndpointSlice"]["required"] = ["addressType", "endpoints"]
SCHEMAS["CiliumPodIPPool"]["required"] = ["spec"]
SCHEMAS["Service"]["required"] = ["spec"]
SCHEMAS["Pod"]["required"] = ["spec"]
