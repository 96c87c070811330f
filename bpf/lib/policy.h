/* Per-endpoint network policy (Cilium's cilium_policy_v2_<EPID> LPM tries, since 1.16).
 *
 * pylium_policy_v2 maps an endpoint ID to that endpoint's own LPM trie (map-in-map), so one
 * loaded program serves every endpoint; user space creates each inner trie, fills it and
 * only then inserts it (pinned beside as pylium_policy_v2_<EPID, 5 digits> for inspection).
 * An endpoint without an inner map has no policy wired: everything passes, as before policy
 * existed. With one, a packet that matches no entry is dropped (133, default deny) and one
 * that matches a deny entry too (181); an unenforced direction is one allow entry for
 * identity 0 and any L4 (the core's allow-any-<dir>).
 *
 * Key: remote identity and direction always match fully (40 bits), then protocol (8 bits),
 * then the destination port as a prefix (a port range is several aligned prefixes). ICMP
 * keys use protocol 1 and the ICMP type as the port. Lookup (core.policy.MapState.lookup is
 * the reference): the longest L4 prefix among the entries of the packet's identity and of
 * identity 0, the identity-specific one at equal length; the trie answers the longest prefix
 * per identity and the value's lpm_prefix_length compares the two answers. Deny precedence
 * is built into the entries by the core, so the value needs no precedence.
 *
 * Policy is checked on new and established packets of a connection (a revoked rule stops a
 * flow at its next packet, as upstream) and skipped for replies and related ICMP errors,
 * which conntrack lets through.
 */
#ifndef PYLIUM_POLICY_H
#define PYLIUM_POLICY_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "events.h"

#define POLICY_INGRESS 0 /* policy_key.egress: Cilium's TrafficDirection */
#define POLICY_EGRESS 1

/* The bits of the key after prefixlen: identity and direction always match fully. */
#define POLICY_PREFIX_BITS 40
#define POLICY_FULL_PREFIX 64
#define POLICY_PROTO_BITS 8

#define POLICY_MAP_SIZE 16384 /* per endpoint (bpf-policy-map-max) */

/* The host endpoint's ID (its policy map is the host firewall's). Upstream allocates it from
 * the endpoint IDs and compiles it into bpf_host (its template uses 0xffff); pylium reserves
 * 0xffff, and pods take 1..65534. No map under this ID (host firewall off): the host's
 * traffic passes unjudged. */
#define HOST_ENDPOINT_ID 0xffff
#define POLICY_ENDPOINTS_MAX 65535

/* policy_entry.flags */
#define POLICY_F_DENY 1

/* The policy-verdict match types (Cilium's POLICY_MATCH_*). */
#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4
#define POLICY_MATCH_L3_PROTO 5
#define POLICY_MATCH_PROTO_ONLY 6

struct policy_key {
	__u32 prefixlen; /* POLICY_PREFIX_BITS + the L4 prefix (0, 8 + port prefix) */
	__u32 sec_label; /* remote identity; 0: any */
	__u8 egress;	 /* POLICY_INGRESS or POLICY_EGRESS */
	__u8 protocol;	 /* 0: any (then no port bits) */
	__be16 dport;	 /* network byte order, so that its high bits are the prefix */
};

struct policy_entry {
	__be16 proxy_port; /* 0: no L7 proxy (redirects are not implemented) */
	__u8 flags;	   /* POLICY_F_* */
	__u8 auth_type;	   /* 0: no authentication */
	__u8 lpm_prefix_length; /* the key's L4 prefix: 0, or 8 + port prefix bits */
	__u8 pad[3];
	__u32 precedence; /* unused: deny precedence is in the entries */
	__u32 cookie;	  /* for the policy log (unused yet) */
};

/* Complete types in the BTF: the map definition below only points at them, which clang
 * records as forward declarations that libbpf cannot size (see events.h for the section). */
struct policy_key __pylium_btf_policy_key __attribute__((section(".pylium.btf"), used));
struct policy_entry __pylium_btf_policy_entry __attribute__((section(".pylium.btf"), used));

struct policy_map_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32); /* endpoint ID */
	__uint(max_entries, POLICY_ENDPOINTS_MAX);
	__array(values, struct policy_map_inner);
} pylium_policy_v2 SEC(".maps");

struct policy_match {
	const struct policy_entry *entry; /* NULL: nothing matched */
	bool specific;			  /* keyed by the packet's identity, not by 0 */
};

/* The entry deciding a packet in ``map`` (see the contract above). */
static __always_inline struct policy_match policy_lookup(void *map, __u32 identity, __u8 egress,
							 __u8 proto, __u16 dport)
{
	struct policy_key key = {
		.prefixlen = POLICY_FULL_PREFIX,
		.sec_label = identity,
		.egress = egress,
		.protocol = proto,
		.dport = bpf_htons(dport),
	};
	struct policy_match m = {};
	const struct policy_entry *specific = NULL, *any;

	if (identity != IDENTITY_ANY)
		specific = bpf_map_lookup_elem(map, &key);
	key.sec_label = IDENTITY_ANY;
	any = bpf_map_lookup_elem(map, &key);
	if (specific && (!any || specific->lpm_prefix_length >= any->lpm_prefix_length)) {
		m.entry = specific;
		m.specific = true;
	} else {
		m.entry = any;
	}
	return m;
}

static __always_inline __u8 policy_match_type(struct policy_match m)
{
	if (!m.entry)
		return POLICY_MATCH_NONE;
	__u8 len = m.entry->lpm_prefix_length;
	if (m.specific)
		return len == 0 ? POLICY_MATCH_L3_ONLY :
		       len == POLICY_PROTO_BITS ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_L3_L4;
	return len == 0 ? POLICY_MATCH_ALL :
	       len == POLICY_PROTO_BITS ? POLICY_MATCH_PROTO_ONLY : POLICY_MATCH_L4_ONLY;
}

static __always_inline bool policy_audit_mode(void)
{
	struct node_config *cfg = node_config();

	return cfg && (cfg->flags & NODE_F_POLICY_AUDIT_MODE);
}

/* Endpoint ``ep_id``'s verdict on a packet in ``dir`` (DIR_INGRESS: ``f->src_identity`` is the
 * remote; DIR_EGRESS: ``f->dst_identity``): 0 to let it pass, else the drop reason (133 or
 * 181) for the caller's drop(). A policy-verdict event goes out for every new connection and
 * every denial, except when the match is the allow-any entry (an unenforced direction, or a
 * rule allowing everything: nothing to tell). In audit mode a denial passes, reported with
 * EVENT_F_AUDITED. */
static __always_inline int policy_check(struct __sk_buff *skb, __u32 ep_id, __u8 dir,
					const struct flow_info *f, int ct_state)
{
	void *map = bpf_map_lookup_elem(&pylium_policy_v2, &ep_id);

	if (!map)
		return 0;
	bool egress = dir == DIR_EGRESS;
	__u16 port = f->proto == IPPROTO_ICMP ? f->icmp_type : f->dport;
	struct policy_match m = policy_lookup(map, egress ? f->dst_identity : f->src_identity,
					      egress ? POLICY_EGRESS : POLICY_INGRESS, f->proto,
					      port);
	int reason = !m.entry ? DROP_POLICY :
		     (m.entry->flags & POLICY_F_DENY) ? DROP_POLICY_DENY : 0;
	__u8 match = policy_match_type(m);
	bool audited = reason && policy_audit_mode();

	if ((ct_state == CT_NEW || reason) && !(match == POLICY_MATCH_ALL && !reason))
		emit_flags(skb, EVENT_POLICY_VERDICT, reason, match, dir, f,
			   audited ? EVENT_F_AUDITED : 0);
	return audited ? 0 : reason;
}

#endif
