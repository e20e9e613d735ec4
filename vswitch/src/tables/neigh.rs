//! The node's ARP neighbours on the underlay: the MAC behind each next hop
//! (the gateway, and peer nodes on the same subnet) that tunnelled and
//! natOutgoing traffic leaves the uplink for.
//!
//! One table shared by every worker, without locks. The uplink's owner
//! learns from the ARP it receives ([`handle_arp`]); any worker that misses
//! marks the address pending ([`Neighbors::mark_pending`]), and the one that
//! wins the mark sends the request, so a miss storm from all workers costs
//! one request per address per second. An entry is usable for the reachable
//! time (300 s by default) after it was last confirmed; from four fifths of
//! it on it is stale: still used, and a request goes out to confirm it
//! (once a second at most), so traffic never stops while the answer comes.
//!
//! An address that is only asked for (incomplete) never takes the slot of
//! an entry with a MAC, reachable or stale: a pod that sends to every
//! address of the underlay's subnet makes the switch ask for each, and
//! none of them may push out the gateway or a peer node. Requests for
//! addresses without a MAC are also rate limited switch-wide
//! ([`Neighbors::request_allowed`], a token bucket all workers share);
//! requests that confirm a known neighbour are not, so that a scan cannot
//! starve the gateway's confirmation (they are one a second per entry at
//! most anyway).
//!
//! The table is set-associative like the FDB: an address hashes (with a
//! per-table seed) to a bucket of eight slots. A slot is four fields: a key
//! (the address in the high 32 bits, a version in the low 32), the MAC, and
//! the seconds it was last confirmed and last asked for. An entry is more
//! than 64 bits, so each slot is a sequence lock whose sequence is the key's
//! version, and in which nobody ever waits for anybody:
//!
//! - a writer (learn, mark) first reads the slot, decides, then takes it by
//!   compare-and-swap of the key from the even version it read to the next,
//!   odd, one; writes the other words; and publishes the key with the next
//!   even version. The swap fails if any other writer published or took the
//!   slot since the read, and the writer then starts over (a few times at
//!   most, then gives up: a learn is repeated by the next ARP, and a lost
//!   mark means another worker is marking the same address).
//! - a reader loads the key, the other words and the key again (an acquire
//!   fence between, release fence on the writer's side); it uses the copy
//!   only if both keys are equal and even, else it reads again, a few times
//!   at most, then reports a miss. A writer holds a slot for a handful of
//!   stores, so that is rare.
//!
//! Because a version is never reused (2^31 writes per slot would have to
//! happen between a reader's two loads), a reader never mixes two entries,
//! nor a writer overwrites an entry it did not read. Two writers that miss
//! the same new address at the same moment take the same first free slot,
//! so one of them loses the swap and then finds the other's entry; an
//! address can end up in two slots only when their reads differ, and the
//! younger copy then ages out.

use crate::wire::eth::ETHERTYPE_ARP;
use crate::wire::eth::{is_group, mac_at, mac_bytes, ETH_HLEN};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{
    fence, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// Seconds an answer is trusted without being confirmed again;
/// configurable with [`Neighbors::set_reachable`].
pub const DEFAULT_REACHABLE: u32 = 300;
/// The least interval between two requests for one address.
pub const ASK_INTERVAL: u32 = 1;
/// An unanswered address keeps its slot this long after the last request,
/// so that its requests stay rate-limited; after that the slot is free.
const INCOMPLETE_HOLD: u32 = 3;
/// Requests for unresolved addresses the whole switch may send per second
/// (and in one burst).
pub const REQUESTS_PER_SECOND: u32 = 100;

const WAYS: usize = 8;
const FREE: u64 = 0;
const READ_TRIES: usize = 4;
const WRITE_TRIES: usize = 4;

const ARP_LEN: usize = 28;
/// An Ethernet header and an ARP packet for IPv4 over Ethernet.
pub const ARP_FRAME_LEN: usize = ETH_HLEN + ARP_LEN;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// htype Ethernet, ptype IPv4, hlen 6, plen 4.
const ARP_ETH_IPV4: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

/// Seconds since `stamp`; a stamp a second ahead of this reader's clock
/// (another worker read it later) is age 0, as in the FDB.
#[inline(always)]
fn age(stamp: u32, now: u32) -> u32 {
    let a = now.wrapping_sub(stamp);
    if a > u32::MAX / 2 {
        0
    } else {
        a
    }
}

#[inline(always)]
fn ip_of(key: u64) -> u32 {
    (key >> 32) as u32
}

#[inline(always)]
fn busy(key: u64) -> bool {
    key & 1 == 1
}

#[inline(always)]
fn key_of(ip: u32, version: u32) -> u64 {
    u64::from(ip) << 32 | u64::from(version)
}

#[repr(C, align(64))]
struct Bucket {
    keys: [AtomicU64; WAYS],
    /// 0 while the address is asked for and not answered (incomplete).
    macs: [AtomicU64; WAYS],
    confirmed: [AtomicU32; WAYS],
    asked: [AtomicU32; WAYS],
}

/// A consistent read of one slot.
#[derive(Debug, Clone, Copy)]
struct Snap {
    key: u64,
    mac: u64,
    confirmed: u32,
    asked: u32,
}

enum Victim {
    /// This slot, taken from this published key.
    Slot(usize, u64),
    /// The address has appeared meanwhile: look again.
    Present,
    Full,
}

enum Find {
    Found(usize, Snap),
    /// A writer holds the slot of this address.
    Busy,
    Absent,
}

/// What the table knows of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Use this MAC.
    Reachable(u64),
    /// Use this MAC, and confirm it: [`Neighbors::mark_pending`], then
    /// send a request if that says so.
    Stale(u64),
    /// No usable MAC: mark pending, request if told, hold or drop the packet.
    Unknown,
}

/// The state of an entry, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    Reachable,
    Stale,
    /// Asked for, not answered yet.
    Incomplete,
}

impl NeighState {
    pub fn name(self) -> &'static str {
        match self {
            NeighState::Reachable => "reachable",
            NeighState::Stale => "stale",
            NeighState::Incomplete => "incomplete",
        }
    }
}

/// One entry as [`Neighbors::entries`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    pub ip: u32,
    /// `None` while incomplete.
    pub mac: Option<u64>,
    pub state: NeighState,
    /// Seconds since confirmed (since asked, when incomplete).
    pub age: u32,
}

/// The underlay ARP table; see the module documentation.
pub struct Neighbors {
    buckets: Box<[Bucket]>,
    mask: usize,
    seed: u64,
    reachable: AtomicU32,
    /// The request token bucket: the second it was last filled (high 32
    /// bits) and the tokens left (low 32).
    requests: AtomicU64,
    per_second: u32,
}

impl Neighbors {
    /// A table with room for `capacity` neighbours (twice as many slots, so
    /// that buckets rarely fill before the table does).
    pub fn new(capacity: usize) -> Neighbors {
        let nbuckets = (capacity.max(1) * 2).div_ceil(WAYS).next_power_of_two();
        let buckets = (0..nbuckets)
            .map(|_| Bucket {
                keys: Default::default(),
                macs: Default::default(),
                confirmed: Default::default(),
                asked: Default::default(),
            })
            .collect();
        // a per-table seed: a host on the underlay cannot aim its ARP at one bucket
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Neighbors {
            buckets,
            mask: nbuckets - 1,
            seed,
            reachable: AtomicU32::new(DEFAULT_REACHABLE),
            requests: AtomicU64::new(u64::from(REQUESTS_PER_SECOND)),
            per_second: REQUESTS_PER_SECOND,
        }
    }

    /// Sets the switch-wide rate of requests for unresolved addresses.
    pub fn set_request_rate(&mut self, per_second: u32) {
        self.per_second = per_second.max(1);
        self.requests = AtomicU64::new(u64::from(self.per_second));
    }

    /// Takes a token for a request about an address without a MAC at
    /// second `now`; false when the switch has sent its share this second.
    pub fn request_allowed(&self, now: u32) -> bool {
        let cap = self.per_second;
        for _ in 0..WRITE_TRIES {
            let s = self.requests.load(Relaxed);
            let (second, mut tokens) = ((s >> 32) as u32, s as u32);
            let elapsed = age(second, now);
            let second = if elapsed > 0 {
                tokens = tokens.saturating_add(elapsed.saturating_mul(cap)).min(cap);
                now
            } else {
                second
            };
            if tokens == 0 {
                return false;
            }
            let next = u64::from(second) << 32 | u64::from(tokens - 1);
            if self
                .requests
                .compare_exchange_weak(s, next, Relaxed, Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Slots in the table.
    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    pub fn reachable(&self) -> u32 {
        self.reachable.load(Relaxed)
    }

    /// Sets the reachable time; entries become stale at four fifths of it.
    pub fn set_reachable(&self, secs: u32) {
        self.reachable.store(secs.max(1), Relaxed);
    }

    #[inline(always)]
    fn bucket(&self, ip: u32) -> &Bucket {
        let h = (u64::from(ip) ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.buckets[(h >> 32) as usize & self.mask]
    }

    /// A consistent copy of slot `i`, whoever's it is; `None` while a writer
    /// holds it.
    #[inline(always)]
    fn read(b: &Bucket, i: usize) -> Option<Snap> {
        for _ in 0..READ_TRIES {
            let key = b.keys[i].load(Acquire);
            if busy(key) {
                std::hint::spin_loop();
                continue;
            }
            let mac = b.macs[i].load(Relaxed);
            let confirmed = b.confirmed[i].load(Relaxed);
            let asked = b.asked[i].load(Relaxed);
            fence(Acquire);
            if b.keys[i].load(Relaxed) == key {
                return Some(Snap {
                    key,
                    mac,
                    confirmed,
                    asked,
                });
            }
        }
        None
    }

    #[inline(always)]
    fn find(b: &Bucket, ip: u32) -> Find {
        let mut busy_seen = false;
        for i in 0..WAYS {
            if ip_of(b.keys[i].load(Relaxed)) != ip {
                continue;
            }
            match Self::read(b, i) {
                Some(c) if ip_of(c.key) == ip => return Find::Found(i, c),
                Some(_) => {} // taken by another address meanwhile
                None => busy_seen = true,
            }
        }
        if busy_seen {
            Find::Busy
        } else {
            Find::Absent
        }
    }

    /// Takes slot `i` from the published key `from`, writes `ip`'s entry
    /// and publishes it; false if another writer came first.
    fn write(
        b: &Bucket,
        i: usize,
        from: u64,
        ip: u32,
        mac: u64,
        confirmed: u32,
        asked: u32,
    ) -> bool {
        let version = (from as u32).wrapping_add(1);
        if b.keys[i]
            .compare_exchange(from, key_of(ip, version), Acquire, Relaxed)
            .is_err()
        {
            return false;
        }
        // no reader may see these stores without then seeing the odd key
        fence(Release);
        b.macs[i].store(mac, Relaxed);
        b.confirmed[i].store(confirmed, Relaxed);
        b.asked[i].store(asked, Relaxed);
        b.keys[i].store(key_of(ip, version.wrapping_add(1)), Release);
        true
    }

    /// Where a new entry for `ip` goes: a free slot, else one that is of no
    /// use any more (expired, or incomplete and no longer asked for), else,
    /// when `evict`, the incomplete entry asked for longest ago (not in the
    /// last [`ASK_INTERVAL`]). An entry with a MAC is never given up for
    /// one without.
    fn victim(&self, b: &Bucket, ip: u32, now: u32, evict: bool) -> Victim {
        let reachable = self.reachable();
        let mut oldest: Option<(usize, u64, u32)> = None;
        for i in 0..WAYS {
            if ip_of(b.keys[i].load(Relaxed)) == ip {
                // another writer has just put it there
                return Victim::Present;
            }
            let Some(c) = Self::read(b, i) else {
                continue;
            };
            if c.key == FREE {
                return Victim::Slot(i, c.key);
            }
            let useless = if c.mac == 0 {
                age(c.asked, now) > INCOMPLETE_HOLD
            } else {
                age(c.confirmed, now) > reachable
            };
            if useless {
                return Victim::Slot(i, c.key);
            }
            // an address being asked for right now stays
            let a = age(c.asked, now);
            if evict && c.mac == 0 && a >= ASK_INTERVAL && oldest.is_none_or(|(_, _, o)| a > o) {
                oldest = Some((i, c.key, a));
            }
        }
        match oldest {
            Some((i, k, _)) => Victim::Slot(i, k),
            None => Victim::Full,
        }
    }

    #[inline(always)]
    fn classify(&self, c: &Snap, now: u32) -> Resolution {
        if c.mac == 0 {
            return Resolution::Unknown;
        }
        let reachable = self.reachable();
        let a = age(c.confirmed, now);
        if a > reachable {
            Resolution::Unknown
        } else if a >= reachable - reachable / 5 {
            Resolution::Stale(c.mac)
        } else {
            Resolution::Reachable(c.mac)
        }
    }

    /// What the table says of `ip` at second `now`: [`Neighbors::lookup`]
    /// and [`Neighbors::stale`] in one read.
    #[inline]
    pub fn resolve(&self, ip: u32, now: u32) -> Resolution {
        if ip == 0 {
            return Resolution::Unknown;
        }
        match Self::find(self.bucket(ip), ip) {
            Find::Found(_, c) => self.classify(&c, now),
            Find::Busy | Find::Absent => Resolution::Unknown,
        }
    }

    /// The MAC of `ip`, if it was confirmed within the reachable time.
    #[inline]
    pub fn lookup(&self, ip: u32, now: u32) -> Option<u64> {
        match self.resolve(ip, now) {
            Resolution::Reachable(mac) | Resolution::Stale(mac) => Some(mac),
            Resolution::Unknown => None,
        }
    }

    /// Whether `ip` has a usable MAC that should be confirmed again.
    #[inline]
    pub fn stale(&self, ip: u32, now: u32) -> bool {
        matches!(self.resolve(ip, now), Resolution::Stale(_))
    }

    /// Records that `ip` is at `mac` (an ARP request for us, or an answer).
    /// A new address takes a free or useless slot, never a live entry's, so
    /// that a flood of requests from made-up senders cannot push out the
    /// neighbours in use. Returns whether the entry is now in the table.
    pub fn learn(&self, ip: u32, mac: u64, now: u32) -> bool {
        self.update(ip, mac, now, true)
    }

    /// [`Neighbors::learn`] for an address already in the table only
    /// (gratuitous ARP).
    pub fn refresh(&self, ip: u32, mac: u64, now: u32) -> bool {
        self.update(ip, mac, now, false)
    }

    fn update(&self, ip: u32, mac: u64, now: u32, create: bool) -> bool {
        if ip == 0 || mac == 0 || is_group(mac) {
            return false;
        }
        let b = self.bucket(ip);
        for _ in 0..WRITE_TRIES {
            match Self::find(b, ip) {
                Find::Found(i, c) => {
                    if c.mac == mac && c.confirmed == now {
                        // written once a second at most, so the line stays shared
                        return true;
                    }
                    if Self::write(b, i, c.key, ip, mac, now, c.asked) {
                        return true;
                    }
                }
                Find::Busy => std::hint::spin_loop(),
                Find::Absent if create => match self.victim(b, ip, now, false) {
                    Victim::Slot(i, from) => {
                        let never_asked = now.wrapping_sub(ASK_INTERVAL);
                        if Self::write(b, i, from, ip, mac, now, never_asked) {
                            return true;
                        }
                    }
                    Victim::Present => {}
                    Victim::Full => return false,
                },
                Find::Absent => return false,
            }
        }
        false
    }

    /// Notes at second `now` that `ip` is wanted and unresolved or stale.
    /// True if the caller should send a request now: nobody asked for it in
    /// the last [`ASK_INTERVAL`]. An unknown address takes a free or
    /// useless slot, or an older incomplete entry's, to hold that time;
    /// when there is none (the bucket is full of neighbours with a MAC) it
    /// is not asked for.
    pub fn mark_pending(&self, ip: u32, now: u32) -> bool {
        if ip == 0 {
            return false;
        }
        let b = self.bucket(ip);
        for _ in 0..WRITE_TRIES {
            match Self::find(b, ip) {
                Find::Found(i, c) => {
                    if age(c.asked, now) < ASK_INTERVAL {
                        return false;
                    }
                    if Self::write(b, i, c.key, ip, c.mac, c.confirmed, now) {
                        return true;
                    }
                }
                // another worker is writing this address's entry: likely the same mark
                Find::Busy => return false,
                Find::Absent => match self.victim(b, ip, now, true) {
                    Victim::Slot(i, from) => {
                        if Self::write(b, i, from, ip, 0, 0, now) {
                            return true;
                        }
                    }
                    Victim::Present => {}
                    Victim::Full => return false,
                },
            }
        }
        false
    }

    /// The entries in use: reachable, stale, and incomplete ones still
    /// asked for.
    pub fn entries(&self, now: u32) -> Vec<NeighEntry> {
        let mut out = Vec::new();
        for b in self.buckets.iter() {
            for i in 0..WAYS {
                let Some(c) = Self::read(b, i) else {
                    continue;
                };
                if c.key == FREE {
                    continue;
                }
                let ip = ip_of(c.key);
                let e = match self.classify(&c, now) {
                    Resolution::Reachable(mac) => (Some(mac), NeighState::Reachable),
                    Resolution::Stale(mac) => (Some(mac), NeighState::Stale),
                    Resolution::Unknown if c.mac == 0 && age(c.asked, now) <= INCOMPLETE_HOLD => {
                        (None, NeighState::Incomplete)
                    }
                    Resolution::Unknown => continue,
                };
                out.push(NeighEntry {
                    ip,
                    mac: e.0,
                    state: e.1,
                    age: if c.mac == 0 {
                        age(c.asked, now)
                    } else {
                        age(c.confirmed, now)
                    },
                });
            }
        }
        out
    }
}

// ---------------------------------------------------------------- ARP wire

/// Writes a broadcast ARP request from `my_mac`/`my_ip` for `target`.
/// The frame is 42 bytes; the NIC pads it to the Ethernet minimum.
pub fn arp_request(buf: &mut [u8; ARP_FRAME_LEN], my_mac: u64, my_ip: u32, target: u32) {
    let me = mac_bytes(my_mac);
    buf[0..6].fill(0xff);
    buf[6..12].copy_from_slice(&me);
    buf[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut buf[ETH_HLEN..];
    a[0..6].copy_from_slice(&ARP_ETH_IPV4);
    a[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    a[8..14].copy_from_slice(&me);
    a[14..18].copy_from_slice(&my_ip.to_be_bytes());
    a[18..24].fill(0);
    a[24..28].copy_from_slice(&target.to_be_bytes());
}

/// What became of an ARP frame from the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkArp {
    /// The frame was a request for our address and is now our reply,
    /// rewritten in place: send it back out of the uplink.
    Reply,
    /// The sender was learned or refreshed; nothing to send.
    Learned,
    /// Not for us, or not acceptable.
    Ignore,
}

/// An address no single host may send from: this network (0/8), loopback,
/// multicast, reserved and broadcast.
#[inline(always)]
fn bogus_sender(ip: u32) -> bool {
    let first = (ip >> 24) as u8;
    first == 0 || first == 127 || first >= 224
}

/// Handles one ARP frame received on the uplink (an untagged Ethernet
/// frame), given this node's underlay address and MAC.
///
/// - A request for `my_ip` teaches us the sender and is answered in place.
/// - A reply addressed to `my_ip` refreshes the sender's entry, and fills
///   it if we asked; an unsolicited reply about an address we never asked
///   for teaches nothing (Linux's default, `arp_accept=0`), so a host cannot
///   plant entries by sending replies nobody wanted.
/// - Gratuitous ARP (sender address = target address) updates a known
///   entry: a neighbour that changed its MAC, or took over an address.
///
/// Everything else is ignored, and so is any frame that is truncated, not
/// Ethernet/IPv4 ARP, from a group or zero sender MAC or from our own MAC,
/// or from sender address 0 (a probe), our own address, or one no host
/// can have. We never answer for anybody else's address.
pub fn handle_arp(
    frame: &mut [u8],
    my_ip: u32,
    my_mac: u64,
    neigh: &Neighbors,
    now: u32,
) -> UplinkArp {
    let Some(f) = frame.first_chunk::<ARP_FRAME_LEN>() else {
        return UplinkArp::Ignore;
    };
    if u16::from_be_bytes([f[12], f[13]]) != ETHERTYPE_ARP
        || f[ETH_HLEN..ETH_HLEN + 6] != ARP_ETH_IPV4
    {
        return UplinkArp::Ignore;
    }
    let a = ETH_HLEN;
    let op = u16::from_be_bytes([f[a + 6], f[a + 7]]);
    let sha = mac_at(f, a + 8);
    let spa = u32::from_be_bytes([f[a + 14], f[a + 15], f[a + 16], f[a + 17]]);
    let tpa = u32::from_be_bytes([f[a + 24], f[a + 25], f[a + 26], f[a + 27]]);
    if sha == 0 || is_group(sha) || sha == my_mac || spa == my_ip || bogus_sender(spa) {
        return UplinkArp::Ignore;
    }
    if spa == tpa {
        // gratuitous, request or reply alike
        return if (op == ARP_REQUEST || op == ARP_REPLY) && neigh.refresh(spa, sha, now) {
            UplinkArp::Learned
        } else {
            UplinkArp::Ignore
        };
    }
    if tpa != my_ip {
        return UplinkArp::Ignore;
    }
    match op {
        ARP_REQUEST => {
            // the asker is about to talk to us: keep its answer ready
            neigh.learn(spa, sha, now);
            let me = mac_bytes(my_mac);
            let asker: [u8; 6] = [
                f[a + 8],
                f[a + 9],
                f[a + 10],
                f[a + 11],
                f[a + 12],
                f[a + 13],
            ];
            let r = &mut frame[..ARP_FRAME_LEN];
            r[0..6].copy_from_slice(&asker);
            r[6..12].copy_from_slice(&me);
            r[a + 6..a + 8].copy_from_slice(&ARP_REPLY.to_be_bytes());
            r[a + 8..a + 14].copy_from_slice(&me);
            r[a + 14..a + 18].copy_from_slice(&my_ip.to_be_bytes());
            r[a + 18..a + 24].copy_from_slice(&asker);
            r[a + 24..a + 28].copy_from_slice(&spa.to_be_bytes());
            UplinkArp::Reply
        }
        ARP_REPLY if neigh.refresh(spa, sha, now) => UplinkArp::Learned,
        _ => UplinkArp::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MY_IP: u32 = 0xc0a8_0a01; // 192.168.10.1
    const MY_MAC: u64 = 0x5254_0000_0001;
    const PEER_IP: u32 = 0xc0a8_0a02; // 192.168.10.2
    const PEER_MAC: u64 = 0x5254_0000_0002;
    const GW_IP: u32 = 0xc0a8_0afe;
    const GW_MAC: u64 = 0x5254_0000_00fe;

    /// Request from 52:54:00:00:00:02 / 192.168.10.2 for 192.168.10.1.
    const REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 192, 168, 10, 2, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 10, 1,
    ];

    /// Reply from 52:54:00:00:00:02 / 192.168.10.2 to us.
    const REPLY: [u8; 42] = [
        0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 192, 168, 10, 2, //
        0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 192, 168, 10, 1,
    ];

    /// Gratuitous request: 192.168.10.2 now at 52:54:00:00:00:22.
    const GARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x00, 0x00, 0x22, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x52, 0x54, 0x00, 0x00, 0x00, 0x22, 192, 168, 10, 2, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 10, 2,
    ];

    #[test]
    fn answers_a_request_for_our_address_and_learns_the_asker() {
        let n = Neighbors::new(16);
        let mut f = REQUEST.to_vec();
        f.extend_from_slice(&[0; 18]); // padded to 60 bytes on the wire
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 10), UplinkArp::Reply);
        let want: [u8; 42] = [
            0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
            0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 192, 168, 10, 1, //
            0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 192, 168, 10, 2,
        ];
        assert_eq!(f[..42], want);
        assert_eq!(f[42..], [0; 18], "padding untouched");
        assert_eq!(n.lookup(PEER_IP, 10), Some(PEER_MAC));
    }

    #[test]
    fn a_reply_fills_what_we_asked_for() {
        let n = Neighbors::new(16);
        assert!(n.mark_pending(PEER_IP, 5));
        assert_eq!(n.lookup(PEER_IP, 5), None);
        let mut f = REPLY;
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 5), UplinkArp::Learned);
        assert_eq!(f, REPLY, "nothing rewritten");
        assert_eq!(n.resolve(PEER_IP, 6), Resolution::Reachable(PEER_MAC));
    }

    #[test]
    fn an_unsolicited_reply_plants_nothing() {
        let n = Neighbors::new(16);
        let mut f = REPLY;
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 5), UplinkArp::Ignore);
        assert_eq!(n.lookup(PEER_IP, 5), None);
    }

    #[test]
    fn gratuitous_arp_updates_known_entries_only() {
        let n = Neighbors::new(16);
        let mut f = GARP;
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 1), UplinkArp::Ignore);
        assert_eq!(n.lookup(PEER_IP, 1), None);
        n.learn(PEER_IP, PEER_MAC, 1);
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 2), UplinkArp::Learned);
        assert_eq!(n.lookup(PEER_IP, 2), Some(0x5254_0000_0022));
        // as a reply too
        let mut r = GARP;
        r[21] = 2;
        r[27] = 0x23;
        assert_eq!(handle_arp(&mut r, MY_IP, MY_MAC, &n, 3), UplinkArp::Learned);
        assert_eq!(n.lookup(PEER_IP, 3), Some(0x5254_0000_0023));
    }

    #[test]
    fn never_answers_for_other_addresses() {
        let n = Neighbors::new(16);
        let mut f = REQUEST;
        f[41] = 3; // 192.168.10.3
        assert_eq!(handle_arp(&mut f, MY_IP, MY_MAC, &n, 1), UplinkArp::Ignore);
        assert_eq!(f[..41], REQUEST[..41]);
        assert_eq!(n.lookup(PEER_IP, 1), None, "overheard, not learned");
    }

    #[test]
    fn hostile_frames_are_ignored() {
        let n = Neighbors::new(16);
        type Spoil = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("truncated", Box::new(|f| f.truncate(41))),
            ("empty", Box::new(|f| f.clear())),
            ("not arp", Box::new(|f| f[13] = 0x00)),
            ("htype", Box::new(|f| f[15] = 6)),
            ("ptype", Box::new(|f| f[16] = 0x86)),
            ("hlen", Box::new(|f| f[18] = 8)),
            ("plen", Box::new(|f| f[19] = 16)),
            ("opcode", Box::new(|f| f[21] = 3)),
            ("multicast sender", Box::new(|f| f[22] = 0x01)),
            ("broadcast sender", Box::new(|f| f[22..28].fill(0xff))),
            ("zero sender", Box::new(|f| f[22..28].fill(0))),
            ("our own mac", Box::new(|f| f[27] = 0x01)),
            ("probe", Box::new(|f| f[28..32].fill(0))),
            ("our own ip", Box::new(|f| f[31] = 1)),
            (
                "loopback",
                Box::new(|f| f[28..32].copy_from_slice(&[127, 0, 0, 1])),
            ),
            ("multicast ip", Box::new(|f| f[28] = 224)),
            ("broadcast ip", Box::new(|f| f[28..32].fill(0xff))),
        ];
        for (what, spoil) in cases {
            let mut f = REQUEST.to_vec();
            spoil(&mut f);
            let before = f.clone();
            assert_eq!(
                handle_arp(&mut f, MY_IP, MY_MAC, &n, 1),
                UplinkArp::Ignore,
                "{what}"
            );
            assert_eq!(f, before, "{what}: untouched");
        }
        assert!(n.entries(1).is_empty());
    }

    #[test]
    fn builds_a_request() {
        let mut f = [0xaau8; 42];
        arp_request(&mut f, MY_MAC, MY_IP, PEER_IP);
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
            0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 192, 168, 10, 1, //
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 10, 2,
        ];
        assert_eq!(f, want);
        // and our own handler, seeing it from the peer's side, answers it
        let peer = Neighbors::new(4);
        assert_eq!(
            handle_arp(&mut f, PEER_IP, PEER_MAC, &peer, 0),
            UplinkArp::Reply
        );
        assert_eq!(peer.lookup(MY_IP, 0), Some(MY_MAC));
        let me = Neighbors::new(4);
        assert!(me.mark_pending(PEER_IP, 0));
        assert_eq!(
            handle_arp(&mut f, MY_IP, MY_MAC, &me, 0),
            UplinkArp::Learned
        );
        assert_eq!(me.lookup(PEER_IP, 0), Some(PEER_MAC));
    }

    #[test]
    fn one_request_per_second_per_address() {
        let n = Neighbors::new(16);
        let sent: usize = (0..1000).filter(|_| n.mark_pending(GW_IP, 100)).count();
        assert_eq!(sent, 1);
        assert!(!n.mark_pending(GW_IP, 100));
        assert!(n.mark_pending(GW_IP, 101), "a second later, ask again");
        assert!(!n.mark_pending(GW_IP, 101));
        assert!(n.mark_pending(PEER_IP, 101), "other addresses are separate");
        assert!(!n.mark_pending(0, 101));
        let e = n.entries(101);
        assert_eq!(e.len(), 2);
        assert!(e
            .iter()
            .all(|e| e.state == NeighState::Incomplete && e.mac.is_none()));
        // unanswered, it stops showing after a few seconds
        assert!(n.entries(110).is_empty());
    }

    #[test]
    fn stale_then_expired() {
        let n = Neighbors::new(16);
        assert!(n.learn(GW_IP, PEER_MAC, 1000));
        assert_eq!(n.resolve(GW_IP, 1239), Resolution::Reachable(PEER_MAC));
        assert!(!n.stale(GW_IP, 1239));
        assert_eq!(n.resolve(GW_IP, 1240), Resolution::Stale(PEER_MAC));
        assert!(n.stale(GW_IP, 1240));
        // stale still forwards
        assert_eq!(n.lookup(GW_IP, 1300), Some(PEER_MAC));
        assert!(n.mark_pending(GW_IP, 1240), "refresh request");
        assert!(!n.mark_pending(GW_IP, 1240));
        assert_eq!(
            n.lookup(GW_IP, 1240),
            Some(PEER_MAC),
            "marking keeps the MAC"
        );
        assert_eq!(n.lookup(GW_IP, 1301), None, "expired");
        assert!(!n.stale(GW_IP, 1301));
        // the answer to the refresh restarts the clock
        n.learn(GW_IP, PEER_MAC, 1250);
        assert_eq!(n.resolve(GW_IP, 1301), Resolution::Reachable(PEER_MAC));
        let e = n.entries(1301);
        assert_eq!(
            e,
            vec![NeighEntry {
                ip: GW_IP,
                mac: Some(PEER_MAC),
                state: NeighState::Reachable,
                age: 51
            }]
        );
    }

    #[test]
    fn reachable_time_is_configurable() {
        let n = Neighbors::new(16);
        n.set_reachable(10);
        assert_eq!(n.reachable(), 10);
        n.learn(PEER_IP, PEER_MAC, 0);
        assert_eq!(n.resolve(PEER_IP, 7), Resolution::Reachable(PEER_MAC));
        assert_eq!(n.resolve(PEER_IP, 8), Resolution::Stale(PEER_MAC));
        assert_eq!(n.resolve(PEER_IP, 11), Resolution::Unknown);
        // a stamp from a worker whose clock is a second ahead is fresh
        n.learn(GW_IP, PEER_MAC, 51);
        assert_eq!(n.lookup(GW_IP, 50), Some(PEER_MAC));
    }

    #[test]
    fn neither_learning_nor_asking_evicts_live_entries() {
        // one bucket of eight slots
        let n = Neighbors::new(4);
        assert_eq!(n.slots(), WAYS);
        for i in 0..8u32 {
            assert!(n.learn(0x0a00_0001 + i, 0x0200_0000_0000 + u64::from(i), i));
        }
        assert!(!n.learn(0x0a00_00ff, PEER_MAC, 10), "full of live entries");
        assert_eq!(n.lookup(0x0a00_0001, 10), Some(0x0200_0000_0000));
        // an unresolved address is not asked for at a live entry's cost,
        // even a stale one's
        assert!(!n.mark_pending(GW_IP, 250));
        assert!(n.stale(0x0a00_0001, 250));
        for i in 0..8u32 {
            assert!(n.lookup(0x0a00_0001 + i, 250).is_some());
        }
        // expired entries are reused by learning
        assert!(n.learn(0x0a00_00ff, PEER_MAC, 400));
        assert_eq!(n.lookup(0x0a00_00ff, 400), Some(PEER_MAC));
    }

    #[test]
    fn a_scan_never_evicts_the_gateway() {
        // a small table, so that every bucket fills
        let n = Neighbors::new(16);
        assert!(n.learn(GW_IP, GW_MAC, 0));
        assert!(n.learn(PEER_IP, PEER_MAC, 0));
        let mut asked = 0;
        for now in 1..10u32 {
            for host in 1..=254u32 {
                if n.mark_pending(0x0a00_0000 | host << 8 | now, now) {
                    asked += 1;
                }
            }
            assert_eq!(n.lookup(GW_IP, now), Some(GW_MAC), "second {now}");
            assert_eq!(n.lookup(PEER_IP, now), Some(PEER_MAC));
        }
        assert!(asked > 0);
        // the gateway's confirmation still gets its slot's turn
        let stale = n.reachable() * 4 / 5;
        assert!(n.stale(GW_IP, stale));
        assert!(n.mark_pending(GW_IP, stale));
        // and incomplete entries give way to newer ones once asked for
        let mut n = Neighbors::new(4);
        n.set_request_rate(1000);
        for i in 0..8u32 {
            assert!(n.mark_pending(0x0a00_0100 + i, 0));
        }
        assert!(!n.mark_pending(0x0a00_0200, 0), "all asked this second");
        assert!(n.mark_pending(0x0a00_0200, 1), "an older one gives way");
    }

    #[test]
    fn requests_for_unresolved_addresses_share_one_rate() {
        let mut n = Neighbors::new(16);
        n.set_request_rate(10);
        let n = std::sync::Arc::new(n);
        let got: usize = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || (0..100).filter(|_| n.request_allowed(5)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum();
        assert_eq!(got, 10, "the burst, across threads");
        assert!(!n.request_allowed(5));
        assert_eq!((0..100).filter(|_| n.request_allowed(6)).count(), 10);
        // a reader whose clock is a second behind takes from the same second
        assert!(!n.request_allowed(5));
        assert_eq!((0..100).filter(|_| n.request_allowed(9)).count(), 10);
    }

    #[test]
    fn mac_changes_and_bad_macs() {
        let n = Neighbors::new(16);
        n.learn(PEER_IP, PEER_MAC, 0);
        n.learn(PEER_IP, PEER_MAC + 1, 1);
        assert_eq!(n.lookup(PEER_IP, 1), Some(PEER_MAC + 1));
        assert!(!n.learn(GW_IP, 0, 1));
        assert!(!n.learn(GW_IP, 0x0100_5e00_0001, 1));
        assert!(!n.learn(0, PEER_MAC, 1));
        assert_eq!(n.entries(1).len(), 1);
    }

    #[test]
    fn shared_between_threads() {
        let n = Arc::new(Neighbors::new(1024));
        // four workers miss the same 100 addresses in the same second, while
        // a fifth learns their answers
        let markers: Vec<_> = (0..4)
            .map(|_| {
                let n = n.clone();
                std::thread::spawn(move || {
                    (0..100u32)
                        .flat_map(|i| (0..50).map(move |_| i))
                        .filter(|&i| n.mark_pending(0x0a00_0000 + i, 7))
                        .count()
                })
            })
            .collect();
        let learner = {
            let n = n.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    for i in 0..100u32 {
                        n.learn(0x0a00_0000 + i, 0x0200_0000_0000 + u64::from(i), 7);
                        if let Some(m) = n.lookup(0x0a00_0000 + i, 7) {
                            assert_eq!(m, 0x0200_0000_0000 + u64::from(i), "round {round}");
                        }
                    }
                }
            })
        };
        let requests: usize = markers.into_iter().map(|h| h.join().unwrap()).sum();
        learner.join().unwrap();
        assert!(
            (100..=110).contains(&requests),
            "about one request per address, got {requests}"
        );
        for i in 0..100u32 {
            assert_eq!(
                n.lookup(0x0a00_0000 + i, 7),
                Some(0x0200_0000_0000 + u64::from(i))
            );
        }
    }

    #[test]
    fn readers_never_see_a_mix_of_two_entries() {
        // one bucket; a writer keeps moving its slots between three sets of
        // addresses while a reader checks that each MAC it gets is its
        // address's own
        let n = Arc::new(Neighbors::new(4));
        n.set_reachable(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (n, stop) = (n.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut t = 0u32;
                while !stop.load(Relaxed) {
                    // everything learned two seconds ago has expired
                    t += 2;
                    let base = (t / 2 % 3) * 8;
                    for ip in base + 1..=base + 8 {
                        let mac =
                            0x0200_0000_0000 | u64::from(t & 0xffff) << 16 | u64::from(ip) << 8;
                        n.learn(ip, mac, t);
                    }
                }
            })
        };
        let mut hits = 0u64;
        for round in 0..2_000_000u32 {
            let ip = round % 24 + 1;
            // now 0: the writer's stamps are "ahead", so nothing looks expired
            if let Some(m) = n.lookup(ip, 0) {
                assert_eq!(m >> 8 & 0xff, u64::from(ip));
                hits += 1;
            }
        }
        stop.store(true, Relaxed);
        writer.join().unwrap();
        assert!(hits > 0);
    }
}
