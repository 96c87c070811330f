#!/usr/bin/env bash
# The main job (`make demo`): bring up a 2-node lab, show what it runs, tear it down.
# Grows with the project: each feature that lands adds its step here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYLIUM=.venv/bin/pylium
export PYLIUM_HOME=${PYLIUM_HOME:-/run/pylium}
LAB=demo

if [ -e "$PYLIUM_HOME/labs/$LAB/lab.json" ]; then
  # Not ours to tear down: the trap below would remove a lab this run did not build.
  echo "a lab named $LAB already exists: run '$PYLIUM lab down --name $LAB' first" >&2
  exit 1
fi
cleanup() { "$PYLIUM" lab down --name "$LAB" --force >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Effective configuration (Helm values -> cilium-config keys, with sources)"
"$PYLIUM" config view -f examples/cluster-pool-values.yaml --set loadBalancer.algorithm=maglev \
  | grep -E '^(KEY|ipam|cluster-pool-ipv4-cidr|cluster-pool-ipv4-mask-size|routing-mode|tunnel-protocol|bpf-lb-algorithm) '

step "pylium lab up --nodes 2 (fabric bridge, node namespaces, store, agents, operator)"
"$PYLIUM" lab up --nodes 2 --name "$LAB" -f examples/cluster-pool-values.yaml

step "pylium lab status"
"$PYLIUM" lab status --name "$LAB"

step "Nodes the agents registered"
"$PYLIUM" get nodes
"$PYLIUM" get ciliumnodes -o wide

step "IPAM: the operator gave each node a pod CIDR; n1's agent hands out pod IPs"
for _ in $(seq 50); do "$PYLIUM" ipam status -o json | grep -q '"cidrs": \[\]' || break; sleep 0.2; done
"$PYLIUM" ipam status
for i in $(seq 25); do  # the agent picks its CIDR up within a moment
  "$PYLIUM" ipam allocate --node n1 --owner default/web && break
  [ "$i" -lt 25 ] || exit 1; sleep 0.2
done
"$PYLIUM" identity allocate --node n1 --label k8s:app=web --label k8s:io.kubernetes.pod.namespace=default
"$PYLIUM" identity list | tail -3

step "A pod on n1 and one on n2, plumbed by pylium-cni; TCP between them through eBPF and VXLAN"
"$PYLIUM" lab pod run client --node n1 --labels app=client --name "$LAB"
"$PYLIUM" lab pod run server --node n2 --labels app=server --name "$LAB"
sleep 1.5  # n1's agent learns the server's endpoint from the store (ipcache)
"$PYLIUM" lab pod list --name "$LAB"
"$PYLIUM" get ciliumendpoints -o wide
podns() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pods'][sys.argv[2]][sys.argv[3]])" \
  "$PYLIUM_HOME/labs/$LAB/lab.json" "$1" "$2"; }
SERVER_IP=$(podns default/server ip)
nsenter --net="/run/netns/$(podns default/server netns)" python3 -c '
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(); s.settimeout(20); c, a = s.accept()
print("server: got", c.recv(100), "from", a[0]); c.sendall(b"hello from server"); c.close()' &
SERVER_PID=$!
sleep 0.5
nsenter --net="/run/netns/$(podns default/client netns)" python3 -c "
import socket; c = socket.create_connection(('$SERVER_IP', 8080), timeout=10)
c.sendall(b'hello from client'); print('client: got', c.recv(100))"
wait "$SERVER_PID"

step "pylium status (as cilium status), status --node n1 (as cilium-dbg status), health"
"$PYLIUM" status --wait --wait-duration 60s
"$PYLIUM" status --node n1 --lab "$LAB"
"$PYLIUM" health --node n1 --lab "$LAB" --probe

step "Policies are validated like CRDs: a bad port is refused, naming the field"
if "$PYLIUM" apply -f examples/bad-port.yaml; then
  echo "expected the bad policy to be refused" >&2; exit 1
fi
"$PYLIUM" apply -f examples/policy.yaml
"$PYLIUM" get cnp -A

step "Policy enforced in eBPF: only app=frontend may reach the server; explained; seen by Hubble"
"$PYLIUM" apply -f - <<'YAML'
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-from-frontend, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
YAML
sleep 0.5
nsenter --net="/run/netns/$(podns default/client netns)" python3 -c "
import socket
try: socket.create_connection(('$SERVER_IP', 8080), timeout=1); print('client: connected?!')
except OSError as e: print('client: no answer (dropped):', type(e).__name__)"
"$PYLIUM" policy explain --from client --to server --port 8080/tcp || true
"$PYLIUM" observe --verdict DROPPED --last 2 --print-policy-names

step "pylium lab down"
"$PYLIUM" lab down --name "$LAB"
trap - EXIT
echo
echo "demo finished: the lab came up, worked and was removed"
