/* Delivery to a local endpoint, shared by from-container and from-overlay. */
#ifndef PYLIUM_DELIVER_H
#define PYLIUM_DELIVER_H

#include "endpoints.h"
#include "events.h"

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

#endif
