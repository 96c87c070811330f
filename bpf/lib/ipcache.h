/* ipcache: prefix -> security identity and tunnel endpoint (cilium_ipcache_v2's shape). */
#ifndef PYLIUM_IPCACHE_H
#define PYLIUM_IPCACHE_H

#include "common.h"

/* The LPM prefix length counts the cluster_id/pad/family bytes (32 bits) before the address. */
struct ipcache_key {
	__u32 prefixlen;
	__u16 cluster_id;
	__u8 pad;
	__u8 family;
	__u32 ip4; /* network byte order */
};

struct remote_endpoint_info {
	__u32 sec_identity;
	__u32 tunnel_endpoint; /* IPv4, network byte order; 0: none */
	__u16 pad;
	__u8 key;
	__u8 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct remote_endpoint_info);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pylium_ipcache SEC(".maps");

static __always_inline struct remote_endpoint_info *ipcache_lookup4(__u32 ip4)
{
	struct ipcache_key key = {
		.prefixlen = 32 + 32,
		.family = ADDR_FAMILY_IPV4,
		.ip4 = ip4,
	};

	return bpf_map_lookup_elem(&pylium_ipcache, &key);
}

#endif
