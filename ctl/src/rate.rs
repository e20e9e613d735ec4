//! Per-port packet rates from two stats snapshots.

use api::PortStats;
use serde::Serialize;
use std::time::Duration;

/// What `vsctl stats --rate` prints for one port and one interval.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct PortRate {
    pub name: String,
    /// Packets received per second.
    pub rx_pps: f64,
    /// Packets transmitted per second.
    pub tx_pps: f64,
    /// Packets dropped per second, rx and tx drops together.
    pub drops_per_sec: f64,
}

/// How much a counter grew. A counter that went backwards was reset (the
/// port was deleted and re-added) and counts from zero since then.
fn delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else {
        cur
    }
}

/// Rates of the ports in `cur`, in its order, over `elapsed`, the time
/// measured between the two snapshots. A port missing from `prev` was added
/// in between and counts from zero; ports gone from `cur` are not reported.
/// A zero `elapsed` gives zero rates rather than infinities.
pub fn compute_rates(prev: &[PortStats], cur: &[PortStats], elapsed: Duration) -> Vec<PortRate> {
    let secs = elapsed.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let zero = PortStats::default();
    cur.iter()
        .map(|c| {
            let p = prev.iter().find(|p| p.name == c.name).unwrap_or(&zero);
            PortRate {
                name: c.name.clone(),
                rx_pps: per_sec(delta(p.rx_packets, c.rx_packets)),
                tx_pps: per_sec(delta(p.tx_packets, c.tx_packets)),
                drops_per_sec: per_sec(
                    delta(p.rx_drops, c.rx_drops) + delta(p.tx_drops, c.tx_drops),
                ),
            }
        })
        .collect()
}

/// A rate as printed in tables: whole units.
pub fn format_rate(r: f64) -> String {
    format!("{r:.0}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(name: &str, rx: u64, tx: u64, rxd: u64, txd: u64) -> PortStats {
        PortStats {
            name: name.into(),
            rx_packets: rx,
            rx_bytes: rx * 64,
            tx_packets: tx,
            tx_bytes: tx * 64,
            tx_drops: txd,
            rx_drops: rxd,
        }
    }

    #[test]
    fn rates_are_deltas_over_measured_time() {
        let prev = [ps("p0", 1000, 500, 1, 2), ps("p1", 0, 0, 0, 0)];
        let cur = [ps("p0", 3000, 1500, 5, 6), ps("p1", 10, 20, 0, 0)];
        let r = compute_rates(&prev, &cur, Duration::from_millis(500));
        assert_eq!(
            r,
            vec![
                PortRate {
                    name: "p0".into(),
                    rx_pps: 4000.0,
                    tx_pps: 2000.0,
                    drops_per_sec: 16.0
                },
                PortRate {
                    name: "p1".into(),
                    rx_pps: 20.0,
                    tx_pps: 40.0,
                    drops_per_sec: 0.0
                },
            ]
        );
    }

    #[test]
    fn ports_are_matched_by_name_not_position() {
        let prev = [ps("p1", 100, 100, 0, 0), ps("p0", 10, 10, 0, 0)];
        let cur = [ps("p0", 20, 30, 0, 0), ps("p1", 200, 100, 0, 0)];
        let r = compute_rates(&prev, &cur, Duration::from_secs(1));
        assert_eq!(
            (r[0].name.as_str(), r[0].rx_pps, r[0].tx_pps),
            ("p0", 10.0, 20.0)
        );
        assert_eq!(
            (r[1].name.as_str(), r[1].rx_pps, r[1].tx_pps),
            ("p1", 100.0, 0.0)
        );
    }

    #[test]
    fn new_ports_count_from_zero_and_gone_ports_are_dropped() {
        let prev = [ps("old", 5, 5, 0, 0)];
        let cur = [ps("new", 30, 60, 3, 0)];
        let r = compute_rates(&prev, &cur, Duration::from_secs(3));
        assert_eq!(
            r,
            vec![PortRate {
                name: "new".into(),
                rx_pps: 10.0,
                tx_pps: 20.0,
                drops_per_sec: 1.0
            }]
        );
    }

    #[test]
    fn reset_counters_do_not_go_negative() {
        let prev = [ps("p0", 1_000_000, 1_000_000, 9, 9)];
        let cur = [ps("p0", 50, 0, 0, 2)];
        let r = compute_rates(&prev, &cur, Duration::from_secs(2));
        assert_eq!(
            (r[0].rx_pps, r[0].tx_pps, r[0].drops_per_sec),
            (25.0, 0.0, 1.0)
        );
    }

    #[test]
    fn zero_elapsed_gives_zero_not_infinity() {
        let r = compute_rates(
            &[ps("p0", 0, 0, 0, 0)],
            &[ps("p0", 9, 9, 9, 9)],
            Duration::ZERO,
        );
        assert_eq!(
            (r[0].rx_pps, r[0].tx_pps, r[0].drops_per_sec),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn rates_print_as_whole_numbers() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(1234.6), "1235");
        assert_eq!(format_rate(14_880_952.38), "14880952");
    }
}
