/* Test build of bpf_overlay.c for BPF_PROG_TEST_RUN, which cannot attach tunnel metadata to a
 * packet: bpf_skb_get_tunnel_key is replaced (as upstream's bpf/tests mock helpers) by one
 * that reads the tunnel ID (the sender's identity) from skb->mark, which test runs may set,
 * and fails when the mark is 0 (no tunnel metadata). Everything else is the real program. */
#include "../lib/common.h"

static __always_inline long mock_skb_get_tunnel_key(struct __sk_buff *skb,
						    struct bpf_tunnel_key *key, __u32 size,
						    __u64 flags)
{
	if (!skb->mark)
		return -22;
	key->tunnel_id = skb->mark;
	key->remote_ipv4 = 0xc0a8010c; /* 192.168.1.12, host byte order as the helper gives */
	return 0;
}

#define bpf_skb_get_tunnel_key mock_skb_get_tunnel_key
#include "../bpf_overlay.c"
