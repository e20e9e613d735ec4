//! A real Prometheus (Debian's) scrapes vswitchd's `/metrics`: a pod's
//! receive rate while it pings, and then its packet count, a drop reason
//! and a policy rule's hits, read back through PromQL, are what `vsctl
//! stats` shows. Pods are
//! attached through the real CNI plugin, with the pod's namespace and name
//! as a kubelet passes them.
//!
//! Run with `cargo test --release -p cni-shim --test metrics` as root.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const ALLOW_ICMP: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-icmp}
spec:
  selector: all()
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: ICMP
";

/// See the module's note.
#[test]
fn prometheus_reads_what_vsctl_stats_shows() {
    must_be_root();
    need_tools(&["prometheus"]);
    let _g = serial();
    let maddr = format!("127.0.0.1:{}", free_port());
    let sw = Vswitchd::new()
        .args(["--node", NODE, "--metrics-listen", &maddr])
        .any_exit()
        .start();
    sw.apply_pool("metrics-pool", "10.215.0.0/16", 26);
    let conf = json!({"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni",
                      "socket": sw.sock});
    let web = Netns::new("mweb");
    let client = Netns::new("mcli");
    let web_id = format!("mweb{}x{}", std::process::id(), unique());
    let client_id = format!("mcli{}x{}", std::process::id(), unique());
    let mut call = Call::new(&web_id, &web.path);
    call.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0";
    let web_ip = first_ip(&call.run("ADD", &conf).ok());
    let mut call = Call::new(&client_id, &client.path);
    call.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=client-0";
    let _client_ip = first_ip(&call.run("ADD", &conf).ok());
    let client_port = sw
        .pod(&client_id, "eth0")
        .expect("the client's attachment")
        .port;

    // the switch's own exposition first: the pod's series carry its names
    let (_, text) = http_get(&maddr, "/metrics").expect("vswitchd serves /metrics");
    assert!(
        text.contains(&format!(
            "vswitch_interface_rx_packets_total{{port=\"{client_port}\",namespace=\"shop\",pod=\"client-0\"}}"
        )),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // what the Grafana dashboard of deploy/ queries exists (the policy and
    // pod series appear once there are rules and pods, as here below)
    let later = ["vswitch_policy_rule_hits_total"];
    for name in dashboard_metrics() {
        if name.starts_with("vswitch_agent_") || later.contains(&name.as_str()) {
            continue;
        }
        assert!(
            text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
            "the dashboard queries {name}, which vswitchd does not export"
        );
    }

    let prom = Prometheus::start(&sw.dir, &[("vswitchd", &maddr)]);

    // a policy whose one rule allows ICMP to every pod: the pings are one
    // connection it allows
    let vsctl = vswitchd().with_file_name("vsctl");
    let policy = sw.dir.join("allow-icmp.yaml");
    std::fs::write(&policy, ALLOW_ICMP).expect("writing the policy");
    let o = std::process::Command::new(&vsctl)
        .arg("--socket")
        .arg(&sw.sock)
        .args(["apply", "-f"])
        .arg(&policy)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", vsctl.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // a pod's receive rate while it pings 5 times a second for 8 s
    let pinger = client.spawn(&["ping", "-c", "40", "-i", "0.2", &web_ip]);
    let rx = "vswitch_interface_rx_packets_total{namespace=\"shop\",pod=\"client-0\"}";
    let rate = wait_for("a receive rate", Duration::from_secs(30), || {
        prom.one(&format!("rate({rx}[4s])")).filter(|r| *r >= 3.0)
    });
    assert!(rate <= 12.0, "5 pings a second, rate {rate}");
    eprintln!("the pod's receive rate, as PromQL has it: {rate:.2}/s");
    let o = pinger.wait(Duration::from_secs(30));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("40 received"), "{said}");

    // a spoofed source: the switch drops it as spoofed_ip
    client.ip(&["addr", "add", "10.99.0.1/32", "dev", "eth0"]);
    let o = client.exec(&[
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "-I",
        "10.99.0.1",
        &web_ip,
    ]);
    assert!(!o.status.success(), "a spoofed ping went through");

    // once traffic stops, the last scrape and vsctl stats agree
    let spoofed = "vswitch_drops_total{reason=\"spoofed_ip\"}";
    let (packets, drops, hits) = wait_for(
        "Prometheus and vsctl stats agree",
        Duration::from_secs(30),
        || {
            let stats = sw.stats();
            let port = stats.ports.iter().find(|p| p.name == client_port)?;
            let want_drops = *stats.drops.get("spoofed_ip")?;
            let rule = stats
                .policy_rules
                .iter()
                .find(|r| r.policy.contains("allow-icmp"))?;
            let got_rx = prom.one(rx)?;
            let got_drops = prom.one(spoofed)?;
            let got_hits = prom.one(
                &format!(
                    "vswitch_policy_rule_hits_total{{policy=\"{}\",direction=\"ingress\",rule=\"0\",action=\"allow\"}}",
                    rule.policy
                ),
            )?;
            (got_rx == port.rx_packets as f64
                && got_drops == want_drops as f64
                && got_hits == rule.hits as f64)
                .then_some((port.rx_packets, want_drops, rule.hits))
        },
    );
    assert_eq!(
        hits, 1,
        "the 40 pings are one connection, allowed by the rule"
    );
    assert!(
        packets >= 43,
        "40 pings and 3 spoofed ones were counted: {packets}"
    );
    assert!(drops >= 3, "the spoofed pings were counted: {drops}");
    eprintln!(
        "agreed: {packets} packets received from the pod, {drops} spoofed_ip drops, \
         {hits} connection allowed by the rule"
    );
    drop(prom);

    for (id, ns) in [(&web_id, &web), (&client_id, &client)] {
        Call::new(id, &ns.path).run("DEL", &conf).ok_silent();
    }
}
