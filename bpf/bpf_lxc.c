/* The pod's host-side veth: cil_from_container on its tc ingress (packets the pod sends) and
 * cil_to_container on its tc egress (packets the kernel routes to the pod: from the host, and
 * from other nodes in native routing).
 *
 * from-container: parse; resolve the source endpoint (its identity) and the destination's
 * identity from the ipcache; conntrack; the source endpoint's egress policy and, for a local
 * destination, that endpoint's ingress policy (replies and related ICMP errors skip policy);
 * record a new connection; then deliver to a local endpoint straight into its namespace
 * (bpf_redirect_peer, MACs rewritten as a router would), send pods on other nodes through the
 * VXLAN tunnel with the source identity in the VNI, and hand everything else to the kernel,
 * or, with BPF host routing, route it in BPF out of the FIB's device (lib/fib.h) unless it is
 * for this node or to be masqueraded.
 *
 * A packet to this node's own addresses (identity HOST) also meets the host firewall's ingress
 * policy at from-container, and one from them the host's egress policy at to-container (both
 * pass when the host firewall is off: no host policy map).
 *
 * to-container: the destination endpoint's ingress policy for the source identity the ipcache
 * gives (traffic delivered by bpf_lxc, bpf_overlay or, with BPF host routing, bpf_host's
 * from-netdev never comes this way: bpf_redirect_peer skips the veth's egress).
 *
 * Forwards and drops are counted; drops and (per monitor aggregation) forwards are traced.
 * A reply of a NodePort backend to a client outside the node (the connection was delivered by
 * bpf_host's cil_from_netdev) leaves from the frontend's address, straight out of the device
 * the FIB names (lib/nat.h).
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/endpoints.h"
#include "lib/ipcache.h"
#include "lib/conntrack.h"
#include "lib/events.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/fib.h"
#include "lib/nat.h"

SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = {};
	bool notify;
	int ret;

	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_EGRESS, &f);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return drop(skb, DROP_UNSUPPORTED_L3, DIR_EGRESS, &f);
	ret = parse_ipv4((void *)(eth + 1), data_end, &f);
	if (ret)
		return drop(skb, ret, DIR_EGRESS, &f);

	struct endpoint_info *src = endpoint_lookup4(f.saddr);
	if (!src)
		return drop(skb, DROP_INVALID_SOURCE_IP, DIR_EGRESS, &f);
	f.src_identity = src->sec_id;
	f.source = src->lxc_id;

	struct remote_endpoint_info *dst_info = ipcache_lookup4(f.daddr);
	f.dst_identity = dst_info ? dst_info->sec_identity : IDENTITY_WORLD;

	int state = ct_lookup4(&f, CT_EGRESS, skb->len, &notify);
	notify = notify || monitor_aggregation == MONITOR_AGGREGATION_NONE || state == CT_NEW;

	struct endpoint_info *dst = endpoint_lookup4(f.daddr);
	bool local = dst && dst->ifindex;
	if (!ct_skips_policy(state)) {
		ret = policy_check(skb, src->lxc_id, DIR_EGRESS, &f, state);
		if (ret)
			return drop(skb, ret, DIR_EGRESS, &f);
		if (local) {
			ret = policy_check(skb, dst->lxc_id, DIR_INGRESS, &f, state);
			if (ret)
				return drop(skb, ret, DIR_INGRESS, &f);
		} else if (f.dst_identity == IDENTITY_HOST) {
			/* To this node: the host firewall's ingress (no host map: passes). */
			ret = policy_check(skb, HOST_ENDPOINT_ID, DIR_INGRESS, &f, state);
			if (ret)
				return drop(skb, ret, DIR_INGRESS, &f);
		}
	}
	if (state == CT_NEW) {
		ret = ct_create4(&f, CT_EGRESS, skb->len);
		if (ret < 0)
			return drop(skb, -ret, DIR_EGRESS, &f);
	}
	/* A NodePort backend's reply to a client outside: from the frontend (lib/nat.h). */
	if (state == CT_REPLY && !local && nat_rev_dnat(skb, &f, DIR_EGRESS, notify, &ret))
		return ret;

	if (local)
		return deliver_local(skb, dst, &f, DIR_EGRESS, state, notify);

	if (dst_info && dst_info->tunnel_endpoint) {
		/* A pod on another node: VXLAN in collect-metadata mode, the source identity in
		 * the VNI so that the receiving node knows it without a lookup. */
		struct node_config *cfg = node_config();
		if (!cfg || !cfg->tunnel_ifindex)
			return drop(skb, DROP_NO_TUNNEL_ENDPOINT, DIR_EGRESS, &f);
		struct bpf_tunnel_key key = {
			.remote_ipv4 = bpf_ntohl(dst_info->tunnel_endpoint),
			.tunnel_id = f.src_identity,
			.tunnel_ttl = 64,
		};
		if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
			return drop(skb, DROP_TUNNEL_KEY, DIR_EGRESS, &f);
		forward(skb, TRACE_TO_OVERLAY, state, DIR_EGRESS, &f, notify);
		return bpf_redirect(cfg->tunnel_ifindex, 0);
	}
	/* BPF host routing: out of the FIB's device without the stack, unless the packet is for
	 * this node or masquerading (in the stack) must rewrite it. Replies never are: their
	 * connection came in by BPF (from-netdev), unseen by the stack's conntrack, which would
	 * take a reply for a new connection and masquerade it. */
	if (enable_host_routing && f.dst_identity != IDENTITY_HOST &&
	    (state == CT_REPLY || state == CT_RELATED || !host_routing_masqueraded(f.daddr)))
		return fib_redirect4(skb, &f, DIR_EGRESS, state, notify);
	forward(skb, TRACE_TO_STACK, state, DIR_EGRESS, &f, notify);
	return TC_ACT_OK;
}

SEC("tc")
int cil_to_container(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = {};
	bool notify;
	int ret;

	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_INGRESS, &f);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK; /* ARP from the host, IPv6 link-local chatter: not ours to judge */
	ret = parse_ipv4((void *)(eth + 1), data_end, &f);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, &f);

	struct endpoint_info *dst = endpoint_lookup4(f.daddr);
	if (!dst)
		return TC_ACT_OK;
	f.dst_identity = dst->sec_id;
	struct remote_endpoint_info *src_info = ipcache_lookup4(f.saddr);
	f.src_identity = src_info ? src_info->sec_identity : IDENTITY_WORLD;

	int state = ct_lookup4(&f, CT_INGRESS, skb->len, &notify);
	notify = notify || monitor_aggregation == MONITOR_AGGREGATION_NONE || state == CT_NEW;
	if (!ct_skips_policy(state)) {
		if (f.src_identity == IDENTITY_HOST) {
			/* From this node: the host firewall's egress (no host map: passes). */
			ret = policy_check(skb, HOST_ENDPOINT_ID, DIR_EGRESS, &f, state);
			if (ret)
				return drop(skb, ret, DIR_EGRESS, &f);
		}
		ret = policy_check(skb, dst->lxc_id, DIR_INGRESS, &f, state);
		if (ret)
			return drop(skb, ret, DIR_INGRESS, &f);
	}
	if (state == CT_NEW) {
		ret = ct_create4(&f, CT_INGRESS, skb->len);
		if (ret < 0)
			return drop(skb, -ret, DIR_INGRESS, &f);
	}
	forward(skb, TRACE_TO_LXC, state, DIR_INGRESS, &f, notify);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
