/* NodePort NAT state and the reverse translation of its replies, shared by the programs that
 * meet those replies: bpf_host (cil_from_netdev: a remote backend's reply in native routing),
 * bpf_overlay (cil_from_overlay: one through the tunnel, to the router IP) and bpf_lxc
 * (cil_from_container: a local backend's reply). The forward half is lib/nodeport.h.
 *
 * pylium_snat_v4_external (cilium_snat_v4_external's shape: ipv4_ct_tuple -> ipv4_nat_entry)
 * holds, per NodePort connection from a client C:cp to a frontend FE:fp sent to backend B:bp:
 *
 *   (C:cp  -> B:bp, TUPLE_F_OUT)     -> (S, sp)    the SNAT of a remote backend's connection
 *   (B:bp  -> S:sp, TUPLE_F_IN)      -> (C, cp)    its reverse (un-SNAT)
 *   (B:bp  -> C:cp, TUPLE_F_SERVICE) -> (FE, fp)   the reverse DNAT of every such connection
 *
 * S is the node's NodePort address (native routing) or its router IP (tunnel). Upstream takes
 * the frontend of the reverse DNAT from the connection's conntrack entry (rev_nat_index) and
 * cilium_lb4_reverse_nat; here it is stored beside the SNAT entries, so that bpf_lxc and
 * bpf_overlay need none of the load-balancer maps, whose sizes are the services engine's.
 * The agent's conntrack GC deletes the entries of connections whose conntrack entries are gone
 * (src/pylium/core/conntrack.py nat_owners); LRU eviction remains the backstop.
 *
 * After the reverse translation the reply is sent straight out of the device the FIB names
 * (lib/fib.h: bpf_redirect, or bpf_redirect_neigh when the neighbour is not resolved yet, the
 * TTL decremented): its source is now one of this node's addresses, which the stack would
 * take for a martian on input.
 */
#ifndef PYLIUM_NAT_H
#define PYLIUM_NAT_H

#include "common.h"
#include "conntrack.h"
#include "events.h"
#include "fib.h"

#define TUPLE_F_SERVICE 4 /* upstream's flag for the frontend side of a service connection */

#define SNAT_MAP_MAX 65536

struct ipv4_nat_entry {
	__u64 created;	/* seconds, monotonic */
	__u32 needs_ct; /* upstream's; unused */
	__u32 pad1;
	__be32 to_addr; /* to_saddr (OUT) or to_daddr (IN, SERVICE) */
	__be16 to_port;
	__u16 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ipv4_nat_entry);
	__uint(max_entries, SNAT_MAP_MAX);
} pylium_snat_v4_external SEC(".maps");

#define NAT_IP_OFF ETH_HLEN
#define NAT_IP_CSUM_OFF (NAT_IP_OFF + 10)
#define NAT_IP_SADDR_OFF (NAT_IP_OFF + 12)
#define NAT_IP_DADDR_OFF (NAT_IP_OFF + 16)

#define NAT_SRC 0
#define NAT_DST 1

/* Rewrites the source or destination address and port of a TCP/UDP packet with the IPv4 and
 * L4 checksums: 0, or DROP_WRITE_ERROR. ``f`` is updated to match. */
static __always_inline int nat_rewrite(struct __sk_buff *skb, struct flow_info *f, int which,
				       __be32 addr, __be16 port)
{
	__u8 vihl;
	__u32 addr_off = which == NAT_SRC ? NAT_IP_SADDR_OFF : NAT_IP_DADDR_OFF;
	__be32 old_addr = which == NAT_SRC ? f->saddr : f->daddr;
	__be16 old_port = bpf_htons(which == NAT_SRC ? f->sport : f->dport);
	__u64 mangled = f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_skb_load_bytes(skb, NAT_IP_OFF, &vihl, 1) < 0)
		return DROP_WRITE_ERROR;
	__u32 l4_off = NAT_IP_OFF + (vihl & 0xf) * 4;
	__u32 csum_off = l4_off + (f->proto == IPPROTO_TCP ? 16 : 6);
	__u32 port_off = l4_off + (which == NAT_SRC ? 0 : 2);

	if (f->proto == IPPROTO_UDP) {
		__u16 csum;
		if (bpf_skb_load_bytes(skb, csum_off, &csum, 2) < 0)
			return DROP_WRITE_ERROR;
		if (!csum)
			mangled = 0; /* no checksum: leave it absent */
	}
	if (old_addr != addr) {
		if ((f->proto == IPPROTO_TCP || mangled) &&
		    bpf_l4_csum_replace(skb, csum_off, old_addr, addr,
					BPF_F_PSEUDO_HDR | mangled | 4) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_l3_csum_replace(skb, NAT_IP_CSUM_OFF, old_addr, addr, 4) < 0 ||
		    bpf_skb_store_bytes(skb, addr_off, &addr, 4, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (old_port != port) {
		if ((f->proto == IPPROTO_TCP || mangled) &&
		    bpf_l4_csum_replace(skb, csum_off, old_port, port, mangled | 2) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_skb_store_bytes(skb, port_off, &port, 2, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (which == NAT_SRC) {
		f->saddr = addr;
		f->sport = bpf_ntohs(port);
	} else {
		f->daddr = addr;
		f->dport = bpf_ntohs(port);
	}
	return 0;
}

static __always_inline void nat_tuple(const struct flow_info *f, __u8 flags,
				      struct ipv4_ct_tuple *t)
{
	ct_tuple4(f, flags, t);
}

static __always_inline struct ipv4_nat_entry *nat_lookup(const struct flow_info *f, __u8 flags)
{
	struct ipv4_ct_tuple t;

	nat_tuple(f, flags, &t);
	return bpf_map_lookup_elem(&pylium_snat_v4_external, &t);
}

/* The reverse DNAT of a NodePort connection's reply (backend -> client becomes frontend ->
 * client): true when the packet was one, with ``*verdict`` set. */
static __always_inline bool nat_rev_dnat(struct __sk_buff *skb, struct flow_info *f, __u8 dir,
					 bool notify, int *verdict)
{
	struct ipv4_nat_entry *e;
	int ret;

	if (f->fragment || (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP))
		return false;
	e = nat_lookup(f, TUPLE_F_SERVICE);
	if (!e)
		return false;
	ret = nat_rewrite(skb, f, NAT_SRC, e->to_addr, e->to_port);
	*verdict = ret ? drop(skb, ret, dir, f) : fib_redirect4(skb, f, dir, CT_REPLY, notify);
	return true;
}

/* A remote backend's reply to the SNAT address: un-SNAT (to the client), then the reverse
 * DNAT (from the frontend), and out to the client. True when the packet was one. */
static __always_inline bool nat_rev_snat(struct __sk_buff *skb, struct flow_info *f, __u8 dir,
					 bool notify, int *verdict)
{
	struct ipv4_nat_entry *e;
	int ret;

	if (f->fragment || (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP))
		return false;
	e = nat_lookup(f, TUPLE_F_IN);
	if (!e)
		return false;
	ret = nat_rewrite(skb, f, NAT_DST, e->to_addr, e->to_port);
	if (ret) {
		*verdict = drop(skb, ret, dir, f);
		return true;
	}
	if (!nat_rev_dnat(skb, f, dir, notify, verdict))
		*verdict = fib_redirect4(skb, f, dir, CT_REPLY, notify);
	return true;
}

#endif
