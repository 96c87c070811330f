/* Node configuration. Settings fixed for the life of a loaded object are load-time constants
 * in .rodata: the loader writes them between open and load (never a recompile), and the
 * verifier prunes the branches they disable. State that changes while programs run (the
 * tunnel device can be recreated) lives in the pylium_config map instead. */
#ifndef PYLIUM_CONFIG_H
#define PYLIUM_CONFIG_H

#include "common.h"

/* Conntrack lifetimes in seconds (Cilium's bpf-ct-timeout-* flags and defaults). */
volatile const __u32 ct_timeout_regular_tcp = 8000;
volatile const __u32 ct_timeout_regular_tcp_syn = 60;
volatile const __u32 ct_timeout_regular_tcp_fin = 10;
volatile const __u32 ct_timeout_regular_any = 60;

/* monitor-aggregation: 0 none (trace every packet), 1 low, 2 medium, 3 maximum. From low on,
 * a forwarded packet is traced only when it opens a connection or carries TCP flags not yet
 * seen in its direction. */
#define MONITOR_AGGREGATION_NONE 0
volatile const __u8 monitor_aggregation = MONITOR_AGGREGATION_NONE;

/* BPF host routing (upstream's ENABLE_HOST_ROUTING; the agent clears it with
 * enable-host-legacy-routing, or when the kernel lacks bpf_redirect_neigh/bpf_redirect_peer):
 * from-container routes packets leaving the node with the FIB and sends them out of the FIB's
 * device itself, and from-netdev delivers packets for local endpoints straight into them
 * (lib/fib.h). Masquerading stays iptables-style (nftables in the stack), so a packet it would
 * masquerade (destination outside ipv4_snat_exclusion_dst_cidr/mask, network order) still
 * goes through the stack. */
volatile const __u8 enable_host_routing = 0;
volatile const __u8 enable_masquerade_ipv4 = 0;
volatile const __be32 ipv4_snat_exclusion_dst_cidr = 0;
volatile const __be32 ipv4_snat_exclusion_dst_mask = 0;

/* node_config.flags */
#define NODE_F_POLICY_AUDIT_MODE 1 /* policy-audit-mode: would-be policy drops pass, reported */

struct node_config {
	__u32 tunnel_ifindex; /* cilium_vxlan; 0: no tunnel (native routing) */
	__u32 flags;	      /* NODE_F_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct node_config);
	__uint(max_entries, 1);
} pylium_config SEC(".maps");

static __always_inline struct node_config *node_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pylium_config, &zero);
}

#endif
