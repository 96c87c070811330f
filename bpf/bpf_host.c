/* The host's programs (upstream's bpf_host.c).
 *
 * cil_from_host, on cilium_host's tc egress: what the node's own stack sends through
 * cilium_host. In tunnel mode the agent routes other nodes' pod CIDRs there
 * (``<cidr> via <router IP> dev cilium_host src <router IP>``), so that the host reaches pods
 * on other nodes: the destination's ipcache entry names its node, and the packet goes into
 * the VXLAN tunnel with the HOST identity (1) in the VNI (the receiving from-overlay makes it
 * REMOTE_NODE, 6). Replies come back through the tunnel to the router IP (each node's
 * CiliumInternalIP is in every ipcache with its node as tunnel endpoint) and from-overlay hands
 * them to the stack. Anything without a tunnel endpoint passes to cilium_net unchanged. With
 * the host firewall on, the host's egress policy judges what it sends this way.
 *
 * cil_from_netdev and cil_to_netdev, on the underlay device's tc ingress and egress, attached
 * with kube-proxy replacement, the host firewall or BPF host routing on. With BPF host routing
 * (enable_host_routing), cil_from_netdev delivers packets for local endpoints straight into
 * them after the checks to-container would make (host_routing_to_endpoint). With kube-proxy replacement
 * (enable_nodeport), cil_from_netdev first serves NodePort, LoadBalancer and ExternalIPs
 * frontends for clients outside the node and the replies of remote backends to what it SNATed
 * (lib/nodeport.h, lib/nat.h); service traffic is not judged by the host firewall. Then, with
 * the host firewall on (enable-host-firewall): the host endpoint's ingress policy
 * for packets to this node's own addresses (the source's identity from the ipcache: remote-node
 * for other nodes, a pod's on other nodes in native routing, world otherwise) and its egress
 * policy for packets from them, tracked so that replies pass. Everything else (pods' traffic
 * forwarded by the node, ARP) passes untouched. As upstream, the tunnel's own UDP between
 * nodes and the health checks are host traffic like any other: a host policy must allow them
 * (fromEntities remote-node, health), or the cluster loses its tunnel.
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/ipcache.h"
#include "lib/events.h"
#include "lib/encap.h"
#include "lib/host_firewall.h"
#include "lib/nodeport.h"
#include "lib/fib.h"

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
	int state;
	ret = host_policy_egress(skb, &f, &state);
	if (ret)
		return drop(skb, ret, DIR_EGRESS, &f);
	return encap_and_redirect(skb, info->tunnel_endpoint, &f, DIR_EGRESS, state, notify);
}

/* The identity of one of this node's addresses is HOST in the ipcache. */
static __always_inline bool is_host_address(__u32 ip4)
{
	struct remote_endpoint_info *info = ipcache_lookup4(ip4);

	return info && info->sec_identity == IDENTITY_HOST;
}

/* BPF host routing: a packet from the network for a local endpoint, judged as to-container
 * judges what the stack routes to the pod (source identity from the ipcache, conntrack, the
 * endpoint's ingress policy), its TTL decremented as the stack's forwarding would, then
 * straight into the pod's namespace. A TTL about to expire goes to the stack, which answers. */
static __always_inline int host_routing_to_endpoint(struct __sk_buff *skb, struct flow_info *f,
						    const struct endpoint_info *ep)
{
	struct remote_endpoint_info *src = ipcache_lookup4(f->saddr);
	int ret;

	f->src_identity = src ? src->sec_identity : IDENTITY_WORLD;
	ret = ipv4_dec_ttl(skb);
	if (ret == FIB_TO_STACK)
		return TC_ACT_OK;
	if (ret)
		return drop(skb, ret, DIR_INGRESS, f);
	return ingress_deliver_local(skb, f, ep);
}

SEC("tc")
int cil_from_netdev(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = { .dst_identity = IDENTITY_HOST };
	int state, ret;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK; /* ARP, IPv6: not judged (IPv4 only) */
	if (parse_ipv4((void *)(eth + 1), data_end, &f))
		return TC_ACT_OK; /* malformed: the kernel drops it */
	ret = nodeport_lb4(skb, &f);
	if (ret != NODEPORT_CONTINUE)
		return ret;
	if (enable_host_routing) {
		struct endpoint_info *ep = endpoint_lookup4(f.daddr);
		if (ep && ep->ifindex)
			return host_routing_to_endpoint(skb, &f, ep);
	}
	f.src_identity = 0;
	f.dst_identity = IDENTITY_HOST;
	if (!is_host_address(f.daddr))
		return TC_ACT_OK; /* forwarded: pods' own programs judge it */
	struct remote_endpoint_info *src = ipcache_lookup4(f.saddr);
	f.src_identity = src ? src->sec_identity : IDENTITY_WORLD;
	ret = host_policy_ingress(skb, &f, &state);
	if (ret)
		return drop(skb, ret, DIR_INGRESS, &f);
	forward(skb, TRACE_TO_HOST, state, DIR_INGRESS, &f,
		monitor_aggregation == MONITOR_AGGREGATION_NONE || state == CT_NEW);
	return TC_ACT_OK;
}

SEC("tc")
int cil_to_netdev(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct flow_info f = { .src_identity = IDENTITY_HOST };
	int state, ret;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (parse_ipv4((void *)(eth + 1), data_end, &f))
		return TC_ACT_OK;
	/* From the host's addresses: the host's own traffic, and (a limit of judging after
	 * iptables) pods' traffic masqueraded to the node's address. */
	if (!is_host_address(f.saddr))
		return TC_ACT_OK;
	struct remote_endpoint_info *dst = ipcache_lookup4(f.daddr);
	f.dst_identity = dst ? dst->sec_identity : IDENTITY_WORLD;
	ret = host_policy_egress(skb, &f, &state);
	if (ret)
		return drop(skb, ret, DIR_EGRESS, &f);
	forward(skb, TRACE_TO_NETWORK, state, DIR_EGRESS, &f,
		monitor_aggregation == MONITOR_AGGREGATION_NONE || state == CT_NEW);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
