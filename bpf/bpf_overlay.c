/* from-overlay: tc ingress on cilium_vxlan (collect-metadata mode), packets decapsulated from
 * other nodes. The VNI is the sender's security identity; local endpoints get the packet
 * straight into their namespace, anything else goes to the kernel. */
#include "lib/common.h"
#include "lib/maps.h"
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
	struct iphdr *ip;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return drop(skb, DROP_TUNNEL_KEY, DIR_INGRESS, &f);
	f.src_identity = key.tunnel_id;
	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_INGRESS, &f);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return drop(skb, DROP_INVALID_PACKET, DIR_INGRESS, &f);
	f.saddr = ip->saddr;
	f.daddr = ip->daddr;
	f.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__u16 *ports = (void *)ip + ip->ihl * 4;
		if ((void *)(ports + 2) <= data_end) {
			f.sport = bpf_ntohs(ports[0]);
			f.dport = bpf_ntohs(ports[1]);
		}
	}
	struct endpoint_key ek = { .ip4 = ip->daddr, .family = ADDR_FAMILY_IPV4 };
	struct endpoint_info *ep = bpf_map_lookup_elem(&pylium_lxc, &ek);
	if (ep)
		f.dst_identity = ep->sec_id;
	count(REASON_FORWARDED, DIR_INGRESS, skb->len);
	emit(skb, EVENT_TRACE, REASON_FORWARDED, DIR_INGRESS, &f);
	if (ep && ep->ifindex)
		return deliver_local(skb, ep, &f, DIR_INGRESS);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
