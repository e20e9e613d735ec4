//! The stateful policy stage: conntrack first, policy for what it does not
//! know, then the connection is recorded so that its later packets and its
//! replies never run rules again.
//!
//! A packet between two pods passes this stage twice: in the sender's zone
//! (its egress policy) and in the receiver's zone (its ingress policy), each
//! on the worker that owns that pod's port. Pods are always tracked, with or
//! without policy, so that a policy applied later finds the connections that
//! were open before it and leaves them be, as Calico's conntrack-first
//! chains do.
//!
//! A TCP connection that conntrack does not know (the switch restarted, or
//! the entry expired) is picked up from a bare ACK as Linux does with
//! `nf_conntrack_tcp_loose=1`: policy judges that ACK as it would the SYN,
//! and what it allows is recorded, so that established connections outlive
//! a restart and the policy in force still decides which may go on.

use crate::counters::{DropReason, WorkerCounters};
use crate::tables::conntrack::{tcp_begin, Conntrack, Created, Flow, TcpBegin, Track, PROTO_TCP};
use crate::tables::endpoints::Endpoint;
use crossbeam_queue::ArrayQueue;
use policy::{Decision, Direction, Reason};

/// The compiled policy of one configuration generation, as workers see it.
pub struct PolicyView<'a> {
    pub compiled: &'a policy::compile::Compiled,
    pub generation: u64,
    /// Per compiled rule (`Compiled::rule_index`): its slot among the
    /// workers' rule counters, or `u32::MAX` when it is not counted.
    pub rule_slots: &'a [u32],
}

/// A flow-log record: written by a worker for a rule with action Log,
/// turned into text by the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord {
    /// Seconds since the switch started.
    pub now: u32,
    /// The policy generation whose indices `logged` and `decided` use.
    pub generation: u64,
    /// The pod port whose policy logged it.
    pub port: u16,
    pub direction: Direction,
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// The Log rule.
    pub logged: Reason,
    /// What decided, and how.
    pub decided: Reason,
    pub allow: bool,
}

/// A worker's flow-log writer: a token bucket in front of a bounded queue,
/// so that a flood of logged packets costs neither memory nor the control
/// thread's time. What it refuses is counted.
pub struct FlowLog<'a> {
    pub queue: &'a ArrayQueue<LogRecord>,
    pub limiter: &'a mut RateLimit,
}

/// Tokens per second of the switch clock, with a burst allowance.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
    tokens: u32,
    second: u32,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            tokens: burst,
            second: 0,
        }
    }

    #[inline]
    pub fn take(&mut self, now: u32) -> bool {
        if now != self.second {
            let refill = now
                .wrapping_sub(self.second)
                .saturating_mul(self.per_second);
            self.tokens = self
                .tokens
                .saturating_add(refill)
                .min(self.burst.max(self.per_second));
            self.second = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// One pass of a packet through one pod's zone. `Err` is the drop reason.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn check(
    ct: &mut Conntrack,
    port: u16,
    ep: &Endpoint,
    dir: Direction,
    flow: &Flow,
    pol: &PolicyView<'_>,
    now: u32,
    log: &mut FlowLog<'_>,
    ctr: &WorkerCounters,
) -> Result<(), DropReason> {
    if !ep.policy.programmed {
        // before conntrack: nothing is let in or out, and nothing recorded
        // that would outlive the policy it gets
        return Err(DropReason::Unprogrammed);
    }
    let policed = ep.policy.ingress || ep.policy.egress;
    let zone = ep.zone;
    match ct.track(zone, flow, now) {
        Track::Known { .. } | Track::Related => return Ok(()),
        Track::Invalid if policed => return Err(DropReason::CtInvalid),
        Track::Invalid => return Ok(()),
        Track::New => {}
    }
    // a TCP connection opens with a SYN, or is picked up from an ACK;
    // anything else begins nothing, is let through only where no policy
    // would have to judge it, and is remembered nowhere (Linux leaves it
    // INVALID and untracked)
    let picked_up = flow.proto == PROTO_TCP
        && flow.quoted.is_none()
        && match tcp_begin(flow.tcp_flags) {
            TcpBegin::Syn => false,
            TcpBegin::MidStream => true,
            TcpBegin::Nothing if policed => return Err(DropReason::CtInvalid),
            TcpBegin::Nothing => return Ok(()),
        };
    let has = match dir {
        Direction::Ingress => ep.policy.ingress,
        Direction::Egress => ep.policy.egress,
    };
    if has {
        let d: Decision =
            pol.compiled
                .evaluate(ep.policy.index as usize, dir, &flow.policy_packet());
        if let Some(logged) = d.logged {
            record(log, now, pol.generation, port, dir, flow, logged, &d, ctr);
        }
        if let Some(hit) = pol
            .compiled
            .rule_index(d.reason)
            .and_then(|i| pol.rule_slots.get(i))
            .and_then(|&s| ctr.rule_hits.get(s as usize))
        {
            hit.add(1);
        }
        if !d.allow {
            return Err(match dir {
                Direction::Ingress => DropReason::PolicyIngress,
                Direction::Egress => DropReason::PolicyEgress,
            });
        }
    }
    // errors about unknown flows, and ICMP other than echo, are judged,
    // not remembered
    if Conntrack::opens(flow) {
        match ct.create(zone, flow, now) {
            Created::Fresh => ctr.ct_created.add(1),
            Created::Evicted => {
                ctr.ct_created.add(1);
                ctr.ct_evicted.add(1);
            }
            // as Linux does when early drop finds no room: the packet goes
            Created::Refused => {
                ctr.ct_refused.add(1);
                return Err(DropReason::CtFull);
            }
        }
        if picked_up {
            ctr.ct_picked_up.add(1);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[cold]
fn record(
    log: &mut FlowLog<'_>,
    now: u32,
    generation: u64,
    port: u16,
    direction: Direction,
    flow: &Flow,
    logged: Reason,
    d: &Decision,
    ctr: &WorkerCounters,
) {
    let p = flow.policy_packet();
    let r = LogRecord {
        now,
        generation,
        port,
        direction,
        src: p.src,
        dst: p.dst,
        proto: p.proto,
        sport: p.sport,
        dport: p.dport,
        logged,
        decided: d.reason,
        allow: d.allow,
    };
    if !log.limiter.take(now) || log.queue.push(r).is_err() {
        ctr.log_suppressed.add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::{State, Timeouts};
    use crate::tables::endpoints::EndpointPolicy;
    use crate::wire::ipv4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    use policy::compile::{Compiled, World};

    #[test]
    fn rate_limit_refills_per_second_up_to_the_burst() {
        let mut r = RateLimit::new(2, 3);
        assert_eq!((0..5).filter(|_| r.take(0)).count(), 3);
        assert_eq!((0..5).filter(|_| r.take(1)).count(), 2);
        assert_eq!((0..9).filter(|_| r.take(10)).count(), 3);
    }

    const A: u32 = 0x0a41_0001;
    const B: u32 = 0x0a41_0002;
    const PORT_A: u16 = 1;
    const PORT_B: u16 = 2;

    /// B takes TCP to port 80 and logs every TCP connection it is asked
    /// about; A has no policy.
    fn compiled(b_port: u16) -> Compiled {
        let world: World = serde_json::from_value(serde_json::json!({
            "namespaces": [{"name": "default"}],
            "endpoints": [
                {"name": "default/a", "namespace": "default", "labels": {"app": "a"},
                 "ips": ["10.65.0.1"], "local": true},
                {"name": "default/b", "namespace": "default", "labels": {"app": "b"},
                 "ips": ["10.65.0.2"], "local": true}
            ],
            "policies": [{"calico": {
                "metadata": {"name": "b-web", "namespace": "default"},
                "spec": {"selector": "app == 'b'", "types": ["Ingress"],
                         "ingress": [{"action": "Log", "protocol": "TCP"},
                                     {"action": "Allow", "protocol": "TCP",
                                      "destination": {"ports": [b_port]}}]}
            }}]
        }))
        .expect("test world");
        Compiled::compile(&world).expect("compiles")
    }

    /// One worker's table, its counters and flow log, and the two pods.
    struct Rig {
        c: Compiled,
        ct: Conntrack,
        a: Endpoint,
        b: Endpoint,
        queue: ArrayQueue<LogRecord>,
        limiter: RateLimit,
        ctr: WorkerCounters,
    }

    impl Rig {
        fn new(b_port: u16) -> Rig {
            let c = compiled(b_port);
            let ep = |name: &str, ip: u32, zone: u16| {
                let i = c.endpoint_index(name).expect("endpoint");
                Endpoint {
                    mac: u64::from(zone),
                    ips: vec![ip].into(),
                    policy: EndpointPolicy {
                        index: i as u32,
                        ingress: c.has_policy(i, Direction::Ingress),
                        egress: c.has_policy(i, Direction::Egress),
                        programmed: true,
                    },
                    zone,
                }
            };
            let (a, b) = (ep("default/a", A, 1), ep("default/b", B, 2));
            assert!(!a.policy.ingress && !a.policy.egress, "A is not policed");
            assert!(b.policy.ingress && !b.policy.egress, "B is, on ingress");
            Rig {
                c,
                ct: Conntrack::new(1024, Timeouts::default()),
                a,
                b,
                queue: ArrayQueue::new(64),
                limiter: RateLimit::new(1000, 1000),
                ctr: WorkerCounters::new(4),
            }
        }

        /// Through the zones a packet between A and B passes: the sender's
        /// egress, then the receiver's ingress.
        fn send(&mut self, f: &Flow, now: u32) -> Result<(), DropReason> {
            let (from, to) = if f.src == A {
                ((PORT_A, self.a.clone()), (PORT_B, self.b.clone()))
            } else {
                ((PORT_B, self.b.clone()), (PORT_A, self.a.clone()))
            };
            self.zone(from.0, &from.1, Direction::Egress, f, now)?;
            self.zone(to.0, &to.1, Direction::Ingress, f, now)
        }

        /// One zone's check; a drop is counted as the pipeline counts it.
        fn zone(
            &mut self,
            port: u16,
            ep: &Endpoint,
            dir: Direction,
            f: &Flow,
            now: u32,
        ) -> Result<(), DropReason> {
            let pol = PolicyView {
                compiled: &self.c,
                generation: 1,
                rule_slots: &[],
            };
            let mut log = FlowLog {
                queue: &self.queue,
                limiter: &mut self.limiter,
            };
            let v = check(
                &mut self.ct,
                port,
                ep,
                dir,
                f,
                &pol,
                now,
                &mut log,
                &self.ctr,
            );
            if let Err(r) = v {
                self.ctr.drop(r, 1);
            }
            v
        }

        /// The state of `f`'s connection in A's zone and in B's.
        fn states(&self, f: &Flow, now: u32) -> (Option<State>, Option<State>) {
            (
                self.ct.state_of(self.a.zone, f, now),
                self.ct.state_of(self.b.zone, f, now),
            )
        }

        fn logged(&self) -> Vec<LogRecord> {
            std::iter::from_fn(|| self.queue.pop()).collect()
        }

        /// The worker restarted: no connection is known any more.
        fn restart(&mut self) {
            self.ct = Conntrack::new(1024, Timeouts::default());
        }
    }

    fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8) -> Flow {
        Flow {
            src,
            dst,
            proto: PROTO_TCP,
            sport,
            dport,
            tcp_flags: flags,
            ..Flow::default()
        }
    }

    #[test]
    fn a_mid_stream_ack_is_judged_as_a_syn_and_picked_up_when_allowed() {
        let mut r = Rig::new(80);
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        assert_eq!(r.send(&ack, 5), Ok(()));
        // an entry in each zone, the ACK's direction the original one
        assert_eq!(
            r.states(&ack, 5),
            (Some(State::PickedUp), Some(State::PickedUp))
        );
        assert_eq!(r.ct.track(2, &ack, 5), Track::Known { reply: false });
        assert_eq!(
            (r.ctr.ct_created.get(), r.ctr.ct_picked_up.get()),
            (2, 2),
            "A's unpoliced zone records it too"
        );
        // B's policy judged it, and its Log rule wrote the flow log as for a SYN
        let log = r.logged();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(
            (log[0].port, log[0].direction, log[0].allow),
            (PORT_B, Direction::Ingress, true)
        );
        assert_eq!((log[0].src, log[0].sport, log[0].dport), (A, 40000, 80));
        // the other side answers: a reply in both zones, no policy, and the
        // connection is established for good
        let back = tcp(B, 80, A, 40000, TCP_ACK);
        assert_eq!(r.send(&back, 6), Ok(()));
        assert_eq!(
            r.states(&ack, 6),
            (Some(State::Established), Some(State::Established))
        );
        assert!(r.logged().is_empty(), "replies run no rules");
        // and lives as long as an established connection does
        let t = Timeouts::default();
        assert_eq!(r.send(&ack, 6 + t.tcp_established), Ok(()));
        assert_eq!(r.ctr.ct_created.get(), 2);
        assert_eq!(r.ctr.drops_of(DropReason::CtInvalid), 0);
    }

    #[test]
    fn a_mid_stream_ack_that_policy_denies_is_dropped_for_policy() {
        let mut r = Rig::new(80);
        // PSH-ACK: PSH does not count
        let ack = tcp(A, 40000, B, 81, TCP_ACK | 0x08);
        assert_eq!(r.send(&ack, 5), Err(DropReason::PolicyIngress));
        assert_eq!(r.ctr.drops_of(DropReason::PolicyIngress), 1);
        assert_eq!(r.ctr.drops_of(DropReason::CtInvalid), 0);
        // nothing in B's zone; A's unpoliced zone let it out and keeps it,
        // as it would have kept A's SYN, until it expires or is dropped early
        assert_eq!(r.states(&ack, 5), (Some(State::PickedUp), None));
        assert_eq!(r.ctr.ct_picked_up.get(), 1);
        let log = r.logged();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!((log[0].port, log[0].allow), (PORT_B, false));
        // every later segment is judged again, and dropped again
        assert_eq!(r.send(&ack, 6), Err(DropReason::PolicyIngress));
        assert_eq!(r.states(&ack, 6), (Some(State::PickedUp), None));
    }

    #[test]
    fn segments_that_cannot_begin_a_connection_stay_invalid() {
        let mut r = Rig::new(80);
        for (i, flags) in [
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_FIN,
            TCP_FIN | TCP_ACK,
            TCP_SYN | TCP_ACK,
            TCP_SYN | TCP_RST,
            TCP_SYN | TCP_FIN,
            0,
            0x08,
        ]
        .into_iter()
        .enumerate()
        {
            let f = tcp(A, 40000 + i as u16, B, 80, flags);
            // at a pod with policy: dropped as invalid, whatever the policy says
            assert_eq!(
                r.zone(PORT_B, &r.b.clone(), Direction::Ingress, &f, 5),
                Err(DropReason::CtInvalid),
                "flags {flags:#04x}"
            );
            // without: let through, and remembered nowhere
            assert_eq!(
                r.zone(PORT_A, &r.a.clone(), Direction::Egress, &f, 5),
                Ok(()),
                "flags {flags:#04x}"
            );
            assert_eq!(r.states(&f, 5), (None, None), "flags {flags:#04x}");
        }
        assert_eq!(r.ctr.drops_of(DropReason::CtInvalid), 9);
        assert_eq!(r.ctr.ct_created.get(), 0);
        assert!(r.logged().is_empty(), "no policy ran");
    }

    #[test]
    fn a_picked_up_connection_closes_as_any_other() {
        let t = Timeouts::default();
        // FINs both ways and the last ACK
        let mut r = Rig::new(80);
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        r.send(&ack, 1).expect("picked up");
        r.send(&tcp(B, 80, A, 40000, TCP_ACK), 1).expect("answered");
        r.send(&tcp(A, 40000, B, 80, TCP_FIN | TCP_ACK), 2)
            .expect("A's FIN");
        assert_eq!(
            r.states(&ack, 2),
            (Some(State::FinWait), Some(State::FinWait))
        );
        r.send(&tcp(B, 80, A, 40000, TCP_FIN | TCP_ACK), 3)
            .expect("B's FIN");
        assert_eq!(
            r.states(&ack, 3),
            (Some(State::TimeWait), Some(State::TimeWait))
        );
        assert_eq!(r.send(&ack, 3), Ok(()), "the last ACK");
        // gone after the FIN timeout, not the established one
        assert_eq!(r.states(&ack, 3 + t.tcp_fin + 1), (None, None));
        // a new SYN on the same ports is a new connection, judged again
        r.logged();
        assert_eq!(r.send(&tcp(A, 40000, B, 80, TCP_SYN), 4), Ok(()));
        assert_eq!(r.logged().len(), 1);
        assert_eq!(
            r.states(&ack, 4),
            (Some(State::SynSent), Some(State::SynSent))
        );

        // a reset before any answer, and one after
        for answered in [false, true] {
            let mut r = Rig::new(80);
            r.send(&ack, 1).expect("picked up");
            if answered {
                r.send(&tcp(B, 80, A, 40000, TCP_ACK), 1).expect("answered");
            }
            assert_eq!(r.send(&tcp(B, 80, A, 40000, TCP_RST), 2), Ok(()));
            assert_eq!(
                r.states(&ack, 2),
                (Some(State::Close), Some(State::Close)),
                "answered: {answered}"
            );
            assert_eq!(r.states(&ack, 2 + t.tcp_close + 1), (None, None));
        }
    }

    #[test]
    fn an_unanswered_pickup_lives_as_long_as_linux_lets_it() {
        let t = Timeouts::default();
        let mut r = Rig::new(80);
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        r.send(&ack, 0).expect("picked up");
        // the picker's own segments keep it, unanswered, no longer each time
        r.send(&ack, t.tcp_unacknowledged).expect("still known");
        assert_eq!(r.ctr.ct_picked_up.get(), 2, "not picked up again");
        let end = 2 * t.tcp_unacknowledged;
        assert_eq!(
            r.states(&ack, end),
            (Some(State::PickedUp), Some(State::PickedUp))
        );
        assert_eq!(r.states(&ack, end + 1), (None, None));
    }

    #[test]
    fn connections_go_on_across_a_restart_as_policy_allows() {
        let open = |r: &mut Rig, sport: u16| {
            r.send(&tcp(A, sport, B, 80, TCP_SYN), 1)?;
            r.send(&tcp(B, 80, A, sport, TCP_SYN | TCP_ACK), 1)?;
            r.send(&tcp(A, sport, B, 80, TCP_ACK), 1)
        };
        let mut r = Rig::new(80);
        for sport in [40000, 40001] {
            open(&mut r, sport).expect("allowed");
        }
        r.logged();
        r.restart();
        // A speaks first: B's policy judges it as it judged the SYN
        assert_eq!(r.send(&tcp(A, 40000, B, 80, TCP_ACK), 100), Ok(()));
        assert_eq!(r.send(&tcp(B, 80, A, 40000, TCP_ACK), 100), Ok(()));
        // B speaks first: in its zone a connection of its own, which A's
        // lack of policy lets in; A's segments are then its answers, as
        // Linux takes the first segment it sees for the original direction
        assert_eq!(r.send(&tcp(B, 80, A, 40001, TCP_ACK), 100), Ok(()));
        assert_eq!(r.send(&tcp(A, 40001, B, 80, TCP_ACK), 100), Ok(()));
        for sport in [40000, 40001] {
            assert_eq!(
                r.states(&tcp(A, sport, B, 80, 0), 100),
                (Some(State::Established), Some(State::Established)),
                "port {sport}"
            );
        }
        assert_eq!(r.ctr.ct_picked_up.get(), 4);
        assert_eq!(r.logged().len(), 1, "B's rules ran for A's ACK only");
        // the policy changed while the switch was away: what it no longer
        // allows does not go on
        r.c = compiled(81);
        r.restart();
        assert_eq!(
            r.send(&tcp(A, 40000, B, 80, TCP_ACK), 200),
            Err(DropReason::PolicyIngress)
        );
    }
}
