/* Service load balancing: the maps (Cilium's cilium_lb4_* shapes) and backend selection.
 *
 * pylium_lb4_services_v2 (cilium_lb4_services_v2): key (frontend IP, port, protocol, scope,
 * backend slot). Slot 0 is the service's master entry: count (slots 1..count take new
 * connections: the active backends, or the terminating ones when none is active), qcount
 * (slots after them kept only for existing flows), rev_nat_index (the service ID), flags and
 * flags2 (the u16 ServiceFlags word, low and high byte), and in backend_id the session-affinity
 * timeout with the per-service algorithm in its top 8 bits. Slots 1.. carry a backend ID each.
 *
 * pylium_lb4_backends_v3 (cilium_lb4_backends_v3): backend ID -> address, port, protocol,
 * flags (state: 0 active, 1 terminating, 2 quarantined, 3 maintenance), cluster ID, zone.
 *
 * pylium_lb4_reverse_nat (cilium_lb4_reverse_nat): rev_nat_index -> frontend address and
 * port, for the per-packet path's reverse translation.
 *
 * pylium_lb4_maglev (cilium_lb4_maglev): rev_nat_index -> an inner array of one element, the
 * service's Maglev lookup table of maglev_table_size backend IDs (M, a load-time constant;
 * the loader sizes the inner map to match). The agent writes a table only for frontends that
 * use Maglev (bpf-lb-algorithm=maglev for frontends reachable from outside the node, or
 * service.cilium.io/lb-algorithm), so "has a table" is the per-service algorithm here; a
 * frontend without one selects at random among its slots.
 *
 * Session affinity (sessionAffinity: ClientIP): pylium_lb4_affinity (cilium_lb4_affinity, LRU)
 * remembers per client and service the backend last chosen and when; socket-LB identifies the
 * client by its network namespace cookie (netns = 1), the per-packet path would use the client
 * IP. An entry older than the service's timeout (the master's backend_id, low 24 bits) is
 * dropped, and so is one whose backend is no longer an active backend of the service:
 * pylium_lb_affinity_match (cilium_lb_affinity_match) lists the (backend, service) pairs that
 * may be kept, written by the agent.
 *
 * The user-space writer (adapters/maps/lb.py, ordered by core/lb/translate.plan) writes
 * backends before the slots naming them and masters last, so a lookup here never meets a
 * slot without its backend; a miss anywhere is treated as "no service" or "no backend".
 */
#ifndef PYLIUM_LB_H
#define PYLIUM_LB_H

#include "common.h"

#define LB_MAP_MAX 65536 /* bpf-lb-map-max */

#define LB_SCOPE_EXTERNAL 0
#define LB_SCOPE_INTERNAL 1

/* ServiceFlags (u16; flags is the low byte, flags2 the high byte) */
#define SVC_FLAG_EXTERNAL_IPS (1 << 0)
#define SVC_FLAG_NODEPORT (1 << 1)
#define SVC_FLAG_EXT_LOCAL_SCOPE (1 << 2)
#define SVC_FLAG_HOSTPORT (1 << 3)
#define SVC_FLAG_AFFINITY (1 << 4)
#define SVC_FLAG_LOADBALANCER (1 << 5)
#define SVC_FLAG_ROUTABLE (1 << 6)
#define SVC_FLAG_SOURCE_RANGE (1 << 7)
#define SVC_FLAG_LOCALREDIRECT (1 << 8)
#define SVC_FLAG_NAT_46X64 (1 << 9)
#define SVC_FLAG_L7_LOADBALANCER (1 << 10)
#define SVC_FLAG_LOOPBACK (1 << 11)
#define SVC_FLAG_INT_LOCAL_SCOPE (1 << 12)
#define SVC_FLAG_TWO_SCOPES (1 << 13)

/* lb4_backend.flags */
#define BE_STATE_ACTIVE 0
#define BE_STATE_TERMINATING 1
#define BE_STATE_QUARANTINED 2
#define BE_STATE_MAINTENANCE 3

struct lb4_key {
	__be32 address;	   /* frontend IP */
	__be16 dport;	   /* frontend port, network byte order */
	__u16 backend_slot; /* 0: the master entry */
	__u8 proto;	   /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	__u8 scope;	   /* LB_SCOPE_* */
	__u8 pad[2];
};

struct lb4_service {
	__u32 backend_id; /* slot >= 1: the backend; master: affinity timeout | algorithm << 24 */
	__u16 count;	  /* master: slots taking new connections */
	__u16 rev_nat_index;
	__u8 flags;
	__u8 flags2;
	__u16 qcount;	  /* master: slots kept for existing flows only */
};

struct lb4_backend {
	__be32 address;
	__be16 port; /* network byte order */
	__u8 proto;
	__u8 flags;  /* BE_STATE_* */
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
} __attribute__((packed));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pylium_lb4_services_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pylium_lb4_backends_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pylium_lb4_reverse_nat SEC(".maps");

#define LB_AFFINITY_TIMEOUT_MASK 0xFFFFFF

union lb4_affinity_client_id {
	__u32 client_ip;
	__u64 client_cookie; /* network namespace cookie */
};

struct lb4_affinity_key {
	union lb4_affinity_client_id client_id;
	__u16 rev_nat_id;
	__u8 netns;
	__u8 pad1;
	__u32 pad2;
} __attribute__((packed));

struct lb_affinity_val {
	__u64 last_used; /* seconds, monotonic */
	__u32 backend_id;
	__u32 pad;
} __attribute__((packed));

struct lb_affinity_match {
	__u32 backend_id;
	__u16 rev_nat_id;
	__u16 pad;
} __attribute__((packed));

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, LB_MAP_MAX);
} pylium_lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_affinity_match);
	__type(value, __u8);
	__uint(max_entries, LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pylium_lb_affinity_match SEC(".maps");

/* The backend ``key``'s client was last sent to, when still within the timeout and still an
 * active backend of the service; 0 otherwise (a stale entry is removed). */
static __always_inline __u32 lb4_affinity_backend_id(const struct lb4_affinity_key *key,
						     __u32 timeout)
{
	__u64 now = bpf_ktime_get_ns() / 1000000000ULL;
	struct lb_affinity_val *val = bpf_map_lookup_elem(&pylium_lb4_affinity, key);

	if (!val)
		return 0;
	struct lb_affinity_match match = {
		.backend_id = val->backend_id,
		.rev_nat_id = key->rev_nat_id,
	};
	if (val->last_used + timeout <= now ||
	    !bpf_map_lookup_elem(&pylium_lb_affinity_match, &match)) {
		bpf_map_delete_elem(&pylium_lb4_affinity, key);
		return 0;
	}
	val->last_used = now;
	return val->backend_id;
}

static __always_inline void lb4_affinity_update(const struct lb4_affinity_key *key,
						__u32 backend_id)
{
	struct lb_affinity_val val = {
		.last_used = bpf_ktime_get_ns() / 1000000000ULL,
		.backend_id = backend_id,
	};

	bpf_map_update_elem(&pylium_lb4_affinity, key, &val, BPF_ANY);
}

/* bpf-lb-maglev-table-size: entries per Maglev table (one of upstream's primes). */
volatile const __u32 maglev_table_size = 16381;

struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32) * 16381); /* resized by the loader to 4 * M */
	__uint(max_entries, 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u16); /* rev_nat_index */
	__type(value, __u32);
	__uint(max_entries, LB_MAP_MAX);
	__array(values, struct lb_maglev_inner);
} pylium_lb4_maglev SEC(".maps");

/* The backend ID the service's Maglev table gives for ``hash``; 0: the service has no table
 * (it selects at random). */
static __always_inline __u32 lb4_maglev_backend_id(__u16 rev_nat_index, __u32 hash)
{
	__u32 zero = 0, index;
	__u32 *table;
	void *inner;

	inner = bpf_map_lookup_elem(&pylium_lb4_maglev, &rev_nat_index);
	if (!inner)
		return 0;
	table = bpf_map_lookup_elem(inner, &zero);
	if (!table)
		return 0;
	index = hash % maglev_table_size;
	if (index >= maglev_table_size) /* bounds the access for the verifier */
		return 0;
	return table[index];
}

static __always_inline __u16 lb4_svc_flags(const struct lb4_service *svc)
{
	return (__u16)svc->flags | ((__u16)svc->flags2 << 8);
}

/* The master entry of the frontend in ``key`` (address, dport, proto set; slot 0): the
 * external scope first; a frontend with two scopes answers from inside the node with its
 * internal one, as upstream's lb4_lookup_service does for a lookup from the node (``key->scope``
 * says which was found). NULL: not a service. */
static __always_inline struct lb4_service *lb4_lookup_service(struct lb4_key *key)
{
	struct lb4_service *svc;

	key->backend_slot = 0;
	key->scope = LB_SCOPE_EXTERNAL;
	svc = bpf_map_lookup_elem(&pylium_lb4_services_v2, key);
	if (svc && (lb4_svc_flags(svc) & SVC_FLAG_TWO_SCOPES)) {
		key->scope = LB_SCOPE_INTERNAL;
		struct lb4_service *internal = bpf_map_lookup_elem(&pylium_lb4_services_v2, key);
		if (internal)
			return internal;
		key->scope = LB_SCOPE_EXTERNAL;
	}
	return svc;
}

/* The backend in slot ``slot`` (1..) of the frontend in ``key`` (its ID in ``*backend_id``):
 * NULL when the slot or its backend is missing (the writer's order makes that transient). */
static __always_inline struct lb4_backend *lb4_slot_backend(struct lb4_key *key, __u16 slot,
							    __u32 *backend_id)
{
	struct lb4_service *s;

	key->backend_slot = slot;
	s = bpf_map_lookup_elem(&pylium_lb4_services_v2, key);
	key->backend_slot = 0;
	if (!s || !s->backend_id)
		return NULL;
	*backend_id = s->backend_id;
	return bpf_map_lookup_elem(&pylium_lb4_backends_v3, backend_id);
}

#endif
