/* The maps shared by every program, one definition each. Their layouts are mirrored, once, by
 * the Python wrappers in src/pylium/adapters/maps/ (checked against this object's BTF). */
#ifndef PYLIUM_MAPS_H
#define PYLIUM_MAPS_H

#include "common.h"

/* ipcache: prefix -> security identity and tunnel endpoint (cilium_ipcache_v2's shape). The
 * LPM prefix length counts the cluster_id/pad/family bytes too (32 bits) before the address. */
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

/* Local endpoints (cilium_lxc's shape): pod IP -> veth, endpoint ID, identity, MACs. */
struct endpoint_key {
	__u32 ip4; /* network byte order */
	__u8 family;
	__u8 key;
	__u16 cluster_id;
};

struct endpoint_info {
	__u32 ifindex;
	__u16 unused;
	__u16 lxc_id;
	__u32 flags;
	__u8 mac[6];
	__u8 node_mac[6];
	__u32 sec_id;
	__u32 parent_ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65535);
} pylium_lxc SEC(".maps");

/* Forward and drop counters (cilium_metrics' shape): reason 0 = forwarded. */
struct metrics_key {
	__u8 reason;
	__u8 dir;
	__u16 line;
	__u8 file;
	__u8 pad[3];
};

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(max_entries, 1024);
} pylium_metrics SEC(".maps");

/* Node configuration the agent writes at start-up (a map, so that the object is never
 * recompiled per node): the tunnel device and this node's identity on the wire. */
struct node_config {
	__u32 tunnel_ifindex; /* cilium_vxlan; 0: no tunnel (native routing) */
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct node_config);
	__uint(max_entries, 1);
} pylium_config SEC(".maps");

#endif
