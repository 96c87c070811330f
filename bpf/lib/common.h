/* Shared definitions: TC verdicts, ethernet/IP constants, identities, drop reasons. */
#ifndef PYLIUM_COMMON_H
#define PYLIUM_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Reserved identities (Cilium's numbers). */
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2

/* Drop reasons (Cilium's numbers, see pkg/monitor/api/drop.go). */
#define REASON_FORWARDED 0
#define DROP_INVALID_SOURCE_IP 132
#define DROP_INVALID_PACKET 134
#define DROP_UNSUPPORTED_L3 139
#define DROP_WRITE_ERROR 141
#define DROP_NO_TUNNEL_ENDPOINT 160
#define DROP_TUNNEL_KEY 147

/* Traffic direction in metrics and events (Cilium's metrics map: 1 ingress, 2 egress). */
#define DIR_INGRESS 1
#define DIR_EGRESS 2

#define ADDR_FAMILY_IPV4 1

#endif
