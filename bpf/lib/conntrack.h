/* A first IPv4 connection tracker (Cilium's cilium_ct4_global / cilium_ct_any4_global shapes).
 *
 * One entry per connection, keyed by the tuple of the packet that opened it, flagged with the
 * side it was seen on (TUPLE_F_OUT at from-container, TUPLE_F_IN at from-overlay and
 * to-container). A packet matching the tuple is CT_ESTABLISHED (tx side), one matching the
 * reversed tuple is CT_REPLY (rx side), anything else CT_NEW; the caller creates the entry
 * of a new connection after policy let it through. TCP flags seen per side decide the lifetime (SYN only,
 * established, closing). Expired entries count as absent; the agent's conntrack GC deletes them
 * (src/pylium/agent/ctgc.py), and the LRU maps evict the oldest when full. Non-first IPv4
 * fragments are not tracked. */
#ifndef PYLIUM_CONNTRACK_H
#define PYLIUM_CONNTRACK_H

#include "common.h"
#include "config.h"

#define TUPLE_F_OUT 0
#define TUPLE_F_IN 1

#define CT_NEW 0
#define CT_ESTABLISHED 1
#define CT_REPLY 2
#define CT_RELATED 3 /* an ICMP error about a tracked connection */

/* ct_entry.flags: the bit positions of Cilium's ct_entry bitfield. */
#define CT_F_RX_CLOSING (1 << 0)
#define CT_F_TX_CLOSING (1 << 1)
#define CT_F_SEEN_NON_SYN (1 << 4)

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04

struct ipv4_ct_tuple {
	__u32 daddr; /* network byte order, like the ports */
	__u32 saddr;
	__u16 dport;
	__u16 sport;
	__u8 nexthdr;
	__u8 flags; /* TUPLE_F_* */
} __attribute__((packed));

struct ct_entry {
	__u64 reserved0;
	__u64 backend_id;
	__u64 packets;
	__u64 bytes;
	__u32 lifetime; /* seconds on the monotonic clock after which the entry is dead */
	__u16 flags;	/* CT_F_* */
	__u16 rev_nat_index;
	__u16 ifindex;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};

/* Smaller than Cilium's defaults (524288 / 262144): LRU maps are preallocated, and the lab
 * loads one set per node. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
} pylium_ct4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, 32768);
} pylium_ct_any4_global SEC(".maps");

static __always_inline struct ct_entry *ct_find4(const struct ipv4_ct_tuple *t, __u32 now)
{
	struct ct_entry *e;

	if (t->nexthdr == IPPROTO_TCP)
		e = bpf_map_lookup_elem(&pylium_ct4_global, t);
	else
		e = bpf_map_lookup_elem(&pylium_ct_any4_global, t);
	return e && e->lifetime >= now ? e : NULL;
}

static __always_inline __u32 ct_lifetime(__u8 proto, __u16 flags)
{
	if (proto != IPPROTO_TCP)
		return ct_timeout_regular_any;
	if (flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING))
		return ct_timeout_regular_tcp_fin;
	if (!(flags & CT_F_SEEN_NON_SYN))
		return ct_timeout_regular_tcp_syn;
	return ct_timeout_regular_tcp;
}

/* Folds the packet's TCP flags into the entry; returns whether they are new for that side. */
static __always_inline bool ct_track_tcp(struct ct_entry *e, __u8 tcp_flags, bool reply)
{
	__u8 seen = reply ? e->rx_flags_seen : e->tx_flags_seen;

	if (reply)
		e->rx_flags_seen |= tcp_flags;
	else
		e->tx_flags_seen |= tcp_flags;
	if (tcp_flags & TCP_F_RST)
		e->flags |= CT_F_RX_CLOSING | CT_F_TX_CLOSING;
	else if (tcp_flags & TCP_F_FIN)
		e->flags |= reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
	if (!(tcp_flags & TCP_F_SYN))
		e->flags |= CT_F_SEEN_NON_SYN;
	return (tcp_flags & ~seen) != 0;
}

/* Which side of a pod the lookup runs on: CT_EGRESS at from-container (the pod sends),
 * CT_INGRESS where a packet enters a pod from elsewhere (from-overlay, to-container). */
#define CT_EGRESS 0
#define CT_INGRESS 1

static __always_inline void ct_tuple4(const struct flow_info *f, __u8 tuple_flags,
				      struct ipv4_ct_tuple *t)
{
	t->daddr = f->daddr;
	t->saddr = f->saddr;
	t->dport = bpf_htons(f->dport);
	t->sport = bpf_htons(f->sport);
	t->nexthdr = f->proto;
	t->flags = tuple_flags;
}

static __always_inline void ct_reverse4(const struct ipv4_ct_tuple *t, __u8 tuple_flags,
					struct ipv4_ct_tuple *r)
{
	r->daddr = t->saddr;
	r->saddr = t->daddr;
	r->dport = t->sport;
	r->sport = t->dport;
	r->nexthdr = t->nexthdr;
	r->flags = tuple_flags;
}

/* An ICMP error quoting a packet of a tracked connection, in either direction and whichever
 * side recorded it, is CT_RELATED (passes like a reply: path MTU discovery and "port
 * unreachable" keep working under policy); otherwise it is a new ICMP flow of its own. */
static __always_inline int ct_related4(const struct flow_info *f, __u32 now)
{
	struct ipv4_ct_tuple t = {
		.daddr = f->inner_daddr,
		.saddr = f->inner_saddr,
		.dport = bpf_htons(f->inner_dport),
		.sport = bpf_htons(f->inner_sport),
		.nexthdr = f->inner_proto,
		.flags = TUPLE_F_OUT,
	};
	struct ipv4_ct_tuple r;

	if (ct_find4(&t, now))
		return CT_RELATED;
	t.flags = TUPLE_F_IN;
	if (ct_find4(&t, now))
		return CT_RELATED;
	ct_reverse4(&t, TUPLE_F_OUT, &r);
	if (ct_find4(&r, now))
		return CT_RELATED;
	r.flags = TUPLE_F_IN;
	return ct_find4(&r, now) ? CT_RELATED : CT_NEW;
}

/* Looks the packet up: CT_ESTABLISHED (it matches the tuple of a connection's opening packet,
 * recorded on this side), CT_REPLY (it matches a connection's reversed tuple) or CT_NEW. A hit
 * is accounted (packets, bytes, TCP flags per side, lifetime). Entries are keyed by the opening
 * packet's tuple with TUPLE_F_OUT when a pod opened the connection (from-container) and
 * TUPLE_F_IN when it was accepted into a pod from another node or the host (from-overlay,
 * to-container); a pod-to-pod connection on one node has a single OUT entry. So egress looks
 * for (tuple, OUT), then the reversed tuple under OUT and IN; ingress for (tuple, IN), then the
 * reversed tuple under OUT. ``*notify`` says whether the packet is worth a trace event under
 * monitor aggregation (a new connection or new TCP flags). Nothing is created here: the
 * caller creates the entry with ct_create4 once policy allowed the connection. */
static __always_inline int ct_lookup4(const struct flow_info *f, int side, __u32 len,
				      bool *notify)
{
	__u32 now = bpf_ktime_get_ns() / 1000000000ULL;
	struct ipv4_ct_tuple t, r;
	bool reply = true;
	struct ct_entry *e;

	*notify = true;
	if (f->fragment)
		return CT_NEW;
	if (f->inner_proto)
		return ct_related4(f, now);
	ct_tuple4(f, side == CT_EGRESS ? TUPLE_F_OUT : TUPLE_F_IN, &t);
	e = ct_find4(&t, now);
	if (e) {
		reply = false;
	} else {
		ct_reverse4(&t, TUPLE_F_OUT, &r);
		e = ct_find4(&r, now);
		if (!e && side == CT_EGRESS) {
			r.flags = TUPLE_F_IN;
			e = ct_find4(&r, now);
		}
	}
	if (!e)
		return CT_NEW;
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, len);
	*notify = f->proto == IPPROTO_TCP && ct_track_tcp(e, f->tcp_flags, reply);
	e->lifetime = now + ct_lifetime(f->proto, e->flags);
	return reply ? CT_REPLY : CT_ESTABLISHED;
}

/* Replies and related ICMP errors belong to a connection policy already let through. */
static __always_inline bool ct_skips_policy(int state)
{
	return state == CT_REPLY || state == CT_RELATED;
}

/* Records a new connection under the opening packet's tuple: 0, or -DROP_CT_CREATE_FAILED.
 * Non-first fragments are not tracked, nor ICMP errors (related or not). */
static __always_inline int ct_create4(const struct flow_info *f, int side, __u32 len)
{
	__u32 now = bpf_ktime_get_ns() / 1000000000ULL;
	struct ipv4_ct_tuple t;
	struct ct_entry entry = {
		.packets = 1,
		.bytes = len,
		.src_sec_id = f->src_identity,
	};
	long rc;

	if (f->fragment || f->inner_proto)
		return 0;
	ct_tuple4(f, side == CT_EGRESS ? TUPLE_F_OUT : TUPLE_F_IN, &t);
	if (f->proto == IPPROTO_TCP)
		ct_track_tcp(&entry, f->tcp_flags, false);
	entry.lifetime = now + ct_lifetime(f->proto, entry.flags);
	if (f->proto == IPPROTO_TCP)
		rc = bpf_map_update_elem(&pylium_ct4_global, &t, &entry, BPF_ANY);
	else
		rc = bpf_map_update_elem(&pylium_ct_any4_global, &t, &entry, BPF_ANY);
	return rc < 0 ? -DROP_CT_CREATE_FAILED : 0;
}

#endif
