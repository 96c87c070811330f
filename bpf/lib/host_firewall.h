/* The host firewall (enable-host-firewall): the host endpoint's policy (HOST_ENDPOINT_ID in
 * pylium_policy_v2, written by the agent from CCNP nodeSelector rules) judged where the
 * host's traffic passes, with conntrack so that replies pass as for pods.
 *
 * - host_policy_ingress: a packet to one of this node's addresses (ipcache identity HOST)
 *   from ``f->src_identity``: at the underlay device's ingress (cil_from_netdev), at
 *   from-container (local pods) and at from-overlay (pods on other nodes through the tunnel);
 * - host_policy_egress: a packet from one of the host's addresses to ``f->dst_identity``: at
 *   the underlay device's egress (cil_to_netdev), cilium_host's egress (cil_from_host) and
 *   to-container (the host to a local pod).
 *
 * Without the host's map (host firewall off) both pass whatever the packet; conntrack is
 * then not touched either. Returns 0 or the drop reason. */
#ifndef PYLIUM_HOST_FIREWALL_H
#define PYLIUM_HOST_FIREWALL_H

#include "common.h"
#include "conntrack.h"
#include "policy.h"

static __always_inline bool host_firewall_on(void)
{
	__u32 id = HOST_ENDPOINT_ID;

	return bpf_map_lookup_elem(&pylium_policy_v2, &id) != NULL;
}

static __always_inline int host_policy(struct __sk_buff *skb, struct flow_info *f, __u8 dir,
				       int *ct_state)
{
	bool notify;

	*ct_state = 0;
	if (!host_firewall_on())
		return 0;
	int side = dir == DIR_INGRESS ? CT_INGRESS : CT_EGRESS;
	int state = ct_lookup4(f, side, skb->len, &notify);
	*ct_state = state;
	if (ct_skips_policy(state))
		return 0;
	int ret = policy_check(skb, HOST_ENDPOINT_ID, dir, f, state);
	if (ret)
		return ret;
	if (state == CT_NEW) {
		ret = ct_create4(f, side, skb->len);
		if (ret < 0)
			return -ret;
	}
	return 0;
}

static __always_inline int host_policy_ingress(struct __sk_buff *skb, struct flow_info *f,
					       int *ct_state)
{
	return host_policy(skb, f, DIR_INGRESS, ct_state);
}

static __always_inline int host_policy_egress(struct __sk_buff *skb, struct flow_info *f,
					      int *ct_state)
{
	return host_policy(skb, f, DIR_EGRESS, ct_state);
}

#endif
