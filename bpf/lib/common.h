/* Shared definitions and packet parsing: TC verdicts, identities, directions, and the
 * Ethernet/IPv4/L4 parser every program starts with. */
#ifndef PYLIUM_COMMON_H
#define PYLIUM_COMMON_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <linux/if_packet.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Reserved identities (Cilium's numbers). */
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2
#define IDENTITY_REMOTE_NODE 6
#define IDENTITY_ANY 0 /* policy keys: any remote identity */

/* Traffic direction in metrics and events (Cilium's metrics map: 1 ingress, 2 egress). */
#define DIR_INGRESS 1
#define DIR_EGRESS 2

#define ADDR_FAMILY_IPV4 1

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* What the parser and the lookups learn about a packet; events are built from it. */
struct flow_info {
	__u32 saddr, daddr; /* network byte order */
	__u32 src_identity, dst_identity;
	__u16 sport, dport; /* host byte order; 0 when not TCP/UDP or a non-first fragment */
	__u16 source;	    /* endpoint ID of the sender when it is local */
	__u8 proto;
	__u8 tcp_flags;	    /* the flags byte of the TCP header (FIN 0x01 ... CWR 0x80) */
	__u8 fragment;	    /* a non-first IPv4 fragment: no L4 header */
	__u8 icmp_type;	    /* ICMP: the type (policy keys carry it as the port) */
	/* ICMP errors (destination unreachable, time exceeded, parameter problem): the packet
	 * they quote, so that conntrack can relate them to its connection. */
	__u8 inner_proto;   /* 0: no quoted packet understood */
	__u16 inner_sport, inner_dport; /* host byte order */
	__u32 inner_saddr, inner_daddr; /* network byte order */
};

#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

#include "drop.h"

/* The IPv4 header and ports an ICMP error quotes (at ``inner``), when they are all there. */
static __always_inline void parse_icmp_quote(void *inner, void *data_end, struct flow_info *f)
{
	struct iphdr *ip = inner;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4 ||
	    (ip->frag_off & bpf_htons(IP_OFFSET)))
		return;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP &&
	    ip->protocol != IPPROTO_SCTP && ip->protocol != IPPROTO_ICMP)
		return;
	__be16 *ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return;
	if (ip->protocol != IPPROTO_ICMP) { /* an ICMP quote is tracked without ports */
		f->inner_sport = bpf_ntohs(ports[0]);
		f->inner_dport = bpf_ntohs(ports[1]);
	}
	f->inner_saddr = ip->saddr;
	f->inner_daddr = ip->daddr;
	f->inner_proto = ip->protocol;
}

/* Parses the IPv4 header at ``ip`` and the ports and TCP flags after it into ``f``: 0, or the
 * drop reason for a malformed packet. */
static __always_inline int parse_ipv4(struct iphdr *ip, void *data_end, struct flow_info *f)
{
	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return DROP_INVALID_PACKET;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		f->fragment = 1;
		return 0;
	}
	void *l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return DROP_CT_INVALID_HDR;
		f->sport = bpf_ntohs(tcp->source);
		f->dport = bpf_ntohs(tcp->dest);
		f->tcp_flags = ((__u8 *)tcp)[13];
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return DROP_CT_INVALID_HDR;
		f->sport = bpf_ntohs(udp->source);
		f->dport = bpf_ntohs(udp->dest);
	} else if (ip->protocol == IPPROTO_SCTP) {
		__be16 *ports = l4; /* the common header starts with the ports, as UDP's */
		if ((void *)(ports + 2) > data_end)
			return DROP_CT_INVALID_HDR;
		f->sport = bpf_ntohs(ports[0]);
		f->dport = bpf_ntohs(ports[1]);
	} else if (ip->protocol == IPPROTO_ICMP) {
		__u8 *icmp = l4; /* type, code, checksum: the part every message has */
		if ((void *)(icmp + 4) > data_end)
			return DROP_CT_INVALID_HDR;
		f->icmp_type = icmp[0];
		if (icmp[0] == ICMP_DEST_UNREACH || icmp[0] == ICMP_TIME_EXCEEDED ||
		    icmp[0] == ICMP_PARAMETERPROB)
			parse_icmp_quote(icmp + 8, data_end, f);
	}
	return 0;
}

#endif
