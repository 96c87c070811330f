/* from-overlay: tc ingress on cilium_vxlan (collect-metadata mode), packets decapsulated from
 * other nodes. The VNI is the sender's security identity; local endpoints get the packet
 * straight into their namespace, anything else goes to the kernel. (No conntrack here yet:
 * ingress tracking comes with to-container and policy.) */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/endpoints.h"
#include "lib/events.h"
#include "lib/deliver.h"

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
	bool notify = monitor_aggregation == MONITOR_AGGREGATION_NONE;
	if (ep && ep->ifindex)
		return deliver_local(skb, ep, &f, DIR_INGRESS, 0, notify);
	forward(skb, TRACE_TO_STACK, 0, DIR_INGRESS, &f, notify);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
