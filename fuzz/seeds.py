#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: a handful of valid
inputs per target, which the fuzzer mutates from. Run it after changing the
fuzzing world in src/pipeline.rs or the input formats:

    python3 fuzz/seeds.py

Pipeline inputs (src/pipeline.rs): a flags byte, then records of a selector
byte, a 16-bit big-endian length and a frame. Checksums are left zero: the
harness fills them in when flag 2 is set, as every seed here does.
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
ROOT = os.path.dirname(HERE)

# the fuzzing world of src/pipeline.rs
GW_MAC = bytes([0xEE] * 6)
NODE_MAC = bytes.fromhex("0200c0a83201")
GATEWAY_MAC = bytes.fromhex("0200c0a832fe")
BCAST = b"\xff" * 6
NODE = "192.168.50.1"
GATEWAY = "192.168.50.254"
PODS = {1: "10.244.0.2", 2: "10.244.0.3", 3: "10.244.0.4", 4: "10.244.0.5"}
NODE_B, NODE_C, NODE_D = "192.168.50.2", "192.168.60.3", "192.168.50.4"
REMOTE_MAC = bytes.fromhex("020000000100")
OUTSIDE = "192.168.50.100"

# flags: 2 checksums fixed, 4 neighbours resolved, 1 headroom buffers
FLAGS = 2 | 4
# selector bit 3: index into every port (pods 1-4, uplink, host, bridge 10, 11)
ANY = 8
ANY_UPLINK, ANY_HOST, ANY_BRIDGE = ANY | 4, ANY | 5, ANY | 6


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def pod_mac(ip):
    return bytes([0x02, 0x00]) + ip4(ip)


def eth(dst, src, etype, payload):
    return dst + src + struct.pack("!H", etype) + payload


def ipv4(src, dst, proto, payload, ttl=64, df=True, ident=0x1234):
    total = 20 + len(payload)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000 if df else 0,
                       ttl, proto, 0, ip4(src), ip4(dst)) + payload


def udp(sport, dport, data=b"hello"):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def tcp(sport, dport, flags=0x02, seq=1000, ack=0, data=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + data


def icmp_echo(ident=1, seq=1, data=b"ping" * 4):
    return struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ip4(spa), tha, ip4(tpa))


def from_pod(port, dst, proto, payload, **kw):
    src = PODS[port]
    return eth(GW_MAC, pod_mac(src), 0x0800, ipv4(src, dst, proto, payload, **kw))


def from_underlay(src, dst, proto, payload, src_mac=GATEWAY_MAC, **kw):
    return eth(NODE_MAC, src_mac, 0x0800, ipv4(src, dst, proto, payload, **kw))


def vxlan(inner, src=NODE_B, sport=49999):
    v = struct.pack("!BBHI", 0x08, 0, 0, 4096 << 8) + inner
    return from_underlay(src, NODE, 17, udp(sport, 4789, v), src_mac=REMOTE_MAC)


def rec(sel, frame):
    return bytes([sel]) + struct.pack("!H", len(frame)) + frame


def pipeline_input(records, flags=FLAGS):
    return bytes([flags]) + b"".join(rec(s, f) for s, f in records)


# selectors of the pod target: index into pods 1-4
P1, P2, P3, P4 = 0, 1, 2, 3


def pod_seeds():
    big = b"x" * 1460
    return {
        "ping-pod2": [(P1, from_pod(1, PODS[2], 1, icmp_echo()))],
        "db-allowed-and-answer": [
            (P1, from_pod(1, PODS[3], 6, tcp(40000, 5432))),
            (P3, b""),
            (P1 | 0x80, from_pod(1, PODS[3], 6, tcp(40000, 5432, flags=0x10, seq=1001, data=b"q"))),
        ],
        "arp-gateway": [(P1, eth(BCAST, pod_mac(PODS[1]), 0x0806,
                                 arp(1, pod_mac(PODS[1]), PODS[1], b"\0" * 6, "169.254.1.1")))],
        "service-clusterip": [
            (P1, from_pod(1, "10.96.0.10", 6, tcp(41000, 80))),
            (P2 | 0x80, from_pod(2, PODS[1], 6, tcp(8080, 41000, flags=0x12, ack=1001))),
        ],
        "service-dns-affinity": [
            (P4, from_pod(4, "10.96.0.53", 17, udp(5300, 53))),
            (P4 | 0x30, from_pod(4, "10.96.0.53", 17, udp(5301, 53))),
        ],
        "service-refused": [
            (P1, from_pod(1, "10.96.0.99", 6, tcp(42000, 80))),
            (P1 | 0x80, from_pod(1, "10.96.0.99", 17, udp(42001, 80))),
        ],
        "remote-nodes": [
            (P1, from_pod(1, "10.244.1.5", 17, udp(43000, 8080))),
            (P1, from_pod(1, "10.244.2.7", 6, tcp(43001, 80))),
            (P1, from_pod(1, "10.245.0.9", 1, icmp_echo())),
        ],
        "nat-outgoing-and-reply": [
            (P1, from_pod(1, "8.8.4.4", 17, udp(44000, 53))),
            (P2, from_pod(2, "1.1.1.1", 1, icmp_echo(ident=7))),
            # an empty record: the answer to the last frame out (here the
            # ICMP echo, from 1.1.1.1 to whatever port NAT chose)
            (ANY_UPLINK, b""),
            (P1, from_pod(1, "8.8.4.4", 6, tcp(44001, 443))),
            (ANY_UPLINK, b""),
        ],
        "other-worker": [
            (P4, from_pod(4, PODS[3], 6, tcp(45000, 5432))),
            (P4, from_pod(4, "8.8.8.8", 17, udp(45001, 53))),
            (P4, from_pod(4, "1.1.1.1", 6, tcp(45002, 443))),
            (P4, from_pod(4, PODS[1], 17, udp(45003, 9000))),
            (P1 | 0x80, from_pod(1, PODS[4], 17, udp(9000, 45003))),
        ],
        "too-big-for-tunnel": [(P1, from_pod(1, "10.244.1.5", 6, tcp(46000, 80, data=big)))],
        "to-node-and-ttl": [
            (P1, from_pod(1, NODE, 6, tcp(47000, 10250))),
            (P2, from_pod(2, PODS[1], 17, udp(1, 2), ttl=1)),
        ],
        "hairpin": [(P2, from_pod(2, "10.96.0.10", 6, tcp(48000, 80)))],
        "unresolved-next-hop": [(P1, from_pod(1, "9.9.9.9", 17, udp(49000, 53)))],
    }


def uplink_seeds():
    inner = eth(bytes.fromhex("66ee00000001"), bytes.fromhex("66ee00000100"), 0x0800,
                ipv4("10.244.1.5", PODS[1], 17, udp(50000, 8080)))
    ipip = ipv4("10.244.2.7", PODS[2], 6, tcp(50001, 80))
    client = bytes.fromhex("020000000064")
    return {
        "arp-for-node": [(0, eth(BCAST, GATEWAY_MAC, 0x0806,
                                 arp(1, GATEWAY_MAC, GATEWAY, b"\0" * 6, NODE)))],
        "arp-reply-node-b": [(0, eth(NODE_MAC, REMOTE_MAC, 0x0806,
                                     arp(2, REMOTE_MAC, NODE_B, NODE_MAC, NODE)))],
        "vxlan-from-node-b": [(0, vxlan(inner))],
        "ipip-from-node-c": [(0, from_underlay(NODE_C, NODE, 4, ipip))],
        "native-from-node-d": [(0, from_underlay("10.245.0.9", PODS[3], 6, tcp(50002, 5432),
                                                 src_mac=REMOTE_MAC))],
        "nodeport": [
            (0, from_underlay(OUTSIDE, NODE, 6, tcp(51000, 30080), src_mac=client)),
            (0, from_underlay(OUTSIDE, NODE, 6, tcp(51001, 30099), src_mac=client)),
            (0, from_underlay(OUTSIDE, NODE, 6, tcp(51002, 30432), src_mac=client)),
        ],
        "for-the-host": [
            (0, from_underlay(OUTSIDE, NODE, 6, tcp(51003, 22), src_mac=client)),
            (0, eth(bytes.fromhex("020000000077"), client, 0x0800,
                    ipv4(OUTSIDE, "192.168.50.77", 17, udp(1, 2)))),
        ],
        # answers (empty records) to what a pod sent: an ICMP error
        # ("port unreachable", selector bits 4-6 odd) and a reply
        "icmp-error-for-nat": [
            (ANY | 0, from_pod(1, "8.8.4.4", 17, udp(44000, 53))),
            (0x10, b""),
        ],
        "reply-for-nat": [
            (ANY | 1, from_pod(2, "8.8.4.4", 6, tcp(44002, 443))),
            (0x00, b""),
            (ANY | 1 | 0x80, from_pod(2, "8.8.4.4", 6, tcp(44002, 443, flags=0x10, seq=1001))),
        ],
        "frag-needed-for-nat": [
            (ANY | 0, from_pod(1, "8.8.4.4", 17, udp(44003, 53))),
            (0x30, b""),
        ],
    }


def host_seeds():
    host = NODE_MAC
    return {
        "host-arp": [(0, eth(BCAST, host, 0x0806, arp(1, host, NODE, b"\0" * 6, GATEWAY)))],
        "host-out": [(0, eth(GATEWAY_MAC, host, 0x0800, ipv4(NODE, OUTSIDE, 6, tcp(22, 51003, 0x12))))],
        "host-to-pod": [(0, eth(GW_MAC, host, 0x0800, ipv4(NODE, PODS[1], 6, tcp(52000, 8080))))],
        "host-to-db": [(0, eth(GW_MAC, host, 0x0800, ipv4(NODE, PODS[3], 6, tcp(52001, 5432))))],
        "bridge-ports": [
            (ANY_BRIDGE, eth(BCAST, bytes.fromhex("0200000000a0"), 0x88B5, b"\0" * 46)),
            (ANY | 7, eth(bytes.fromhex("0200000000a0"), bytes.fromhex("0200000000a1"), 0x88B5, b"\0" * 46)),
        ],
    }


CONTROL = [
    {"op": "status"},
    {"op": "port-add", "port": {"name": "pod1", "kind": "vhost-server", "path": "/run/vswitch/pod1.sock"}},
    {"op": "port-add", "port": {"name": "tap1", "kind": "tap", "iface": "vtap1"}},
    {"op": "endpoint-set", "endpoint": {"port": "tap1", "mac": "02:00:0a:00:00:01", "ips": ["10.244.0.5"]}},
    {"op": "fdb-flush", "port": "pod1"},
    {"op": "set-aging", "seconds": 60},
    {"op": "pod-attach", "attach": {"container_id": "c1", "ifname": "eth0", "kind": "tap", "pod": "web/a"}},
    {"op": "pod-gc", "network": "podnet", "live": [["c1", "eth0"]]},
    {"op": "flow-log", "after": 3},
    {"op": "apply", "doc": {
        "pools": [{"name": "p", "cidr": "10.244.0.0/16", "block_size": 26, "vxlan_mode": "Always",
                   "nat_outgoing": True}],
        "nodes": [{"name": "node-b", "addresses": ["192.168.50.2/24"], "blocks": ["10.244.1.0/26"]}],
        "endpoints": [],
        "namespaces": [{"name": "web", "labels": {"team": "a"}}],
        "pods": [{"name": "web/a", "namespace": "web", "labels": {"app": "web"}, "ips": ["10.244.0.2"]}],
        "policies": [{"calico": {"metadata": {"name": "in", "namespace": "web"},
                                 "spec": {"selector": "app == 'web'", "types": ["Ingress"],
                                          "ingress": [{"action": "Allow", "protocol": "TCP",
                                                       "destination": {"ports": [80, "http"]}}]}}},
                     {"k8s": {"metadata": {"name": "deny", "namespace": "web"},
                              "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}}],
        "services": [{"name": "web/web", "cluster_ips": ["10.96.0.10"],
                      "ports": [{"protocol": "TCP", "port": 80, "node_port": 30080,
                                 "backends": [{"ip": "10.244.0.2", "port": 8080}]}]}],
    }},
]

CNI_CONF = {"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni"}
CNI_ENV = "CNI_COMMAND={}\nCNI_CONTAINERID=c0ffee\nCNI_NETNS=/var/run/netns/pod1\nCNI_IFNAME=eth0\n" \
          "CNI_ARGS=K8S_POD_NAMESPACE=web;K8S_POD_NAME=a;IgnoreUnknown=1\nCNI_PATH=/opt/cni/bin\n"
IPAM_RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.70.0.9/24", "gateway": "10.70.0.1"}]}


def cni_seeds():
    def inp(cmd, conf, plugin=b""):
        return CNI_ENV.format(cmd).encode() + b"\0" + json.dumps(conf).encode() + b"\0" + plugin

    vhost = dict(CNI_CONF, runtimeConfig={"vswitch": {"interface": "vhost"}},
                 vhostSocketDir="/var/run/vswitch/pods")
    delegated = dict(CNI_CONF, ipam={"type": "host-local", "subnet": "10.70.0.0/24"})
    prev = dict(CNI_CONF, prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/pod1"}],
                                      "ips": [{"address": "10.65.0.2/32", "interface": 0}]})
    return {
        "add": inp("ADD", CNI_CONF),
        "add-0.3.1": inp("ADD", dict(CNI_CONF, cniVersion="0.3.1", pools=["blue"])),
        "add-vhost": inp("ADD", vhost),
        "add-delegated": inp("ADD", delegated, json.dumps(IPAM_RESULT).encode()),
        "check": inp("CHECK", prev),
        "del": inp("DEL", CNI_CONF),
        "gc": inp("GC", dict(CNI_CONF, cniVersion="1.1.0",
                             **{"cni.dev/valid-attachments": [{"containerID": "c0ffee", "ifname": "eth0"}]})),
        "status": inp("STATUS", dict(CNI_CONF, cniVersion="1.1.0")),
        "version": inp("VERSION", CNI_CONF),
    }


MANIFEST_EXTRA = {
    "pool-node-endpoint.yaml": """apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  natOutgoing: true
---
apiVersion: vswitch.dev/v1alpha1
kind: Node
metadata: {name: node-1}
spec: {addresses: [192.168.1.10/24], blocks: [10.244.3.0/26], ipv4VXLANTunnelAddr: 10.244.3.1}
---
apiVersion: vswitch.dev/v1alpha1
kind: Endpoint
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {port: tap1, mac: '02:00:0a:00:00:01', ips: [10.244.0.5], interfaceKind: tap}
""",
    "k8s-policy.yaml": """apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: a}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-in
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions:
      - {key: tier, operator: In, values: [front]}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {team: a}}
          podSelector: {matchLabels: {role: client}}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
      ports:
        - {protocol: TCP, port: 80}
        - {protocol: TCP, port: http}
        - {protocol: UDP, port: 5000, endPort: 5100}
  egress:
    - to: [{podSelector: {}}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata: {name: other}
""",
    "simulate.yaml": """apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  containers:
    - name: c
      ports: [{name: serve-80, containerPort: 80, protocol: TCP}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  ingress:
    - ports: [{port: serve-80}]
""",
}


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    for target, seeds in (("pipeline_pod", pod_seeds()), ("pipeline_uplink", uplink_seeds()),
                          ("pipeline_host", host_seeds())):
        for name, records in seeds.items():
            write(target, name, pipeline_input(records))
        # the same first seed in buffers with headroom, and with nothing resolved
        first = next(iter(seeds.values()))
        write(target, "headroom", pipeline_input(first, FLAGS | 1))
        write(target, "unresolved", pipeline_input(first, 2))
    for i, req in enumerate(CONTROL):
        write("control", f"{i:02}-{req['op']}", json.dumps(req).encode())
    for name, data in cni_seeds().items():
        write("cni", name, data)
    for name in ("calico.yaml", "ipam.yaml"):
        with open(os.path.join(ROOT, "deploy", "examples", name), "rb") as f:
            write("manifest", name, f.read())
    for name, text in MANIFEST_EXTRA.items():
        write("manifest", name, text.encode())


if __name__ == "__main__":
    main()
