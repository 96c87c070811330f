/* Local endpoints (cilium_lxc's shape): pod IP -> host veth, endpoint ID, identity, MACs. */
#ifndef PYLIUM_ENDPOINTS_H
#define PYLIUM_ENDPOINTS_H

#include "common.h"

struct endpoint_key {
	__u32 ip4; /* network byte order */
	__u8 family;
	__u8 key;
	__u16 cluster_id;
};

struct endpoint_info {
	__u32 ifindex; /* the host-side veth */
	__u16 unused;
	__u16 lxc_id;  /* endpoint ID */
	__u32 flags;
	__u8 mac[6];      /* the pod's MAC */
	__u8 node_mac[6]; /* the host-side veth's MAC */
	__u32 sec_id;
	__u32 parent_ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65535);
} pylium_lxc SEC(".maps");

static __always_inline struct endpoint_info *endpoint_lookup4(__u32 ip4)
{
	struct endpoint_key key = { .ip4 = ip4, .family = ADDR_FAMILY_IPV4 };

	return bpf_map_lookup_elem(&pylium_lxc, &key);
}

#endif
