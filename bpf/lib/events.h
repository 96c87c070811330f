/* Trace and drop events to user space through a ring buffer (read by Hubble), and the metrics
 * every verdict updates. */
#ifndef PYLIUM_EVENTS_H
#define PYLIUM_EVENTS_H

#include "maps.h"

/* Cilium's monitor message types. */
#define EVENT_DROP 1
#define EVENT_TRACE 4

struct flow_event {
	__u64 ts;
	__u8 type;
	__u8 reason;
	__u8 dir;
	__u8 proto;
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 len;
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

struct flow_info {
	__u32 saddr, daddr, src_identity, dst_identity;
	__u16 sport, dport;
	__u8 proto;
};

static __always_inline void count(__u8 reason, __u8 dir, __u32 len)
{
	struct metrics_key key = { .reason = reason, .dir = dir };
	struct metrics_value *val = bpf_map_lookup_elem(&pylium_metrics, &key);

	if (val) {
		val->count += 1;
		val->bytes += len;
	} else {
		struct metrics_value init = { .count = 1, .bytes = len };
		bpf_map_update_elem(&pylium_metrics, &key, &init, BPF_NOEXIST);
	}
}

static __always_inline void emit(struct __sk_buff *skb, __u8 type, __u8 reason, __u8 dir,
				 const struct flow_info *f)
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
	e->dir = dir;
	e->proto = f->proto;
	e->ifindex = skb->ifindex;
	e->src_identity = f->src_identity;
	e->dst_identity = f->dst_identity;
	e->saddr = f->saddr;
	e->daddr = f->daddr;
	e->sport = f->sport;
	e->dport = f->dport;
	e->len = skb->len;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int drop(struct __sk_buff *skb, __u8 reason, __u8 dir,
				const struct flow_info *f)
{
	count(reason, dir, skb->len);
	emit(skb, EVENT_DROP, reason, dir, f);
	return TC_ACT_SHOT;
}

#endif
