/* from-container: tc ingress on the host side of each pod's veth (packets the pod sends).
 *
 * Today: parse, resolve the source endpoint (its identity) and the destination's identity from
 * the ipcache, deliver to a local endpoint straight into its namespace (bpf_redirect_peer),
 * rewriting the MACs as a router would, send pods on other nodes through the VXLAN tunnel with
 * the source identity in the VNI, and hand everything else to the kernel's routing. Forwards and drops are counted and traced.
 * Policy, conntrack, service translation and the tunnel arrive with their issues.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/deliver.h"

static __always_inline struct remote_endpoint_info *ipcache_lookup(__u32 ip4)
{
	struct ipcache_key key = {
		.prefixlen = 32 + 32,
		.family = ADDR_FAMILY_IPV4,
		.ip4 = ip4,
	};
	return bpf_map_lookup_elem(&pylium_ipcache, &key);
}

static __always_inline struct endpoint_info *endpoint_lookup(__u32 ip4)
{
	struct endpoint_key key = { .ip4 = ip4, .family = ADDR_FAMILY_IPV4 };
	return bpf_map_lookup_elem(&pylium_lxc, &key);
}

SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = {};
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_EGRESS, &f);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return drop(skb, DROP_UNSUPPORTED_L3, DIR_EGRESS, &f);

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return drop(skb, DROP_INVALID_PACKET, DIR_EGRESS, &f);
	f.saddr = ip->saddr;
	f.daddr = ip->daddr;
	f.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		/* sport and dport sit at the same offsets in TCP and UDP headers. */
		__u16 *ports = (void *)ip + ip->ihl * 4;
		if ((void *)(ports + 2) <= data_end) {
			f.sport = bpf_ntohs(ports[0]);
			f.dport = bpf_ntohs(ports[1]);
		}
	}

	struct endpoint_info *src = endpoint_lookup(ip->saddr);
	if (!src)
		return drop(skb, DROP_INVALID_SOURCE_IP, DIR_EGRESS, &f);
	f.src_identity = src->sec_id;

	struct remote_endpoint_info *dst_info = ipcache_lookup(ip->daddr);
	f.dst_identity = dst_info ? dst_info->sec_identity : IDENTITY_WORLD;

	count(REASON_FORWARDED, DIR_EGRESS, skb->len);
	emit(skb, EVENT_TRACE, REASON_FORWARDED, DIR_EGRESS, &f);

	struct endpoint_info *dst = endpoint_lookup(ip->daddr);
	if (dst && dst->ifindex)
		return deliver_local(skb, dst, &f, DIR_EGRESS);

	if (dst_info && dst_info->tunnel_endpoint) {
		/* A pod on another node: VXLAN in collect-metadata mode, the source identity in
		 * the VNI so that the receiving node knows it without a lookup. */
		__u32 zero = 0;
		struct node_config *cfg = bpf_map_lookup_elem(&pylium_config, &zero);
		if (!cfg || !cfg->tunnel_ifindex)
			return drop(skb, DROP_NO_TUNNEL_ENDPOINT, DIR_EGRESS, &f);
		struct bpf_tunnel_key key = {
			.remote_ipv4 = bpf_ntohl(dst_info->tunnel_endpoint),
			.tunnel_id = f.src_identity,
			.tunnel_ttl = 64,
		};
		if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
			return drop(skb, DROP_TUNNEL_KEY, DIR_EGRESS, &f);
		return bpf_redirect(cfg->tunnel_ifindex, 0);
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
