/* Trace, drop and policy-verdict events to user space through a ring buffer (read by
 * Hubble), and the drop path shared by every program: count, emit, TC_ACT_SHOT. */
#ifndef PYLIUM_EVENTS_H
#define PYLIUM_EVENTS_H

#include "common.h"
#include "metrics.h"

/* Cilium's monitor message types. */
#define EVENT_DROP 1
#define EVENT_TRACE 4
#define EVENT_POLICY_VERDICT 5

/* flow_event.flags */
#define EVENT_F_AUDITED 1 /* policy verdict: a denial let through by policy audit mode */

/* Trace observation points (Cilium's TRACE_* numbers in bpf/lib/trace.h). */
#define TRACE_TO_LXC 0
#define TRACE_TO_HOST 2
#define TRACE_TO_STACK 3
#define TRACE_TO_OVERLAY 4
#define TRACE_FROM_LXC 5
#define TRACE_FROM_OVERLAY 9
#define TRACE_TO_NETWORK 11

struct flow_event {
	__u64 ts;	   /* bpf_ktime_get_ns() */
	__u8 type;	   /* EVENT_DROP or EVENT_TRACE */
	__u8 reason;	   /* drop: the drop reason; trace: the conntrack state (CT_NEW ...);
			    * policy verdict: 0 allowed, else the drop reason (133, 181) */
	__u8 obs_point;	   /* trace: where the packet went (TRACE_TO_LXC ...); drop: 0;
			    * policy verdict: the match type (POLICY_MATCH_*) */
	__u8 dir;	   /* DIR_INGRESS or DIR_EGRESS */
	__u8 proto;
	__u8 tcp_flags;
	__u16 source;	   /* endpoint ID of a local sender, 0 otherwise */
	__u32 ifindex;	   /* the device the program runs on */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 saddr;	   /* network byte order */
	__u32 daddr;
	__u16 sport;	   /* host byte order */
	__u16 dport;
	__u32 len;	   /* skb->len */
	__u32 flags;	   /* EVENT_F_* */
};

/* Ring buffers carry no type, so this unused object puts struct flow_event into the BTF
 * that the Python layout check reads; libbpf skips the section. */
struct flow_event __pylium_btf_flow_event __attribute__((section(".pylium.btf"), used));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} pylium_events SEC(".maps");

/* Counts events lost because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} pylium_events_lost SEC(".maps");

static __always_inline void emit_flags(struct __sk_buff *skb, __u8 type, __u8 reason,
				       __u8 obs_point, __u8 dir, const struct flow_info *f,
				       __u32 flags)
{
	struct flow_event *e = bpf_ringbuf_reserve(&pylium_events, sizeof(*e), 0);

	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&pylium_events_lost, &zero);
		if (lost)
			*lost += 1;
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->type = type;
	e->reason = reason;
	e->obs_point = obs_point;
	e->dir = dir;
	e->proto = f->proto;
	e->tcp_flags = f->tcp_flags;
	e->source = f->source;
	e->ifindex = skb->ifindex;
	e->src_identity = f->src_identity;
	e->dst_identity = f->dst_identity;
	e->saddr = f->saddr;
	e->daddr = f->daddr;
	e->sport = f->sport;
	e->dport = f->dport;
	e->len = skb->len;
	e->flags = flags;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void emit(struct __sk_buff *skb, __u8 type, __u8 reason, __u8 obs_point,
				 __u8 dir, const struct flow_info *f)
{
	emit_flags(skb, type, reason, obs_point, dir, f, 0);
}

/* A forwarded packet: counted always, traced when ``notify`` (monitor aggregation). */
static __always_inline void forward(struct __sk_buff *skb, __u8 obs_point, __u8 ct_state,
				    __u8 dir, const struct flow_info *f, bool notify)
{
	count(REASON_FORWARDED, dir, skb->len);
	if (notify)
		emit(skb, EVENT_TRACE, ct_state, obs_point, dir, f);
}

static __always_inline int drop(struct __sk_buff *skb, __u8 reason, __u8 dir,
				const struct flow_info *f)
{
	count(reason, dir, skb->len);
	emit(skb, EVENT_DROP, reason, 0, dir, f);
	return TC_ACT_SHOT;
}

#endif
