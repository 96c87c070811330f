/* from-overlay: tc ingress on cilium_vxlan (collect-metadata mode), packets decapsulated from
 * other nodes. The VNI is the sender's security identity; a sending node's own traffic
 * arrives as HOST (1) and is judged as REMOTE_NODE (6), as upstream does: the other node is
 * not this node's host. A packet for a local endpoint is
 * tracked (a new connection is recorded as accepted into the pod, TUPLE_F_IN, so that the
 * pod's replies pass its egress policy), checked against the endpoint's ingress policy unless
 * it is a reply, and delivered straight into the endpoint's namespace. A packet for this
 * node's own addresses (ipcache identity HOST: the router IP, where pods answer the other
 * nodes' hosts), once the host firewall's ingress policy let it in, goes to the stack as
 * addressed to this host (the inner Ethernet destination
 * is the sending pod's gateway on its node, so the frame arrived as PACKET_OTHERHOST), unless
 * it is a remote NodePort backend's reply to what bpf_host SNATed to the router IP: that one
 * is translated back and sent to the client (lib/nat.h);
 * anything else goes to the kernel as it came. */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/endpoints.h"
#include "lib/ipcache.h"
#include "lib/conntrack.h"
#include "lib/events.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/host_firewall.h"
#include "lib/nat.h"

SEC("tc")
int cil_from_overlay(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = {};
	struct bpf_tunnel_key key = {};
	int ret;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return drop(skb, DROP_TUNNEL_KEY, DIR_INGRESS, &f);
	f.src_identity = key.tunnel_id;
	if (f.src_identity == IDENTITY_HOST)
		f.src_identity = IDENTITY_REMOTE_NODE;
	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_INGRESS, &f);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ret = parse_ipv4((void *)(eth + 1), data_end, &f);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, &f);

	struct endpoint_info *ep = endpoint_lookup4(f.daddr);
	if (ep)
		f.dst_identity = ep->sec_id;
	if (!ep || !ep->ifindex) {
		struct remote_endpoint_info *info = ipcache_lookup4(f.daddr);
		int state = 0;
		if (info && info->sec_identity == IDENTITY_HOST) {
			f.dst_identity = IDENTITY_HOST;
			/* A remote NodePort backend's reply to the router IP it was SNATed to. */
			if (nat_rev_snat(skb, &f, DIR_INGRESS,
					 monitor_aggregation == MONITOR_AGGREGATION_NONE, &ret))
				return ret;
			ret = host_policy_ingress(skb, &f, &state);
			if (ret)
				return drop(skb, ret, DIR_INGRESS, &f);
			bpf_skb_change_type(skb, PACKET_HOST);
		}
		forward(skb, TRACE_TO_STACK, state, DIR_INGRESS, &f,
			monitor_aggregation == MONITOR_AGGREGATION_NONE);
		return TC_ACT_OK;
	}

	return ingress_deliver_local(skb, &f, ep);
}

char _license[] SEC("license") = "GPL";
