/* Socket-level load balancing (socket-LB), as upstream's bpf_sock.c: cgroup v2 hooks that
 * translate a service frontend into one of its backends once per connection, at connect()
 * (TCP, connected UDP) or per datagram at sendmsg() (unconnected UDP), so no packet of the
 * connection needs NAT afterwards. The reverse hooks make the socket show the frontend:
 * recvmsg() (the source address of a UDP datagram) and getpeername().
 *
 *   cil_sock4_connect      cgroup/connect4
 *   cil_sock4_sendmsg      cgroup/sendmsg4
 *   cil_sock4_recvmsg      cgroup/recvmsg4
 *   cil_sock4_getpeername  cgroup/getpeername4
 *
 * They run for every process in the cgroup subtree they are attached to, whatever its network
 * namespace (the agent attaches them at its node's subtree). Selection: a slot 1..count of the
 * service (the active backends); TCP picks at random (bpf_get_prandom_u32), UDP by the socket
 * cookie, so that a socket's datagrams keep their backend (upstream's sock_select_slot). A
 * service with a Maglev table (lib/lb.h) takes the table's entry for that same number
 * instead (a socket has no source port yet at connect(), so no 5-tuple to hash). A service
 * with ClientIP session affinity sends every socket of a network namespace (the client pod)
 * to the backend it chose last, within the timeout, as upstream's socket-LB does. A
 * service without backends refuses: connect()/sendmsg() fail with EHOSTUNREACH (upstream sets
 * it with bpf_set_retval; without it a refusal would read EPERM). ExternalIPs and HostPort
 * frontends are translated only for this node's own addresses (and HostPort for loopback);
 * others are left to the per-packet path, as upstream's sock4_skip_xlate. NodePort and
 * HostPort from pods: a destination that is no frontend itself but a node's address is
 * looked up as the surrogate 0.0.0.0:<port> frontend, as upstream's sock4_wildcard_lookup:
 * in node-port-range a NodePort on any node (ipcache host or remote-node), outside it a
 * HostPort of this node (host); the socket keeps showing the address it connected to. Each translation records (socket cookie, backend) -> frontend in
 * pylium_lb4_reverse_sk (cilium_lb4_reverse_sk), which the reverse hooks read.
 */
#include "lib/common.h"
#include "lib/ipcache.h"
#include "lib/lb.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1

#define EHOSTUNREACH 113
#define ENOMEM 12

#define SOCK_REV_MAP_MAX 262144 /* bpf-sock-rev-map-max */

struct ipv4_revnat_tuple {
	__u64 cookie;	/* socket cookie */
	__be32 address; /* backend */
	__be16 port;
	__u16 pad;
};

struct ipv4_revnat_entry {
	__be32 address; /* frontend */
	__be16 port;
	__u16 rev_nat_index;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_revnat_tuple);
	__type(value, struct ipv4_revnat_entry);
	__uint(max_entries, SOCK_REV_MAP_MAX);
} pylium_lb4_reverse_sk SEC(".maps");

/* node-port-range (load-time constants). */
volatile const __u16 node_port_min = 30000;
volatile const __u16 node_port_max = 32767;

static __always_inline bool sock4_is_loopback(__be32 address)
{
	return (bpf_ntohl(address) >> 24) == 127;
}

/* The surrogate 0.0.0.0:<port> frontend for a connection to a node's address, as upstream's
 * sock4_wildcard_lookup_full: a port in node-port-range is a NodePort on any node (host or
 * remote-node), any other port a HostPort of this node only (host). */
static __always_inline struct lb4_service *sock4_wildcard_lookup(struct lb4_key *key)
{
	__u16 port = bpf_ntohs(key->dport);
	bool node_port = port >= node_port_min && port <= node_port_max;
	struct remote_endpoint_info *info;
	struct lb4_service *svc;

	info = ipcache_lookup4(key->address);
	if (!info || (info->sec_identity != IDENTITY_HOST &&
		      (!node_port || info->sec_identity != IDENTITY_REMOTE_NODE)))
		return NULL;
	key->address = 0;
	svc = lb4_lookup_service(key);
	if (svc && !(lb4_svc_flags(svc) & (node_port ? SVC_FLAG_NODEPORT : SVC_FLAG_HOSTPORT)))
		return NULL;
	return svc;
}

/* ExternalIPs and HostPort frontends are translated here only when the address connected
 * to is this node's (or loopback); elsewhere the per-packet path has them (sock4_skip_xlate). */
static __always_inline bool sock4_skip_xlate(const struct lb4_service *svc, __be32 address)
{
	struct remote_endpoint_info *info;

	if (!(lb4_svc_flags(svc) & (SVC_FLAG_EXTERNAL_IPS | SVC_FLAG_HOSTPORT)))
		return false;
	if ((lb4_svc_flags(svc) & SVC_FLAG_HOSTPORT) && sock4_is_loopback(address))
		return false;
	info = ipcache_lookup4(address);
	return !info || info->sec_identity != IDENTITY_HOST;
}

static __always_inline __u32 sock_select_slot(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP ? bpf_get_prandom_u32() :
					      (__u32)bpf_get_socket_cookie(ctx);
}

/* Frontend -> backend in ctx: 0 (translated, or not a service), or a negative errno. */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct lb4_key key = {
		.address = ctx->user_ip4,
		.dport = (__be16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct lb4_service *svc;
	struct lb4_backend *backend;
	__u32 backend_id = 0;

	if (key.proto != IPPROTO_TCP && key.proto != IPPROTO_UDP)
		return 0;
	__be32 orig_address = key.address;
	svc = lb4_lookup_service(&key);
	if (!svc)
		svc = sock4_wildcard_lookup(&key);
	if (!svc)
		return 0;
	if (sock4_skip_xlate(svc, orig_address))
		return 0;
	if (!svc->count)
		return -EHOSTUNREACH;
	bool affinity = lb4_svc_flags(svc) & SVC_FLAG_AFFINITY;
	struct lb4_affinity_key akey = {
		.client_id.client_cookie = affinity ? bpf_get_netns_cookie(ctx) : 0,
		.rev_nat_id = svc->rev_nat_index,
		.netns = 1,
	};
	backend = NULL;
	if (affinity) {
		backend_id = lb4_affinity_backend_id(&akey,
						     svc->backend_id & LB_AFFINITY_TIMEOUT_MASK);
		if (backend_id)
			backend = bpf_map_lookup_elem(&pylium_lb4_backends_v3, &backend_id);
	}
	if (!backend) {
		__u32 hash = sock_select_slot(ctx);
		backend_id = lb4_maglev_backend_id(svc->rev_nat_index, hash);
		if (backend_id) {
			backend = bpf_map_lookup_elem(&pylium_lb4_backends_v3, &backend_id);
		} else {
			__u16 slot = (__u16)(hash % svc->count) + 1;
			backend = lb4_slot_backend(&key, slot, &backend_id);
		}
		if (!backend)
			return -EHOSTUNREACH;
		if (affinity)
			lb4_affinity_update(&akey, backend_id);
	}

	struct ipv4_revnat_tuple rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = backend->address,
		.port = backend->port,
	};
	struct ipv4_revnat_entry rval = {
		.address = orig_address,
		.port = key.dport,
		.rev_nat_index = svc->rev_nat_index,
	};
	struct ipv4_revnat_entry *old = bpf_map_lookup_elem(&pylium_lb4_reverse_sk, &rkey);
	if (!old || old->address != rval.address || old->port != rval.port ||
	    old->rev_nat_index != rval.rev_nat_index) {
		if (bpf_map_update_elem(&pylium_lb4_reverse_sk, &rkey, &rval, BPF_ANY) < 0)
			return -ENOMEM;
	}
	ctx->user_ip4 = backend->address;
	ctx->user_port = backend->port;
	return 0;
}

/* Backend -> frontend in ctx, when this socket was translated to that backend. */
static __always_inline void sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct ipv4_revnat_tuple rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
	};
	struct ipv4_revnat_entry *rval = bpf_map_lookup_elem(&pylium_lb4_reverse_sk, &rkey);

	if (!rval)
		return;
	/* The service may be gone or renumbered since: then the backend address stays. (A
	 * surrogate NodePort frontend, 0.0.0.0, stands for the node address connected to.) */
	struct lb4_reverse_nat *rev = bpf_map_lookup_elem(&pylium_lb4_reverse_nat,
							  &rval->rev_nat_index);
	if (!rev || (rev->address && rev->address != rval->address) || rev->port != rval->port) {
		bpf_map_delete_elem(&pylium_lb4_reverse_sk, &rkey);
		return;
	}
	ctx->user_ip4 = rval->address;
	ctx->user_port = rval->port;
}

static __always_inline int sock4_verdict(int err)
{
	if (err == -EHOSTUNREACH || err == -ENOMEM) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int cil_sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx));
}

SEC("cgroup/sendmsg4")
int cil_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx));
}

SEC("cgroup/recvmsg4")
int cil_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int cil_sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

char _license[] SEC("license") = "GPL";
