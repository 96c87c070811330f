/* BPF host routing (upstream's lib/fib.h, IPv4): routing a packet as the node's stack would,
 * without the stack.
 *
 * fib_redirect4 asks the kernel's FIB (bpf_fib_lookup, routing rules included) where the
 * destination is, decrements the TTL as a router does and sends the packet out of the FIB's
 * device: with the MACs the FIB resolved (bpf_redirect), or through bpf_redirect_neigh when the
 * neighbour is not resolved yet. Whatever the FIB will not forward (a local address, no route,
 * a packet larger than the device's MTU, a TTL about to expire, forwarding disabled on the
 * ingress device) goes to the stack, which answers as a router would (ICMP); upstream drops
 * most of these with DROP_NO_FIB instead. The MTU is checked by the kernel against the skb
 * (tot_len 0), so GSO packets pass.
 *
 * Pitfall (datapath-mechanisms §2): bpf_fib_lookup answers FWD_DISABLED unless the ingress
 * device has net.ipv4.conf.<dev>.forwarding=1; the agent's ip_forward=1 gives every device
 * that. */
#ifndef PYLIUM_FIB_H
#define PYLIUM_FIB_H

#include "common.h"
#include "config.h"
#include "events.h"

#define FIB_IP_TTL_OFF (ETH_HLEN + 8)
#define FIB_IP_CSUM_OFF (ETH_HLEN + 10)
#define FIB_TO_STACK -1 /* ipv4_dec_ttl: the TTL expires here; the stack answers */

/* Decrements the IPv4 TTL with the header checksum: 0, FIB_TO_STACK when the TTL is 1 or 0,
 * or DROP_WRITE_ERROR. */
static __always_inline int ipv4_dec_ttl(struct __sk_buff *skb)
{
	__u8 ttl;

	if (bpf_skb_load_bytes(skb, FIB_IP_TTL_OFF, &ttl, 1) < 0)
		return DROP_WRITE_ERROR;
	if (ttl <= 1)
		return FIB_TO_STACK;
	/* The TTL is the high byte of the 16-bit word (TTL, protocol) the checksum sums. */
	if (bpf_l3_csum_replace(skb, FIB_IP_CSUM_OFF, bpf_htons((__u16)ttl << 8),
				bpf_htons((__u16)(ttl - 1) << 8), 2) < 0)
		return DROP_WRITE_ERROR;
	ttl--;
	if (bpf_skb_store_bytes(skb, FIB_IP_TTL_OFF, &ttl, 1, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* Would iptables-style masquerading (nftables in the stack) rewrite a pod's packet to
 * ``daddr``? Then BPF host routing must leave it to the stack. */
static __always_inline bool host_routing_masqueraded(__be32 daddr)
{
	return enable_masquerade_ipv4 &&
	       (daddr & ipv4_snat_exclusion_dst_mask) != ipv4_snat_exclusion_dst_cidr;
}

/* Out of the device the FIB names for the packet's destination (traced TO_NETWORK), or to
 * the stack (traced TO_STACK, TC_ACT_OK) when the FIB will not forward it. */
static __always_inline int fib_redirect4(struct __sk_buff *skb, struct flow_info *f, __u8 dir,
					 int ct_state, bool notify)
{
	struct bpf_fib_lookup p = {
		.family = 2, /* AF_INET */
		.ipv4_src = f->saddr,
		.ipv4_dst = f->daddr,
		.ifindex = skb->ingress_ifindex,
	};
	long rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	int ret;

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		goto to_stack;
	ret = ipv4_dec_ttl(skb);
	if (ret == FIB_TO_STACK)
		goto to_stack;
	if (ret)
		return drop(skb, ret, dir, f);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, p.dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, p.smac, ETH_ALEN, 0) < 0)
			return drop(skb, DROP_WRITE_ERROR, dir, f);
		forward(skb, TRACE_TO_NETWORK, ct_state, dir, f, notify);
		return bpf_redirect(p.ifindex, 0);
	}
	forward(skb, TRACE_TO_NETWORK, ct_state, dir, f, notify);
	return bpf_redirect_neigh(p.ifindex, NULL, 0, 0);
to_stack:
	forward(skb, TRACE_TO_STACK, ct_state, dir, f, notify);
	return TC_ACT_OK;
}

#endif
