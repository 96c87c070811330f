/* Sending into the VXLAN tunnel (collect-metadata cilium_vxlan): the remote node's address
 * and the source security identity (the VNI) in the tunnel key, then a redirect to the
 * tunnel device. The host's own identity travels as HOST (1); the receiving from-overlay
 * turns it into REMOTE_NODE (6), as upstream's encap/overlay pair does. */
#ifndef PYLIUM_ENCAP_H
#define PYLIUM_ENCAP_H

#include "common.h"
#include "config.h"
#include "events.h"

static __always_inline int encap_and_redirect(struct __sk_buff *skb, __u32 tunnel_endpoint,
					      struct flow_info *f, __u8 dir, int ct_state,
					      bool notify)
{
	struct node_config *cfg = node_config();

	if (!cfg || !cfg->tunnel_ifindex)
		return drop(skb, DROP_NO_TUNNEL_ENDPOINT, dir, f);
	struct bpf_tunnel_key key = {
		.remote_ipv4 = bpf_ntohl(tunnel_endpoint),
		.tunnel_id = f->src_identity,
		.tunnel_ttl = 64,
	};
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return drop(skb, DROP_TUNNEL_KEY, dir, f);
	forward(skb, TRACE_TO_OVERLAY, ct_state, dir, f, notify);
	return bpf_redirect(cfg->tunnel_ifindex, 0);
}

#endif
