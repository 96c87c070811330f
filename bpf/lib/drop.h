/* Drop reasons, Cilium's numbers (pkg/monitor/api/drop.go); 0 means forwarded. */
#ifndef PYLIUM_DROP_H
#define PYLIUM_DROP_H

#define REASON_FORWARDED 0
#define DROP_INVALID_SOURCE_IP 132
#define DROP_POLICY 133 /* no allow entry matched (default deny) */
#define DROP_INVALID_PACKET 134
#define DROP_CT_INVALID_HDR 135
#define DROP_UNSUPPORTED_L3 139
#define DROP_WRITE_ERROR 141
#define DROP_TUNNEL_KEY 147
#define DROP_CT_CREATE_FAILED 155
#define DROP_NO_SERVICE 158 /* a service frontend without a backend */
#define DROP_NO_TUNNEL_ENDPOINT 160
#define DROP_NAT_NO_MAPPING 167 /* no free NodePort SNAT port */
#define DROP_POLICY_DENY 181 /* a deny entry matched */

#endif
