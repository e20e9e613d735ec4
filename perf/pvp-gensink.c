/* SPDX-License-Identifier: Apache-2.0 OR MIT
 *
 * pvp-gensink -- the two pods of perf/pvp-policy in one DPDK thread: a
 * traffic GENERATOR on one port (pod A) and a SINK on the other (pod B).
 *
 *   pvp-gensink EAL-ARGS -- [options]
 *
 * Port 0 (the first --vdev) is the generator, port 1 the sink; both are
 * normally net_virtio_user ports on the switch's vhost-user sockets.  One
 * lcore (the main one) loops: top up and transmit a burst of IPv4/UDP frames
 * on the generator port, receive a burst on the sink port, count it and free
 * it.  Why not two dpdk-testpmd (txonly + rxonly)?  On a machine where both
 * must share one CPU, two busy-polling processes are time-sliced by the
 * kernel in milliseconds while the vrings hold microseconds of traffic: the
 * sink starves and the measured rate collapses (perf/README.md).  Here the
 * two sides interleave burst by burst.
 *
 * Frames: Ethernet (dst --dst-mac, src the generator port's MAC, IPv4),
 * IPv4 (--src-ip -> --dst-ip, TTL 64, DF clear, valid header checksum), UDP
 * (--sport -> --dport, checksum 0), zero payload, --len bytes without FCS.
 * With --flows N the UDP source port cycles through sport .. sport+N-1,
 * frame by frame: N 5-tuples, the addresses stay the pods' own (a routed
 * switch's anti-spoofing accepts them).  Frames are written once into every
 * mbuf of the generator's pool when it is created; sending costs an
 * allocation (and a 2-byte store with --flows), not a copy.
 *
 * --hello-ms MS: every MS ms the sink port sends one small frame (src = the
 * sink's MAC, dst = the generator's MAC, ethertype 0x88b5) so that a learning
 * L2 switch knows where the sink lives and does not flood; the generator port
 * drains what it receives and counts it (gen_rx).  0 (routed pods): none.
 *
 * Output (stdout, line-buffered):
 *   READY gen_mac=.. sink_mac=..                      both links up, sending
 *   STATS tsc=T hz=H gen_tx=.. gen_refused=.. gen_full=.. sink_rx=.. \
 *         sink_checked=.. sink_ok=.. sink_routed=.. sink_other=.. gen_rx=.. \
 *         hello_tx=.. loops=..                        on SIGUSR1 and at exit
 * gen_tx counts frames the generator port accepted; gen_refused frames it
 * refused (ring full: they are kept and offered again, never dropped) and
 * gen_full the loops in which that happened: gen_full / loops near 1 means
 * the switch, not this program, sets the pace.  sink_rx counts every frame
 * received; one in --check-every of them (default 1: all) is inspected
 * (sink_checked): sink_ok has the expected IPv4 destination and UDP
 * destination port, sink_routed is of those the routed ones (source MAC
 * ee:ee:ee:ee:ee:ee, the gateway MAC of routed pods, and TTL 63), sink_other
 * the rest.  --sink-ip A / --sink-port P: the destination the sink expects
 * when it is not the one the generator sends to (a Service: the generator
 * sends to the virtual address, the switch translates it to the backend's).  Inspecting costs a cache miss per frame (the switch's core wrote
 * it), so perf/pvp-policy inspects a sample.
 * SIGINT/SIGTERM end it.
 *
 * Build: cc -O2 $(pkg-config --cflags libdpdk) pvp-gensink.c $(pkg-config --libs libdpdk)
 * (perf/pvp-policy does it in its work dir).
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
#include <rte_udp.h>

#define BURST 32
#define HDR_LEN (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
#define SPORT_OFF (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr))

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
	struct rte_ether_addr dst_mac;
	int have_dst_mac;
	uint32_t src_ip, dst_ip; /* network order */
	uint16_t sport, dport;
	uint32_t flows;
	uint32_t len;
	uint32_t hello_ms;
	uint32_t mbufs;
	uint32_t link_timeout;
	uint32_t check_every;
	uint32_t sink_ip; /* network order; what the sink expects (default dst_ip) */
	uint16_t sink_port; /* host order (default dport) */
	int have_sink_ip, have_sink_port;
};

struct counters {
	uint64_t gen_tx, gen_refused, gen_full, sink_rx, sink_checked, sink_ok, sink_routed, sink_other,
		gen_rx, hello_tx, loops;
};

static struct opts o = {
	.sport = 1024, .dport = 5001, .flows = 1, .len = 64, .hello_ms = 0,
	.mbufs = 8191, .link_timeout = 30, .check_every = 1,
};
static uint8_t frame[RTE_MBUF_DEFAULT_DATAROOM];
/* the source MAC of frames a routed pod receives (api::GATEWAY_MAC) */
static const struct rte_ether_addr gw_mac = {{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}};

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s EAL-ARGS -- --dst-mac MAC --src-ip A --dst-ip B [--sport S] [--dport D]\n"
		"       [--flows N] [--len BYTES] [--hello-ms MS] [--mbufs N] [--link-timeout SEC]\n"
		"       [--check-every N] [--sink-ip A] [--sink-port P]\n",
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
	static const struct option lo[] = {
		{"dst-mac", required_argument, NULL, 'm'},
		{"src-ip", required_argument, NULL, 's'},
		{"dst-ip", required_argument, NULL, 'd'},
		{"sport", required_argument, NULL, 'S'},
		{"dport", required_argument, NULL, 'D'},
		{"flows", required_argument, NULL, 'f'},
		{"len", required_argument, NULL, 'l'},
		{"hello-ms", required_argument, NULL, 'h'},
		{"mbufs", required_argument, NULL, 'n'},
		{"link-timeout", required_argument, NULL, 't'},
		{"check-every", required_argument, NULL, 'c'},
		{"sink-ip", required_argument, NULL, 'k'},
		{"sink-port", required_argument, NULL, 'K'},
		{NULL, 0, NULL, 0},
	};
	int c, have_src = 0, have_dst = 0;
	char *end;
	unsigned long v;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c != 'm' && c != 's' && c != 'd' && c != 'k' && c != '?') {
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "bad number '%s'\n", optarg);
				return -1;
			}
		} else {
			v = 0;
		}
		switch (c) {
		case 'm':
			if (rte_ether_unformat_addr(optarg, &o.dst_mac) != 0) {
				fprintf(stderr, "bad MAC '%s'\n", optarg);
				return -1;
			}
			o.have_dst_mac = 1;
			break;
		case 's':
			if (parse_ip(optarg, &o.src_ip)) {
				fprintf(stderr, "bad IPv4 address '%s'\n", optarg);
				return -1;
			}
			have_src = 1;
			break;
		case 'd':
			if (parse_ip(optarg, &o.dst_ip)) {
				fprintf(stderr, "bad IPv4 address '%s'\n", optarg);
				return -1;
			}
			have_dst = 1;
			break;
		case 'k':
			if (parse_ip(optarg, &o.sink_ip)) {
				fprintf(stderr, "bad IPv4 address '%s'\n", optarg);
				return -1;
			}
			o.have_sink_ip = 1;
			break;
		case 'K': o.sink_port = (uint16_t)v; o.have_sink_port = 1; if (v > 65535) return -1; break;
		case 'S': o.sport = (uint16_t)v; if (v > 65535) return -1; break;
		case 'D': o.dport = (uint16_t)v; if (v > 65535) return -1; break;
		case 'f': o.flows = (uint32_t)v; break;
		case 'l': o.len = (uint32_t)v; break;
		case 'h': o.hello_ms = (uint32_t)v; break;
		case 'n': o.mbufs = (uint32_t)v; break;
		case 't': o.link_timeout = (uint32_t)v; break;
		case 'c': o.check_every = (uint32_t)v; break;
		default:
			return -1;
		}
	}
	if (optind != argc || !o.have_dst_mac || !have_src || !have_dst) {
		fprintf(stderr, "--dst-mac, --src-ip and --dst-ip are required\n");
		return -1;
	}
	if (!o.have_sink_ip)
		o.sink_ip = o.dst_ip;
	if (!o.have_sink_port)
		o.sink_port = o.dport;
	if (o.flows < 1 || o.flows > 65536 || (uint32_t)o.sport + o.flows - 1 > 65535) {
		fprintf(stderr, "--flows must be 1..65536 with sport+flows-1 <= 65535\n");
		return -1;
	}
	if (o.len < 60 || o.len > 1514) {
		fprintf(stderr, "--len must be 60..1514\n");
		return -1;
	}
	if (o.check_every < 1) {
		fprintf(stderr, "--check-every must be >= 1\n");
		return -1;
	}
	if (o.mbufs < 1024) {
		fprintf(stderr, "--mbufs must be >= 1024\n");
		return -1;
	}
	return 0;
}

/* the generator's frame, written into every mbuf of its pool once */
static void build_frame(const struct rte_ether_addr *src_mac)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	memset(frame, 0, sizeof(frame));
	rte_ether_addr_copy(&o.dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(src_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(o.len - sizeof(*eth)));
	ip->packet_id = 0;
	ip->fragment_offset = 0;
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = o.src_ip;
	ip->dst_addr = o.dst_ip;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16(o.sport);
	udp->dst_port = rte_cpu_to_be_16(o.dport);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(o.len - sizeof(*eth) - sizeof(*ip)));
	udp->dgram_cksum = 0;
}

static void init_mbuf_data(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	struct rte_mbuf *m = obj;
	(void)mp; (void)arg; (void)idx;
	memcpy((char *)m->buf_addr + RTE_PKTMBUF_HEADROOM, frame, o.len);
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
	(void)rte_eth_promiscuous_enable(port); /* virtio-user may not support it: no matter */
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

static void print_stats(const struct counters *c)
{
	printf("STATS tsc=%" PRIu64 " hz=%" PRIu64 " gen_tx=%" PRIu64 " gen_refused=%" PRIu64
	       " gen_full=%" PRIu64 " sink_rx=%" PRIu64 " sink_checked=%" PRIu64 " sink_ok=%" PRIu64
	       " sink_routed=%" PRIu64 " sink_other=%" PRIu64 " gen_rx=%" PRIu64 " hello_tx=%" PRIu64
	       " loops=%" PRIu64 "\n",
	       rte_rdtsc(), rte_get_tsc_hz(), c->gen_tx, c->gen_refused, c->gen_full, c->sink_rx,
	       c->sink_checked, c->sink_ok, c->sink_routed, c->sink_other, c->gen_rx, c->hello_tx,
	       c->loops);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const uint16_t gen = 0, sink = 1;
	struct rte_mempool *gen_pool, *rx_pool;
	struct rte_ether_addr gen_mac, sink_mac;
	struct rte_mbuf *pend[BURST], *rx[BURST], *h;
	struct counters c;
	uint64_t hz, next_hello, hello_ticks, deadline;
	uint32_t npend = 0, flow = 0, i, check = 0;
	uint16_t be_dport, n;
	int ret;

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
		usage("pvp-gensink");
		rte_eal_cleanup();
		return 2;
	}
	if (rte_eth_dev_count_avail() != 2) {
		fprintf(stderr, "needs exactly 2 ports (generator, sink), found %u\n",
			rte_eth_dev_count_avail());
		rte_eal_cleanup();
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGUSR1, on_signal);

	rte_eth_macaddr_get(gen, &gen_mac);
	rte_eth_macaddr_get(sink, &sink_mac);
	build_frame(&gen_mac);
	gen_pool = rte_pktmbuf_pool_create("gen", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					   rte_socket_id());
	rx_pool = rte_pktmbuf_pool_create("rx", o.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					  rte_socket_id());
	if (gen_pool == NULL || rx_pool == NULL) {
		fprintf(stderr, "mbuf pools: %s\n", rte_strerror(rte_errno));
		rte_eal_cleanup();
		return 1;
	}
	rte_mempool_obj_iter(gen_pool, init_mbuf_data, NULL);
	/* the generator port receives only hello frames (and floods): the rx pool */
	if ((ret = port_init(gen, rx_pool)) < 0 || (ret = port_init(sink, rx_pool)) < 0) {
		fprintf(stderr, "port setup failed: %s\n", rte_strerror(-ret));
		rte_eal_cleanup();
		return 1;
	}
	hz = rte_get_tsc_hz();
	deadline = rte_rdtsc() + (uint64_t)o.link_timeout * hz;
	while (!quit && !(link_up(gen) && link_up(sink))) {
		if (rte_rdtsc() > deadline) {
			fprintf(stderr, "links not up after %u s (gen %d, sink %d)\n", o.link_timeout,
				link_up(gen), link_up(sink));
			quit = 2;
			break;
		}
		rte_delay_ms(10);
	}
	memset(&c, 0, sizeof(c));
	if (quit != 2) {
		char g[RTE_ETHER_ADDR_FMT_SIZE], s[RTE_ETHER_ADDR_FMT_SIZE];
		rte_ether_format_addr(g, sizeof(g), &gen_mac);
		rte_ether_format_addr(s, sizeof(s), &sink_mac);
		printf("READY gen_mac=%s sink_mac=%s flows=%u len=%u lcore=%u\n", g, s, o.flows, o.len,
		       rte_lcore_id());
	}
	be_dport = rte_cpu_to_be_16(o.sink_port);
	hello_ticks = (uint64_t)o.hello_ms * hz / 1000;
	next_hello = rte_rdtsc();

	while (!quit) {
		c.loops++;
		/* generator: top up the pending burst, offer it, keep what was refused */
		if (npend < BURST) {
			if (rte_pktmbuf_alloc_bulk(gen_pool, &pend[npend], BURST - npend) == 0) {
				for (i = npend; i < BURST; i++) {
					struct rte_mbuf *m = pend[i];
					m->data_len = (uint16_t)o.len;
					m->pkt_len = o.len;
					if (o.flows > 1) {
						*rte_pktmbuf_mtod_offset(m, uint16_t *, SPORT_OFF) =
							rte_cpu_to_be_16((uint16_t)(o.sport + flow));
						if (++flow == o.flows)
							flow = 0;
					}
				}
				npend = BURST;
			}
		}
		if (npend > 0) {
			n = rte_eth_tx_burst(gen, 0, pend, (uint16_t)npend);
			c.gen_tx += n;
			if (n < npend) {
				c.gen_full++;
				c.gen_refused += npend - n;
				memmove(pend, &pend[n], (npend - n) * sizeof(pend[0]));
			}
			npend -= n;
		}
		/* sink */
		n = rte_eth_rx_burst(sink, 0, rx, BURST);
		if (n > 0) {
			c.sink_rx += n;
			for (i = 0; i < n; i++) {
				const uint8_t *p;
				if (++check < o.check_every)
					continue;
				check = 0;
				c.sink_checked++;
				p = rte_pktmbuf_mtod(rx[i], const uint8_t *);
				const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)p;
				const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(eth + 1);
				if (rx[i]->data_len >= HDR_LEN &&
				    eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) &&
				    ip->dst_addr == o.sink_ip && ip->next_proto_id == IPPROTO_UDP &&
				    ((const struct rte_udp_hdr *)(ip + 1))->dst_port == be_dport) {
					c.sink_ok++;
					if (ip->time_to_live == 63 &&
					    rte_is_same_ether_addr(&eth->src_addr, &gw_mac))
						c.sink_routed++;
				} else {
					c.sink_other++;
				}
			}
			rte_pktmbuf_free_bulk(rx, n);
		}
		/* rarely: what reaches the generator port, and the sink's hello */
		if ((c.loops & 63) == 0) {
			n = rte_eth_rx_burst(gen, 0, rx, BURST);
			if (n > 0) {
				c.gen_rx += n;
				rte_pktmbuf_free_bulk(rx, n);
			}
			if (hello_ticks && rte_rdtsc() >= next_hello) {
				next_hello = rte_rdtsc() + hello_ticks;
				h = rte_pktmbuf_alloc(rx_pool);
				if (h != NULL) {
					struct rte_ether_hdr *e = rte_pktmbuf_mtod(h, struct rte_ether_hdr *);
					memset(e, 0, 60);
					rte_ether_addr_copy(&gen_mac, &e->dst_addr);
					rte_ether_addr_copy(&sink_mac, &e->src_addr);
					e->ether_type = rte_cpu_to_be_16(0x88b5);
					h->data_len = 60;
					h->pkt_len = 60;
					if (rte_eth_tx_burst(sink, 0, &h, 1) == 1)
						c.hello_tx++;
					else
						rte_pktmbuf_free(h);
				}
			}
		}
		if (unlikely(stats_req)) {
			stats_req = 0;
			print_stats(&c);
		}
	}
	print_stats(&c);
	if (npend)
		rte_pktmbuf_free_bulk(pend, npend);
	rte_eth_dev_stop(gen);
	rte_eth_dev_stop(sink);
	rte_eth_dev_close(gen);
	rte_eth_dev_close(sink);
	rte_eal_cleanup();
	return quit == 2 ? 1 : 0;
}
