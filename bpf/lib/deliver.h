/* Delivery to a local endpoint: deliver_local (from-container, after its checks) and
 * ingress_deliver_local for packets from elsewhere (from-overlay, the NodePort path and, with
 * BPF host routing, from-netdev), which make the same checks as to-container: conntrack, the
 * endpoint's ingress policy, the connection recorded as accepted into the pod. */
#ifndef PYLIUM_DELIVER_H
#define PYLIUM_DELIVER_H

#include "config.h"
#include "conntrack.h"
#include "endpoints.h"
#include "events.h"
#include "policy.h"

/* Into the endpoint's namespace, as a router would deliver: from its host-side MAC to its own. */
static __always_inline int deliver_local(struct __sk_buff *skb, const struct endpoint_info *ep,
					 const struct flow_info *f, __u8 dir, __u8 ct_state,
					 bool notify)
{
	if (bpf_skb_store_bytes(skb, 0, ep->mac, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, ep->node_mac, ETH_ALEN, 0) < 0)
		return drop(skb, DROP_WRITE_ERROR, dir, f);
	forward(skb, TRACE_TO_LXC, ct_state, dir, f, notify);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* Into local endpoint ``ep`` from elsewhere (``f->src_identity`` set): conntrack, its ingress
 * policy unless a reply or related, a new connection recorded with TUPLE_F_IN (so that the
 * pod's replies are replies at its egress), then delivery. */
static __always_inline int ingress_deliver_local(struct __sk_buff *skb, struct flow_info *f,
						 const struct endpoint_info *ep)
{
	bool notify;
	int ret;

	f->dst_identity = ep->sec_id;
	int state = ct_lookup4(f, CT_INGRESS, skb->len, &notify);
	notify = notify || monitor_aggregation == MONITOR_AGGREGATION_NONE || state == CT_NEW;
	if (!ct_skips_policy(state)) {
		ret = policy_check(skb, ep->lxc_id, DIR_INGRESS, f, state);
		if (ret)
			return drop(skb, ret, DIR_INGRESS, f);
	}
	if (state == CT_NEW) {
		ret = ct_create4(f, CT_INGRESS, skb->len);
		if (ret < 0)
			return drop(skb, -ret, DIR_INGRESS, f);
	}
	return deliver_local(skb, ep, f, DIR_INGRESS, state, notify);
}

#endif
