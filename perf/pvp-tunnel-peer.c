/* SPDX-License-Identifier: Apache-2.0 OR MIT
 *
 * pvp-tunnel-peer -- the two ends of perf/pvp-tunnel in one DPDK thread: a
 * REMOTE NODE on the switch's uplink-like port (port 0, "U") that sends VXLAN
 * to it, and the LOCAL POD on its pod port (port 1, "P") that answers every
 * packet it gets, so that the switch encapsulates the answer back to the
 * remote node.
 *
 *   pvp-tunnel-peer EAL-ARGS -- --node-ip A --peer-ip B --pod-ip C \
 *       --remote-pod-ip D --vtep-mac M --peer-vtep-mac M2 [options]
 *
 *   peer node (port 0, MAC of port 0, --peer-ip)          switch             pod (port 1)
 *   VXLAN B -> A, VNI, inner D -> C   ==== U ====>  decap, route  ==== P ====>  --pod-ip C
 *   counts VXLAN A -> B, inner C -> D <=== U =====  route, encap  <=== P =====  reply C -> D
 *
 * Frames the peer sends (--len is the INNER frame, without FCS; the outer
 * frame is 50 bytes longer): Ethernet (dst the switch's uplink MAC, learnt
 * from its ARP reply, src port 0's MAC, IPv4), IPv4 (B -> A, TTL 64, DF,
 * valid checksum), UDP (source 49152 + flow, destination 4789, checksum 0),
 * VXLAN (flags I, --vni), inner Ethernet (dst --vtep-mac, the switch's VTEP
 * MAC; src --peer-vtep-mac), inner IPv4 (D -> C, TTL 64, valid checksum),
 * inner UDP (--sport + flow -> --dport, checksum 0), zero payload.  With
 * --flows N the inner UDP source port (and the outer one) cycles through N
 * values, frame by frame.  They are written once into every mbuf of the
 * generator's pool; sending costs an allocation and, with --flows, two
 * 2-byte stores.
 *
 * The pod's answer: Ethernet (dst ee:ee:ee:ee:ee:ee, the gateway MAC of
 * routed pods; src port 1's MAC), IPv4 C -> D (TTL 64), UDP --dport ->
 * --sport (+ flow), --len bytes: the request with addresses and ports
 * swapped.  As every request is of the one flow, the answer is pre-written
 * into the mbufs of a pool of its own and the request is not read (a read
 * is a cache miss on a line the switch's core just wrote); with --flows N the
 * pod reads the request's source port and writes it into the answer.
 *
 * --echo (the io-ceiling, a switch with no logic): the pod sends every frame
 * it gets back as it is, without looking at it, and there is no ARP; the
 * outer destination MAC is --switch-mac.
 *
 * Before traffic (without --echo): an ARP request from the peer (port 0's
 * MAC, --peer-ip) for --node-ip, every 100 ms until the reply comes: the
 * switch learns the peer's MAC from it, and the reply gives the switch's
 * uplink MAC.  Then single frames every millisecond until --prime-replies
 * answers came back on U (the switch may resolve the peer with an ARP
 * request of its own meanwhile: the peer answers ARP requests for
 * --peer-ip at any time).  Then READY, and full speed: each loop offers a
 * burst on U (refused frames are kept and offered again), takes a burst on
 * P and answers it, takes a burst on U and counts it.
 *
 * What comes back on U is told apart by length alone (the mbuf's, no data
 * read): frames of the tunnel length are counted as round trips (u_vx), one
 * in --check-every of them is inspected (u_checked): u_ok = VXLAN from
 * --node-ip to --peer-ip to port 0's MAC, UDP 4789, --vni, valid outer and
 * inner IPv4 checksums, inner C -> D, UDP --dport -> the flows' ports (with
 * --echo: the frame exactly as the peer sent it); u_routed = of those, inner
 * TTL 63 and inner MACs --vtep-mac -> --peer-vtep-mac (a router's rewrite).
 * Other lengths are read: ARP (answered, or the switch's reply), else
 * u_other.  On P, one in --check-every frames is inspected too: p_ok = IPv4
 * D -> C to --dport, valid checksum; p_routed = TTL 63, source MAC the
 * gateway's.
 *
 * Output (stdout, line-buffered):
 *   ARP switch_mac=..                                  the node answered
 *   READY peer_mac=.. pod_mac=.. switch_mac=..         primed, full speed
 *   STATS tsc=T hz=H u_tx=.. u_refused=.. u_full=.. loops=.. u_rx=.. u_vx=.. \
 *         u_checked=.. u_ok=.. u_routed=.. u_other=.. arp_rx=.. arp_answered=.. \
 *         p_rx=.. p_tx=.. p_drop=.. p_checked=.. p_ok=.. p_routed=.. p_other=..
 *                                                     on SIGUSR1 and at exit
 * p_drop: answers the switch's P ring refused (dropped, not retried).
 * SIGINT/SIGTERM end it.
 *
 * Build: cc -O2 $(pkg-config --cflags libdpdk) pvp-tunnel-peer.c $(pkg-config --libs libdpdk)
 * (perf/pvp-tunnel does it in its work dir).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define BURST 32
#define ETH 14
#define OUTER 50 /* outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 */
/* offsets in the inner (pod) frame */
#define I_IP ETH
#define I_TTL (I_IP + 8)
#define I_SRC (I_IP + 12)
#define I_DST (I_IP + 16)
#define I_SPORT (I_IP + 20)
#define I_DPORT (I_IP + 22)
#define I_HDRS (I_IP + 28)
/* offsets in the outer (tunnel) frame */
#define O_IP ETH
#define O_SPORT (O_IP + 20)
#define O_VX (O_IP + 28)
#define VXLAN_PORT 4789
#define SRC_PORT_MIN 49152
#define ARP_LEN 42

static volatile sig_atomic_t quit;
static volatile sig_atomic_t stats_req;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		stats_req = 1;
	else
		quit = 1;
}

struct opts {
	uint32_t node_ip, peer_ip, pod_ip, rpod_ip; /* network order */
	struct rte_ether_addr vtep_mac, peer_vtep_mac, switch_mac;
	int have_switch_mac;
	uint32_t vni;
	uint16_t sport, dport;
	uint32_t flows;
	uint32_t len; /* inner frame */
	uint32_t mbufs;
	uint32_t link_timeout;
	uint32_t check_every;
	uint32_t prime_replies;
	int echo;
};

struct counters {
	uint64_t u_tx, u_refused, u_full, loops, u_rx, u_vx, u_checked, u_ok, u_routed, u_other,
		arp_rx, arp_answered, p_rx, p_tx, p_drop, p_checked, p_ok, p_routed, p_other;
};

static struct opts o = {
	.vni = 4096, .sport = 1024, .dport = 5001, .flows = 1, .len = 64, .mbufs = 8191,
	.link_timeout = 30, .check_every = 1, .prime_replies = 8,
};
static struct counters c;
static struct rte_ether_addr peer_mac, pod_mac;
static uint8_t gen_frame[RTE_MBUF_DEFAULT_DATAROOM];
static uint8_t reply_frame[RTE_MBUF_DEFAULT_DATAROOM];
static const struct rte_ether_addr gw_mac = {{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}};
static const struct rte_ether_addr bcast = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
static const uint16_t U = 0, P = 1;

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s EAL-ARGS -- --node-ip A --peer-ip B --pod-ip C --remote-pod-ip D\n"
		"       --vtep-mac MAC --peer-vtep-mac MAC [--vni N] [--sport S] [--dport D]\n"
		"       [--flows N] [--len BYTES] [--echo] [--switch-mac MAC] [--mbufs N]\n"
		"       [--link-timeout SEC] [--check-every N] [--prime-replies N]\n",
		prog);
}

static int parse_ip(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = a.s_addr;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	enum { NODE = 256, PEER, POD, RPOD, VTEP, PVTEP, SWMAC, VNI, SPORT, DPORT, FLOWS, LEN,
	       ECHO_, MBUFS, LTO, CHECK, PRIME };
	static const struct option lo[] = {
		{"node-ip", required_argument, NULL, NODE},
		{"peer-ip", required_argument, NULL, PEER},
		{"pod-ip", required_argument, NULL, POD},
		{"remote-pod-ip", required_argument, NULL, RPOD},
		{"vtep-mac", required_argument, NULL, VTEP},
		{"peer-vtep-mac", required_argument, NULL, PVTEP},
		{"switch-mac", required_argument, NULL, SWMAC},
		{"vni", required_argument, NULL, VNI},
		{"sport", required_argument, NULL, SPORT},
		{"dport", required_argument, NULL, DPORT},
		{"flows", required_argument, NULL, FLOWS},
		{"len", required_argument, NULL, LEN},
		{"echo", no_argument, NULL, ECHO_},
		{"mbufs", required_argument, NULL, MBUFS},
		{"link-timeout", required_argument, NULL, LTO},
		{"check-every", required_argument, NULL, CHECK},
		{"prime-replies", required_argument, NULL, PRIME},
		{NULL, 0, NULL, 0},
	};
	int ch, have = 0; /* bits: node peer pod rpod vtep pvtep */
	char *end;
	unsigned long v;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		v = 0;
		if (ch >= VNI && ch != ECHO_) {
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "bad number '%s'\n", optarg);
				return -1;
			}
		}
		switch (ch) {
		case NODE: if (parse_ip(optarg, &o.node_ip)) goto bad_ip; have |= 1; break;
		case PEER: if (parse_ip(optarg, &o.peer_ip)) goto bad_ip; have |= 2; break;
		case POD: if (parse_ip(optarg, &o.pod_ip)) goto bad_ip; have |= 4; break;
		case RPOD: if (parse_ip(optarg, &o.rpod_ip)) goto bad_ip; have |= 8; break;
		case VTEP:
			if (rte_ether_unformat_addr(optarg, &o.vtep_mac)) goto bad_mac;
			have |= 16;
			break;
		case PVTEP:
			if (rte_ether_unformat_addr(optarg, &o.peer_vtep_mac)) goto bad_mac;
			have |= 32;
			break;
		case SWMAC:
			if (rte_ether_unformat_addr(optarg, &o.switch_mac)) goto bad_mac;
			o.have_switch_mac = 1;
			break;
		case VNI: if (v > 0xffffff) return -1; o.vni = (uint32_t)v; break;
		case SPORT: if (v > 65535) return -1; o.sport = (uint16_t)v; break;
		case DPORT: if (v > 65535) return -1; o.dport = (uint16_t)v; break;
		case FLOWS: o.flows = (uint32_t)v; break;
		case LEN: o.len = (uint32_t)v; break;
		case ECHO_: o.echo = 1; break;
		case MBUFS: o.mbufs = (uint32_t)v; break;
		case LTO: o.link_timeout = (uint32_t)v; break;
		case CHECK: o.check_every = (uint32_t)v; break;
		case PRIME: o.prime_replies = (uint32_t)v; break;
		default: return -1;
		}
		continue;
	bad_ip:
		fprintf(stderr, "bad IPv4 address '%s'\n", optarg);
		return -1;
	bad_mac:
		fprintf(stderr, "bad MAC '%s'\n", optarg);
		return -1;
	}
	if (optind != argc || have != 63) {
		fprintf(stderr, "--node-ip, --peer-ip, --pod-ip, --remote-pod-ip, --vtep-mac and "
				"--peer-vtep-mac are required\n");
		return -1;
	}
	if (o.echo && !o.have_switch_mac) {
		fprintf(stderr, "--echo needs --switch-mac (there is no ARP)\n");
		return -1;
	}
	if (o.flows < 1 || o.flows > 16384 || (uint32_t)o.sport + o.flows - 1 > 65535) {
		fprintf(stderr, "--flows must be 1..16384 with sport+flows-1 <= 65535\n");
		return -1;
	}
	if (o.len < 60 || o.len + OUTER > 1514) {
		fprintf(stderr, "--len (the inner frame) must be 60..%d\n", 1514 - OUTER);
		return -1;
	}
	if (o.check_every < 1 || o.mbufs < 1024 || o.prime_replies < 1) {
		fprintf(stderr, "--check-every and --prime-replies must be >= 1, --mbufs >= 1024\n");
		return -1;
	}
	return 0;
}

static inline void put16(uint8_t *p, uint16_t host)
{
	uint16_t be = rte_cpu_to_be_16(host);
	memcpy(p, &be, 2);
}

static inline uint16_t get16(const uint8_t *p)
{
	uint16_t be;
	memcpy(&be, p, 2);
	return rte_be_to_cpu_16(be);
}

static inline uint32_t get32n(const uint8_t *p) /* stays in network order */
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* an IPv4 header with a valid checksum at p (total = IPv4 total length) */
static void ipv4_hdr(uint8_t *p, uint16_t total, uint8_t ttl, int df, uint32_t src, uint32_t dst)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)p;
	memset(ip, 0, sizeof(*ip));
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16(total);
	ip->fragment_offset = df ? rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG) : 0;
	ip->time_to_live = ttl;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = src;
	ip->dst_addr = dst;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
}

static void udp_hdr(uint8_t *p, uint16_t sport, uint16_t dport, uint16_t len)
{
	put16(p, sport);
	put16(p + 2, dport);
	put16(p + 4, len);
	put16(p + 6, 0);
}

/* the pod frame (len bytes at p) from src to dst; TTL 64 */
static void pod_frame(uint8_t *p, const struct rte_ether_addr *dmac, const struct rte_ether_addr *smac,
		      uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport)
{
	struct rte_ether_hdr *e = (struct rte_ether_hdr *)p;
	rte_ether_addr_copy(dmac, &e->dst_addr);
	rte_ether_addr_copy(smac, &e->src_addr);
	e->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ipv4_hdr(p + I_IP, (uint16_t)(o.len - ETH), 64, 0, src, dst);
	udp_hdr(p + I_IP + 20, sport, dport, (uint16_t)(o.len - ETH - 20));
}

static void build_reply(void)
{
	memset(reply_frame, 0, sizeof(reply_frame));
	pod_frame(reply_frame, &gw_mac, &pod_mac, o.pod_ip, o.rpod_ip, o.dport, o.sport);
}

static void build_gen(void)
{
	uint8_t *g = gen_frame;
	struct rte_ether_hdr *e = (struct rte_ether_hdr *)g;
	uint32_t outer = o.len + OUTER;

	memset(gen_frame, 0, sizeof(gen_frame));
	rte_ether_addr_copy(&o.switch_mac, &e->dst_addr);
	rte_ether_addr_copy(&peer_mac, &e->src_addr);
	e->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ipv4_hdr(g + O_IP, (uint16_t)(outer - ETH), 64, 1, o.peer_ip, o.node_ip);
	udp_hdr(g + O_SPORT, SRC_PORT_MIN, VXLAN_PORT, (uint16_t)(outer - ETH - 20));
	g[O_VX] = 0x08; /* flags: I */
	g[O_VX + 4] = (uint8_t)(o.vni >> 16);
	g[O_VX + 5] = (uint8_t)(o.vni >> 8);
	g[O_VX + 6] = (uint8_t)o.vni;
	pod_frame(g + OUTER, &o.vtep_mac, &o.peer_vtep_mac, o.rpod_ip, o.pod_ip, o.sport, o.dport);
}

static void init_gen(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	struct rte_mbuf *m = obj;
	(void)mp; (void)arg; (void)idx;
	memcpy((char *)m->buf_addr + RTE_PKTMBUF_HEADROOM, gen_frame, o.len + OUTER);
}

static void init_reply(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	struct rte_mbuf *m = obj;
	(void)mp; (void)arg; (void)idx;
	memcpy((char *)m->buf_addr + RTE_PKTMBUF_HEADROOM, reply_frame, o.len);
}

static int port_init(uint16_t port, struct rte_mempool *rx_pool)
{
	struct rte_eth_conf conf;
	int rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_configure(port, 1, 1, &conf);
	if (rc < 0)
		return rc;
	rc = rte_eth_rx_queue_setup(port, 0, 0, rte_eth_dev_socket_id(port), NULL, rx_pool);
	if (rc < 0)
		return rc;
	rc = rte_eth_tx_queue_setup(port, 0, 0, rte_eth_dev_socket_id(port), NULL);
	if (rc < 0)
		return rc;
	rc = rte_eth_dev_start(port);
	if (rc < 0)
		return rc;
	(void)rte_eth_promiscuous_enable(port);
	return 0;
}

static int link_up(uint16_t port)
{
	struct rte_eth_link l;
	memset(&l, 0, sizeof(l));
	if (rte_eth_link_get_nowait(port, &l) < 0)
		return 0;
	return l.link_status == RTE_ETH_LINK_UP;
}

static void print_stats(void)
{
	printf("STATS tsc=%" PRIu64 " hz=%" PRIu64 " u_tx=%" PRIu64 " u_refused=%" PRIu64
	       " u_full=%" PRIu64 " loops=%" PRIu64 " u_rx=%" PRIu64 " u_vx=%" PRIu64
	       " u_checked=%" PRIu64 " u_ok=%" PRIu64 " u_routed=%" PRIu64 " u_other=%" PRIu64
	       " arp_rx=%" PRIu64 " arp_answered=%" PRIu64 " p_rx=%" PRIu64 " p_tx=%" PRIu64
	       " p_drop=%" PRIu64 " p_checked=%" PRIu64 " p_ok=%" PRIu64 " p_routed=%" PRIu64
	       " p_other=%" PRIu64 "\n",
	       rte_rdtsc(), rte_get_tsc_hz(), c.u_tx, c.u_refused, c.u_full, c.loops, c.u_rx, c.u_vx,
	       c.u_checked, c.u_ok, c.u_routed, c.u_other, c.arp_rx, c.arp_answered, c.p_rx, c.p_tx,
	       c.p_drop, c.p_checked, c.p_ok, c.p_routed, c.p_other);
	fflush(stdout);
}

static int cksum_ok(const uint8_t *ip)
{
	return rte_raw_cksum(ip, 20) == 0xffff;
}

static int flow_port(uint16_t port)
{
	return port >= o.sport && (uint32_t)port < (uint32_t)o.sport + o.flows;
}

/* one tunnel-length frame from U, inspected */
static void check_u(const uint8_t *f)
{
	const uint8_t *oip = f + O_IP, *in = f + OUTER, *iip = in + I_IP;
	int ok;

	c.u_checked++;
	if (o.echo) {
		/* the frame as the peer sent it (the flow's ports aside) */
		ok = memcmp(f, gen_frame, O_SPORT) == 0 &&
		     memcmp(f + O_SPORT + 2, gen_frame + O_SPORT + 2, OUTER + I_SPORT - O_SPORT - 2) == 0 &&
		     flow_port(get16(in + I_SPORT)) && get16(in + I_DPORT) == o.dport;
		if (ok)
			c.u_ok++;
		else
			c.u_other++;
		return;
	}
	ok = rte_is_same_ether_addr((const struct rte_ether_addr *)f, &peer_mac) &&
	     get16(f + 12) == RTE_ETHER_TYPE_IPV4 && oip[0] == 0x45 && oip[9] == IPPROTO_UDP &&
	     cksum_ok(oip) && get32n(oip + 12) == o.node_ip && get32n(oip + 16) == o.peer_ip &&
	     get16(f + O_SPORT + 2) == VXLAN_PORT &&
	     get16(f + O_SPORT + 4) == o.len + OUTER - ETH - 20 && (f[O_VX] & 0x08) &&
	     ((uint32_t)f[O_VX + 4] << 16 | (uint32_t)f[O_VX + 5] << 8 | f[O_VX + 6]) == o.vni &&
	     get16(in + 12) == RTE_ETHER_TYPE_IPV4 && iip[0] == 0x45 && iip[9] == IPPROTO_UDP &&
	     cksum_ok(iip) && get32n(in + I_SRC) == o.pod_ip && get32n(in + I_DST) == o.rpod_ip &&
	     get16(in + I_SPORT) == o.dport && flow_port(get16(in + I_DPORT));
	if (!ok) {
		c.u_other++;
		return;
	}
	c.u_ok++;
	if (in[I_TTL] == 63 && rte_is_same_ether_addr((const struct rte_ether_addr *)(in + 6), &o.vtep_mac) &&
	    rte_is_same_ether_addr((const struct rte_ether_addr *)in, &o.peer_vtep_mac))
		c.u_routed++;
}

/* one frame on P, inspected */
static void check_p(const struct rte_mbuf *m)
{
	const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *), *ip = f + I_IP;

	c.p_checked++;
	if (m->data_len >= I_HDRS && get16(f + 12) == RTE_ETHER_TYPE_IPV4 && ip[0] == 0x45 &&
	    ip[9] == IPPROTO_UDP && cksum_ok(ip) && get32n(f + I_SRC) == o.rpod_ip &&
	    get32n(f + I_DST) == o.pod_ip && get16(f + I_DPORT) == o.dport) {
		c.p_ok++;
		if (ip[8] == 63 && rte_is_same_ether_addr((const struct rte_ether_addr *)(f + 6), &gw_mac))
			c.p_routed++;
	} else {
		c.p_other++;
	}
}

static void arp_request(struct rte_mbuf *m)
{
	uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
	memset(f, 0, 60);
	rte_ether_addr_copy(&bcast, (struct rte_ether_addr *)f);
	rte_ether_addr_copy(&peer_mac, (struct rte_ether_addr *)(f + 6));
	put16(f + 12, RTE_ETHER_TYPE_ARP);
	put16(f + 14, 1);      /* Ethernet */
	put16(f + 16, 0x0800); /* IPv4 */
	f[18] = 6;
	f[19] = 4;
	put16(f + 20, 1); /* request */
	rte_ether_addr_copy(&peer_mac, (struct rte_ether_addr *)(f + 22));
	memcpy(f + 28, &o.peer_ip, 4);
	memcpy(f + 38, &o.node_ip, 4);
	m->data_len = 60;
	m->pkt_len = 60;
}

/* a frame from U that is not of the tunnel length: ARP, or something else.
 * Returns 1 when the mbuf was turned into an answer and sent. */
static int other_u(struct rte_mbuf *m)
{
	uint8_t *f = rte_pktmbuf_mtod(m, uint8_t *);
	uint16_t op;

	if (m->data_len < ARP_LEN || get16(f + 12) != RTE_ETHER_TYPE_ARP || get16(f + 14) != 1 ||
	    get16(f + 16) != 0x0800 || f[18] != 6 || f[19] != 4) {
		c.u_other++;
		return 0;
	}
	c.arp_rx++;
	op = get16(f + 20);
	if (op == 2 && get32n(f + 28) == o.node_ip && !o.have_switch_mac) {
		rte_ether_addr_copy((const struct rte_ether_addr *)(f + 22), &o.switch_mac);
		o.have_switch_mac = 1;
		return 0;
	}
	if (op == 1 && get32n(f + 38) == o.peer_ip) {
		/* who has the peer's address: we do */
		uint8_t asker[6], spa[4];
		memcpy(asker, f + 22, 6);
		memcpy(spa, f + 28, 4);
		memcpy(f, asker, 6);
		rte_ether_addr_copy(&peer_mac, (struct rte_ether_addr *)(f + 6));
		put16(f + 20, 2);
		rte_ether_addr_copy(&peer_mac, (struct rte_ether_addr *)(f + 22));
		memcpy(f + 28, &o.peer_ip, 4);
		memcpy(f + 32, asker, 6);
		memcpy(f + 38, spa, 4);
		if (m->data_len < 60) {
			memset(f + ARP_LEN, 0, 60 - ARP_LEN);
			m->data_len = 60;
			m->pkt_len = 60;
		}
		if (rte_eth_tx_burst(U, 0, &m, 1) == 1) {
			c.arp_answered++;
			return 1;
		}
	}
	return 0;
}

/* the pod: answer what P received */
static void pod_side(struct rte_mempool *reply_pool, uint32_t *check, uint32_t check_every)
{
	struct rte_mbuf *rx[BURST], *rep[BURST];
	uint16_t n, sent, i;

	n = rte_eth_rx_burst(P, 0, rx, BURST);
	if (n == 0)
		return;
	c.p_rx += n;
	if (o.echo) {
		sent = rte_eth_tx_burst(P, 0, rx, n);
		c.p_tx += sent;
		if (sent < n) {
			c.p_drop += n - sent;
			rte_pktmbuf_free_bulk(&rx[sent], n - sent);
		}
		return;
	}
	for (i = 0; i < n; i++) {
		if (++*check >= check_every) {
			*check = 0;
			check_p(rx[i]);
		}
	}
	if (rte_pktmbuf_alloc_bulk(reply_pool, rep, n) != 0) {
		c.p_drop += n;
		rte_pktmbuf_free_bulk(rx, n);
		return;
	}
	for (i = 0; i < n; i++) {
		rep[i]->data_len = (uint16_t)o.len;
		rep[i]->pkt_len = o.len;
		if (o.flows > 1) {
			/* the request's source port is the answer's destination port */
			const uint8_t *q = rte_pktmbuf_mtod(rx[i], const uint8_t *);
			memcpy(rte_pktmbuf_mtod_offset(rep[i], uint8_t *, I_DPORT), q + I_SPORT, 2);
		}
	}
	rte_pktmbuf_free_bulk(rx, n);
	sent = rte_eth_tx_burst(P, 0, rep, n);
	c.p_tx += sent;
	if (sent < n) {
		c.p_drop += n - sent;
		rte_pktmbuf_free_bulk(&rep[sent], n - sent);
	}
}

/* what came back on U */
static void uplink_side(uint32_t *check, uint32_t check_every)
{
	struct rte_mbuf *rx[BURST], *fr[BURST];
	uint16_t n, i, nf = 0;
	const uint32_t vx_len = o.len + OUTER;

	n = rte_eth_rx_burst(U, 0, rx, BURST);
	if (n == 0)
		return;
	c.u_rx += n;
	for (i = 0; i < n; i++) {
		if (rx[i]->pkt_len == vx_len) {
			c.u_vx++;
			if (++*check >= check_every) {
				*check = 0;
				check_u(rte_pktmbuf_mtod(rx[i], const uint8_t *));
			}
			fr[nf++] = rx[i];
		} else if (!other_u(rx[i])) {
			fr[nf++] = rx[i];
		}
	}
	if (nf)
		rte_pktmbuf_free_bulk(fr, nf);
}

int main(int argc, char **argv)
{
	struct rte_mempool *gen_pool, *reply_pool, *rx_pool;
	struct rte_mbuf *pend[BURST], *m;
	uint64_t hz, deadline, next;
	uint32_t npend = 0, flow = 0, i, ucheck = 0, pcheck = 0;
	uint16_t n;
	int ret, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = rte_eal_init(argc, argv);
	if (ret < 0) {
		fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= ret;
	argv += ret;
	optind = 1;
	if (parse_args(argc, argv) < 0) {
		usage("pvp-tunnel-peer");
		rte_eal_cleanup();
		return 2;
	}
	if (rte_eth_dev_count_avail() != 2) {
		fprintf(stderr, "needs exactly 2 ports (peer node U, pod P), found %u\n",
			rte_eth_dev_count_avail());
		rte_eal_cleanup();
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);

	rte_eth_macaddr_get(U, &peer_mac);
	rte_eth_macaddr_get(P, &pod_mac);
	gen_pool = rte_pktmbuf_pool_create("gen", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					   rte_socket_id());
	reply_pool = rte_pktmbuf_pool_create("reply", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					     rte_socket_id());
	rx_pool = rte_pktmbuf_pool_create("rx", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					  rte_socket_id());
	if (gen_pool == NULL || reply_pool == NULL || rx_pool == NULL) {
		fprintf(stderr, "mbuf pools: %s\n", rte_strerror(rte_errno));
		rte_eal_cleanup();
		return 1;
	}
	if ((ret = port_init(U, rx_pool)) < 0 || (ret = port_init(P, rx_pool)) < 0) {
		fprintf(stderr, "port setup failed: %s\n", rte_strerror(-ret));
		rte_eal_cleanup();
		return 1;
	}
	build_reply();
	rte_mempool_obj_iter(reply_pool, init_reply, NULL);
	hz = rte_get_tsc_hz();
	deadline = rte_rdtsc() + (uint64_t)o.link_timeout * hz;
	while (!quit && !(link_up(U) && link_up(P))) {
		if (rte_rdtsc() > deadline) {
			fprintf(stderr, "links not up after %u s (U %d, P %d)\n", o.link_timeout,
				link_up(U), link_up(P));
			failed = 1;
			goto out;
		}
		rte_delay_ms(10);
	}

	/* 1. the node's MAC: ARP for its address (the switch learns ours) */
	next = 0;
	while (!quit && !o.have_switch_mac) {
		if (rte_rdtsc() > deadline) {
			fprintf(stderr, "no ARP reply for the node address from the switch in %u s\n",
				o.link_timeout);
			failed = 1;
			goto out;
		}
		if (rte_rdtsc() >= next) {
			next = rte_rdtsc() + hz / 10;
			m = rte_pktmbuf_alloc(rx_pool);
			if (m != NULL) {
				arp_request(m);
				if (rte_eth_tx_burst(U, 0, &m, 1) != 1)
					rte_pktmbuf_free(m);
			}
		}
		pod_side(reply_pool, &pcheck, 1); /* nothing should come: drained */
		uplink_side(&ucheck, 1);
	}
	if (!quit && !o.echo) {
		char s[RTE_ETHER_ADDR_FMT_SIZE];
		rte_ether_format_addr(s, sizeof(s), &o.switch_mac);
		printf("ARP switch_mac=%s\n", s);
	}
	build_gen();
	rte_mempool_obj_iter(gen_pool, init_gen, NULL);

	/* 2. prime: single frames until answers come back on U */
	next = 0;
	while (!quit && c.u_ok < o.prime_replies) {
		if (rte_rdtsc() > deadline) {
			fprintf(stderr, "only %" PRIu64 " good answers (of %" PRIu64 " tunnel frames, %" PRIu64
				" others) came back on U in %u s; the pod got %" PRIu64 " (%" PRIu64 " good)\n",
				c.u_ok, c.u_vx, c.u_other, o.link_timeout, c.p_rx, c.p_ok);
			print_stats();
			failed = 1;
			goto out;
		}
		if (rte_rdtsc() >= next) {
			next = rte_rdtsc() + hz / 1000;
			m = rte_pktmbuf_alloc(gen_pool);
			if (m != NULL) {
				m->data_len = (uint16_t)(o.len + OUTER);
				m->pkt_len = o.len + OUTER;
				if (rte_eth_tx_burst(U, 0, &m, 1) == 1)
					c.u_tx++;
				else
					rte_pktmbuf_free(m);
			}
		}
		pod_side(reply_pool, &pcheck, 1);
		uplink_side(&ucheck, 1);
	}
	if (!quit) {
		char a[RTE_ETHER_ADDR_FMT_SIZE], b[RTE_ETHER_ADDR_FMT_SIZE], s[RTE_ETHER_ADDR_FMT_SIZE];
		rte_ether_format_addr(a, sizeof(a), &peer_mac);
		rte_ether_format_addr(b, sizeof(b), &pod_mac);
		rte_ether_format_addr(s, sizeof(s), &o.switch_mac);
		printf("READY peer_mac=%s pod_mac=%s switch_mac=%s flows=%u len=%u outer_len=%u echo=%d "
		       "lcore=%u\n", a, b, s, o.flows, o.len, o.len + OUTER, o.echo, rte_lcore_id());
	}

	/* 3. full speed */
	while (!quit) {
		c.loops++;
		if (npend < BURST &&
		    rte_pktmbuf_alloc_bulk(gen_pool, &pend[npend], BURST - npend) == 0) {
			for (i = npend; i < BURST; i++) {
				m = pend[i];
				m->data_len = (uint16_t)(o.len + OUTER);
				m->pkt_len = o.len + OUTER;
				if (o.flows > 1) {
					put16(rte_pktmbuf_mtod_offset(m, uint8_t *, OUTER + I_SPORT),
					      (uint16_t)(o.sport + flow));
					put16(rte_pktmbuf_mtod_offset(m, uint8_t *, O_SPORT),
					      (uint16_t)(SRC_PORT_MIN + flow));
					if (++flow == o.flows)
						flow = 0;
				}
			}
			npend = BURST;
		}
		if (npend > 0) {
			n = rte_eth_tx_burst(U, 0, pend, (uint16_t)npend);
			c.u_tx += n;
			if (n < npend) {
				c.u_full++;
				c.u_refused += npend - n;
				memmove(pend, &pend[n], (npend - n) * sizeof(pend[0]));
			}
			npend -= n;
		}
		pod_side(reply_pool, &pcheck, o.check_every);
		uplink_side(&ucheck, o.check_every);
		if (unlikely(stats_req)) {
			stats_req = 0;
			print_stats();
		}
	}
out:
	print_stats();
	if (npend)
		rte_pktmbuf_free_bulk(pend, npend);
	rte_eth_dev_stop(U);
	rte_eth_dev_stop(P);
	rte_eth_dev_close(U);
	rte_eth_dev_close(P);
	rte_eal_cleanup();
	return failed ? 1 : 0;
}
