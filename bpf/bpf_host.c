/* The host's programs (upstream's bpf_host.c).
 *
 * cil_from_host, on cilium_host's tc egress: what the node's own stack sends through
 * cilium_host. In tunnel mode the agent routes other nodes' pod CIDRs there
 * (``<cidr> via <router IP> dev cilium_host src <router IP>``), so that the host reaches pods
 * on other nodes: the destination's ipcache entry names its node, and the packet goes into
 * the VXLAN tunnel with the HOST identity (1) in the VNI (the receiving from-overlay makes it
 * REMOTE_NODE, 6). Replies come back through the tunnel to the router IP (each node's
 * CiliumInternalIP is in every ipcache with its node as tunnel endpoint) and from-overlay hands
 * them to the stack. Anything without a tunnel endpoint passes to cilium_net unchanged.
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/ipcache.h"
#include "lib/events.h"
#include "lib/encap.h"

SEC("tc")
int cil_from_host(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = { .src_identity = IDENTITY_HOST };
	bool notify = monitor_aggregation == MONITOR_AGGREGATION_NONE;
	int ret;

	if ((void *)(eth + 1) > data_end)
		return drop(skb, DROP_INVALID_PACKET, DIR_EGRESS, &f);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK; /* ARP for the router IP, IPv6 link-local chatter */
	ret = parse_ipv4((void *)(eth + 1), data_end, &f);
	if (ret)
		return drop(skb, ret, DIR_EGRESS, &f);

	struct remote_endpoint_info *info = ipcache_lookup4(f.daddr);
	f.dst_identity = info ? info->sec_identity : IDENTITY_WORLD;
	if (!info || !info->tunnel_endpoint) {
		forward(skb, TRACE_TO_STACK, 0, DIR_EGRESS, &f, notify);
		return TC_ACT_OK;
	}
	/* Not tracked: the host's own connections need no conntrack entry on this node (the
	 * receiving pod's node records the connection it accepts). */
	return encap_and_redirect(skb, info->tunnel_endpoint, &f, DIR_EGRESS, 0, notify);
}

char _license[] SEC("license") = "GPL";
