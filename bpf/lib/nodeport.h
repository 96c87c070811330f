/* The per-packet load balancer for clients outside the node (upstream's nodeport.h, IPv4,
 * loadBalancer.mode snat): at cil_from_netdev, a TCP or UDP packet to a NodePort frontend
 * on one of this node's addresses, a LoadBalancer IP or an ExternalIP, looked up in the
 * service maps of lib/lb.h with the external scope (a packet from outside is external
 * traffic: externalTrafficPolicy decides which backends the frontend has).
 *
 * - A frontend without backends (externalTrafficPolicy=Local and no backend on this node, or
 *   none at all) drops with DROP_NO_SERVICE (158, "Service backend not found"), as upstream.
 * - The backend: the one this connection already has (a conntrack entry for the client ->
 *   frontend tuple with TUPLE_F_SERVICE, holding backend ID and service ID, so every packet of
 *   a connection goes to the same backend); else the client's ClientIP-affinity backend; else
 *   the service's Maglev table entry for the hash of the 5-tuple; else a random slot 1..count.
 * - DNAT to the backend, and the reverse-DNAT entry of lib/nat.h for the replies.
 * - A backend on this node: the pod's ingress policy (the client's identity from the ipcache:
 *   world), a conntrack entry accepted into the pod (so that the pod's replies are replies),
 *   and delivery straight into its namespace; the client's address is kept.
 * - A backend elsewhere: SNAT to this node (the router IP when the backend is behind the
 *   tunnel, the NodePort address otherwise) on the client's port when free, else a random one
 *   in 32768-65535 (upstream's NodePort NAT range), then into the tunnel or out of the device
 *   the FIB names (native routing). Replies come back to that address and port (lib/nat.h).
 *
 * loadBalancer.mode dsr (hybrid: dsr for TCP, snat for UDP), native routing only (the agent
 * leaves snat on through the tunnel, upstream's constraint without Geneve): a remote backend
 * gets the packet DNATed but with the client's address, and the frontend travels in an IPv4
 * option (upstream's dispatch "opt": type 0x9a, length 8, port, address) on a TCP SYN and on
 * every UDP datagram. The backend's node (cil_from_netdev) records the reverse DNAT from that
 * option, and the backend's reply leaves its node from the frontend, straight to the client
 * (lib/nat.h at from-container): the backend sees the client, and replies skip this node.
 */
#ifndef PYLIUM_NODEPORT_H
#define PYLIUM_NODEPORT_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "deliver.h"
#include "encap.h"
#include "endpoints.h"
#include "events.h"
#include "ipcache.h"
#include "lb.h"
#include "nat.h"
#include "policy.h"

#define NODEPORT_CONTINUE -1 /* not NodePort traffic: the caller goes on */

#define NODEPORT_PORT_MIN_NAT 32768
#define NODEPORT_PORT_MAX_NAT 65535
#define SNAT_COLLISION_RETRIES 16
#define TCP_F_ACK 0x10

/* Set by the agent with kube-proxy replacement; the node's addresses to SNAT to. */
volatile const __u8 enable_nodeport = 0;
volatile const __be32 ipv4_nodeport = 0; /* the node's InternalIP */
volatile const __be32 ipv4_gateway = 0;	 /* the router IP (cilium_host) */

/* loadBalancer.mode as the routing mode allows it (the agent decides). */
#define NODEPORT_MODE_SNAT 0
#define NODEPORT_MODE_DSR 1
#define NODEPORT_MODE_HYBRID 2
volatile const __u8 nodeport_mode = NODEPORT_MODE_SNAT;

#define DSR_IPV4_OPT_TYPE 0x9a /* copied flag | option 26, upstream's */
#define DSR_IPV4_OPT_LEN 8

struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};

static __always_inline bool nodeport_dsr(__u8 proto)
{
	return nodeport_mode == NODEPORT_MODE_DSR ||
	       (nodeport_mode == NODEPORT_MODE_HYBRID && proto == IPPROTO_TCP);
}

#define SVC_FLAGS_FROM_OUTSIDE                                                        \
	(SVC_FLAG_NODEPORT | SVC_FLAG_EXTERNAL_IPS | SVC_FLAG_LOADBALANCER | SVC_FLAG_HOSTPORT)

static __always_inline __u32 nodeport_hash(const struct flow_info *f)
{
	__u32 h = f->saddr * 0x9E3779B1u;

	h ^= f->daddr + 0x7F4A7C15u + (h << 6) + (h >> 2);
	h ^= (((__u32)f->sport << 16) | f->dport) + 0x7F4A7C15u + (h << 6) + (h >> 2);
	h ^= f->proto + 0x7F4A7C15u + (h << 6) + (h >> 2);
	return h;
}

/* The backend for a new connection (``*backend_id`` set), or NULL. */
static __always_inline struct lb4_backend *nodeport_select(struct lb4_key *key,
							   const struct lb4_service *svc,
							   const struct flow_info *f,
							   __u32 *backend_id)
{
	bool affinity = lb4_svc_flags(svc) & SVC_FLAG_AFFINITY;
	struct lb4_affinity_key akey = {
		.client_id.client_ip = f->saddr,
		.rev_nat_id = svc->rev_nat_index,
	};
	struct lb4_backend *backend = NULL;

	if (affinity) {
		*backend_id = lb4_affinity_backend_id(&akey,
						      svc->backend_id & LB_AFFINITY_TIMEOUT_MASK);
		if (*backend_id)
			backend = bpf_map_lookup_elem(&pylium_lb4_backends_v3, backend_id);
	}
	if (!backend) {
		*backend_id = lb4_maglev_backend_id(svc->rev_nat_index, nodeport_hash(f));
		if (*backend_id) {
			backend = bpf_map_lookup_elem(&pylium_lb4_backends_v3, backend_id);
		} else {
			__u16 slot = (__u16)(bpf_get_prandom_u32() % svc->count) + 1;
			backend = lb4_slot_backend(key, slot, backend_id);
		}
		if (backend && affinity)
			lb4_affinity_update(&akey, *backend_id);
	}
	return backend;
}

/* The connection's service entry: its backend while that still exists, else a new choice
 * (recorded). NULL: no backend. */
static __always_inline struct lb4_backend *nodeport_backend(struct lb4_key *key,
							    const struct lb4_service *svc,
							    const struct flow_info *f, __u32 len)
{
	__u32 now = bpf_ktime_get_ns() / 1000000000ULL;
	struct ipv4_ct_tuple t;
	struct ct_entry *e;
	struct lb4_backend *backend;
	__u32 backend_id = 0;

	ct_tuple4(f, TUPLE_F_SERVICE, &t);
	e = ct_find4(&t, now);
	if (e && e->rev_nat_index == svc->rev_nat_index) {
		backend_id = (__u32)e->backend_id;
		backend = bpf_map_lookup_elem(&pylium_lb4_backends_v3, &backend_id);
		if (backend) {
			e->lifetime = now + ct_lifetime(f->proto, CT_F_SEEN_NON_SYN);
			return backend;
		}
	}
	backend = nodeport_select(key, svc, f, &backend_id);
	if (!backend)
		return NULL;
	struct ct_entry entry = {
		.backend_id = backend_id,
		.packets = 1,
		.bytes = len,
		.rev_nat_index = svc->rev_nat_index,
		.lifetime = now + ct_lifetime(f->proto, 0),
	};
	if (f->proto == IPPROTO_TCP)
		bpf_map_update_elem(&pylium_ct4_global, &t, &entry, BPF_ANY);
	else
		bpf_map_update_elem(&pylium_ct_any4_global, &t, &entry, BPF_ANY);
	return backend;
}

/* The SNAT address and port of the connection (``f`` already DNATed to the backend): the
 * ones it has, or new ones claimed in the map. 0, or a drop reason. */
static __always_inline int nodeport_snat_port(const struct flow_info *f, __be32 snat_addr,
					      __be16 *port)
{
	struct ipv4_ct_tuple out, in;
	struct ipv4_nat_entry *e;
	__u64 now = bpf_ktime_get_ns() / 1000000000ULL;

	ct_tuple4(f, TUPLE_F_OUT, &out);
	e = bpf_map_lookup_elem(&pylium_snat_v4_external, &out);
	if (e && e->to_addr == snat_addr) {
		*port = e->to_port;
		return 0;
	}
	struct ipv4_nat_entry rev = {
		.created = now,
		.to_addr = f->saddr,
		.to_port = bpf_htons(f->sport),
	};
	in.daddr = snat_addr;
	in.saddr = f->daddr;
	in.dport = bpf_htons(f->sport);
	in.sport = bpf_htons(f->dport);
	in.nexthdr = f->proto;
	in.flags = TUPLE_F_IN;
	for (int i = 0; i < SNAT_COLLISION_RETRIES; i++) {
		if (!bpf_map_update_elem(&pylium_snat_v4_external, &in, &rev, BPF_NOEXIST))
			break;
		if (i == SNAT_COLLISION_RETRIES - 1)
			return DROP_NAT_NO_MAPPING;
		in.dport = bpf_htons(NODEPORT_PORT_MIN_NAT +
				     bpf_get_prandom_u32() %
					     (NODEPORT_PORT_MAX_NAT - NODEPORT_PORT_MIN_NAT + 1));
	}
	struct ipv4_nat_entry fwd = {
		.created = now,
		.to_addr = snat_addr,
		.to_port = in.dport,
	};
	if (bpf_map_update_elem(&pylium_snat_v4_external, &out, &fwd, BPF_ANY) < 0)
		return DROP_NAT_NO_MAPPING;
	*port = in.dport;
	return 0;
}

/* Records the reverse DNAT (backend -> client becomes frontend -> client). */
static __always_inline void nodeport_rev_dnat_entry(const struct flow_info *f, __be32 fe_addr,
						    __be16 fe_port)
{
	struct ipv4_ct_tuple t = {
		.daddr = f->saddr,
		.saddr = f->daddr,
		.dport = bpf_htons(f->sport),
		.sport = bpf_htons(f->dport),
		.nexthdr = f->proto,
		.flags = TUPLE_F_SERVICE,
	};
	struct ipv4_nat_entry *e = bpf_map_lookup_elem(&pylium_snat_v4_external, &t);

	if (e && e->to_addr == fe_addr && e->to_port == fe_port)
		return;
	struct ipv4_nat_entry v = {
		.created = bpf_ktime_get_ns() / 1000000000ULL,
		.to_addr = fe_addr,
		.to_port = fe_port,
	};
	bpf_map_update_elem(&pylium_snat_v4_external, &t, &v, BPF_ANY);
}

/* Inserts the DSR option (the frontend) after the IPv4 header, which must have none: 0, or a
 * drop reason. The header checksum is recomputed; the L4 checksum does not cover it. */
static __always_inline int dsr_set_opt4(struct __sk_buff *skb, __be32 addr, __be16 port)
{
	struct {
		struct iphdr ip;
		struct dsr_opt_v4 opt;
	} hdr;

	if (bpf_skb_load_bytes(skb, NAT_IP_OFF, &hdr.ip, sizeof(hdr.ip)) < 0)
		return DROP_WRITE_ERROR;
	if (hdr.ip.ihl != 5)
		return 0; /* options already: sent without (the backend answers untranslated) */
	if (bpf_skb_adjust_room(skb, sizeof(hdr.opt), BPF_ADJ_ROOM_NET, 0) < 0)
		return DROP_WRITE_ERROR;
	hdr.ip.ihl = 7;
	hdr.ip.tot_len = bpf_htons(bpf_ntohs(hdr.ip.tot_len) + sizeof(hdr.opt));
	hdr.ip.check = 0;
	hdr.opt.type = DSR_IPV4_OPT_TYPE;
	hdr.opt.len = DSR_IPV4_OPT_LEN;
	hdr.opt.port = port;
	hdr.opt.addr = addr;
	__u32 sum = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)&hdr, sizeof(hdr), 0);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	hdr.ip.check = (__u16)~sum;
	if (bpf_skb_store_bytes(skb, NAT_IP_OFF, &hdr, sizeof(hdr), 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* At the backend's node: a packet for a local pod carrying the DSR option gets the reverse
 * DNAT of its connection recorded (the pod's replies leave from the frontend). */
static __always_inline void dsr_record4(struct __sk_buff *skb, const struct flow_info *f)
{
	struct dsr_opt_v4 opt;
	__u8 vihl;

	if (bpf_skb_load_bytes(skb, NAT_IP_OFF, &vihl, 1) < 0 || (vihl & 0xf) != 7)
		return;
	if (bpf_skb_load_bytes(skb, NAT_IP_OFF + sizeof(struct iphdr), &opt, sizeof(opt)) < 0 ||
	    opt.type != DSR_IPV4_OPT_TYPE || opt.len != DSR_IPV4_OPT_LEN)
		return;
	struct endpoint_info *ep = endpoint_lookup4(f->daddr);
	if (ep && ep->ifindex)
		nodeport_rev_dnat_entry(f, opt.addr, opt.port);
}

/* NodePort, LoadBalancer and ExternalIPs for a packet from outside: a verdict, or
 * NODEPORT_CONTINUE when the packet is no service traffic. */
static __always_inline int nodeport_lb4(struct __sk_buff *skb, struct flow_info *f)
{
	bool notify = monitor_aggregation == MONITOR_AGGREGATION_NONE;
	int verdict, ret;

	if (!enable_nodeport || f->fragment ||
	    (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP))
		return NODEPORT_CONTINUE;
	if (nat_rev_snat(skb, f, DIR_INGRESS, notify, &verdict))
		return verdict;
	if (nodeport_mode != NODEPORT_MODE_SNAT)
		dsr_record4(skb, f);

	struct lb4_key key = {
		.address = f->daddr,
		.dport = bpf_htons(f->dport),
		.proto = f->proto,
		.scope = LB_SCOPE_EXTERNAL,
	};
	struct lb4_service *svc = bpf_map_lookup_elem(&pylium_lb4_services_v2, &key);
	if (!svc || !(lb4_svc_flags(svc) & SVC_FLAGS_FROM_OUTSIDE))
		return NODEPORT_CONTINUE;
	struct remote_endpoint_info *src = ipcache_lookup4(f->saddr);
	f->src_identity = src ? src->sec_identity : IDENTITY_WORLD;
	if (!svc->count)
		return drop(skb, DROP_NO_SERVICE, DIR_INGRESS, f);
	struct lb4_backend *backend = nodeport_backend(&key, svc, f, skb->len);
	if (!backend)
		return drop(skb, DROP_NO_SERVICE, DIR_INGRESS, f);
	__be32 fe_addr = f->daddr;
	__be16 fe_port = bpf_htons(f->dport);
	__be32 be_addr = backend->address;
	__be16 be_port = backend->port;

	ret = nat_rewrite(skb, f, NAT_DST, be_addr, be_port);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, f);
	nodeport_rev_dnat_entry(f, fe_addr, fe_port);

	struct endpoint_info *ep = endpoint_lookup4(be_addr);
	if (ep && ep->ifindex)
		return ingress_deliver_local(skb, f, ep);

	struct remote_endpoint_info *info = ipcache_lookup4(be_addr);
	bool tunnel = info && info->tunnel_endpoint;
	if (!tunnel && nodeport_dsr(f->proto)) {
		/* The frontend rides with the connection's first packet (every UDP datagram). */
		if (f->proto == IPPROTO_UDP ||
		    (f->tcp_flags & (TCP_F_SYN | TCP_F_ACK)) == TCP_F_SYN) {
			ret = dsr_set_opt4(skb, fe_addr, fe_port);
			if (ret)
				return drop(skb, ret, DIR_INGRESS, f);
		}
		f->dst_identity = info ? info->sec_identity : IDENTITY_WORLD;
		return fib_redirect4(skb, f, DIR_INGRESS, CT_NEW, notify);
	}
	__be32 snat_addr = tunnel ? ipv4_gateway : ipv4_nodeport;
	__be16 snat_port;
	ret = nodeport_snat_port(f, snat_addr, &snat_port);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, f);
	ret = nat_rewrite(skb, f, NAT_SRC, snat_addr, snat_port);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, f);
	f->dst_identity = info ? info->sec_identity : IDENTITY_WORLD;
	if (tunnel) {
		/* The node sends it: HOST in the VNI (remote-node at the backend's node). */
		f->src_identity = IDENTITY_HOST;
		return encap_and_redirect(skb, info->tunnel_endpoint, f, DIR_INGRESS, CT_NEW,
					  notify);
	}
	return fib_redirect4(skb, f, DIR_INGRESS, CT_NEW, notify);
}

#endif
