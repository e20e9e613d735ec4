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

use crate::counters::{DropReason, WorkerCounters};
use crate::tables::conntrack::{Conntrack, Created, Flow, Track, PROTO_TCP};
use crate::tables::endpoints::Endpoint;
use crossbeam_queue::ArrayQueue;
use policy::{Decision, Direction, Reason};

/// The compiled policy of one configuration generation, as workers see it.
pub struct PolicyView<'a> {
    pub compiled: &'a policy::compile::Compiled,
    pub generation: u64,
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
    // a TCP connection opens with a SYN; anything else that opens nothing
    // is let through only where no policy would have to judge it
    if flow.proto == PROTO_TCP && flow.quoted.is_none() && policed && !opens(flow.tcp_flags) {
        return Err(DropReason::CtInvalid);
    }
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
    }
    Ok(())
}

#[inline(always)]
fn opens(flags: u8) -> bool {
    // SYN without ACK or RST
    flags & 0x16 == 0x02
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

    #[test]
    fn rate_limit_refills_per_second_up_to_the_burst() {
        let mut r = RateLimit::new(2, 3);
        assert_eq!((0..5).filter(|_| r.take(0)).count(), 3);
        assert_eq!((0..5).filter(|_| r.take(1)).count(), 2);
        assert_eq!((0..9).filter(|_| r.take(10)).count(), 3);
    }
}
