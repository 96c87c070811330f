/* Forward and drop counters (cilium_metrics' shape): reason 0 = forwarded. */
#ifndef PYLIUM_METRICS_H
#define PYLIUM_METRICS_H

#include "common.h"

struct metrics_key {
	__u8 reason;
	__u8 dir;
	__u16 line;
	__u8 file;
	__u8 pad[3];
};

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(max_entries, 1024);
} pylium_metrics SEC(".maps");

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

#endif
