//! Which pod handled a record: `securityServerInternalIp` is the pod IP, and IPs are reused, so each record
//! goes to the pod that held its IP at the record's time. Addresses are compared parsed, not as text: X-Road
//! writes IPv6 as Java's `InetAddress.getHostAddress()` does (`fd00:10:244:1:0:0:0:5`, possibly with a zone,
//! `…%eth0`), Kubernetes in the compressed form. Pure.

use std::net::IpAddr;
use std::time::Duration;

/// One pod's tenure of an IP, in milliseconds; `to` is open while the pod holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    ip: IpAddr,
    pod: String,
    from: i64,
    to: Option<i64>,
}

/// The outcome for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution<'a> {
    /// The pod that held the IP then.
    Pod(&'a str),
    /// No pod held the IP then.
    UnknownIp,
    /// More than one lease matches: never guess.
    AmbiguousIp,
    /// `0.0.0.0` or `::`: the proxy could not tell its own address.
    ZeroIp,
    /// Not an IP address at all.
    InvalidIp,
}

impl Attribution<'_> {
    /// The `reason` label of `xroad_opmon_unattributed_records_total`, for records not attributed.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Attribution::Pod(_) => None,
            Attribution::UnknownIp => Some("unknown_ip"),
            Attribution::AmbiguousIp => Some("ambiguous_ip"),
            Attribution::ZeroIp => Some("zero_ip"),
            Attribution::InvalidIp => Some("invalid_ip"),
        }
    }
}

/// One address of a pod as the history sees it (a dual-stack pod has two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod name.
    pub pod: String,
    /// The address.
    pub ip: IpAddr,
    /// Its creation time (ms), if known.
    pub created: Option<i64>,
}

/// Pod-IP leases over time, kept long enough to attribute late records.
#[derive(Debug, Clone, Default)]
pub struct LeaseHistory {
    leases: Vec<Lease>,
}

impl LeaseHistory {
    /// Takes in the pods holding IPs at `now` (ms); leases not seen any more close at `now`, and closed
    /// leases older than `retain` are dropped.
    pub fn observe(&mut self, pods: &[PodAddress], now: i64, retain: Duration) {
        for lease in self.leases.iter_mut().filter(|l| l.to.is_none()) {
            if !pods.iter().any(|p| p.pod == lease.pod && p.ip == lease.ip) {
                lease.to = Some(now);
            }
        }
        for pod in pods {
            let known = self
                .leases
                .iter()
                .any(|l| l.to.is_none() && l.pod == pod.pod && l.ip == pod.ip);
            if known {
                continue;
            }
            // Without a creation time the pod held the IP since before we looked.
            let from = pod.created.map_or(i64::MIN, |created| created.min(now));
            // A new holder of the IP ends any earlier tenure at its own start, even if we saw the earlier
            // pod go only later: CNIs reuse addresses within seconds. Pods holding it together now (host
            // networking) share it: their records stay ambiguous.
            let still_held = |l: &Lease| pods.iter().any(|p| p.pod == l.pod && p.ip == l.ip);
            for lease in self
                .leases
                .iter_mut()
                .filter(|l| l.ip == pod.ip && l.pod != pod.pod && !still_held(l))
            {
                if lease.to.is_none_or(|to| to > from) && lease.from <= from {
                    lease.to = Some(from);
                }
            }
            self.leases.push(Lease {
                ip: pod.ip,
                pod: pod.pod.clone(),
                from,
                to: None,
            });
        }
        let horizon = now - retain.as_millis() as i64;
        self.leases.retain(|l| l.to.is_none_or(|to| to >= horizon));
    }

    /// The pod that held `ip` (as a record writes it) at `at` (ms).
    pub fn attribute(&self, ip: &str, at: i64) -> Attribution<'_> {
        let Some(ip) = parse_record_ip(ip) else {
            return Attribution::InvalidIp;
        };
        if ip.is_unspecified() {
            return Attribution::ZeroIp;
        }
        let mut holders = self
            .leases
            .iter()
            .filter(|l| l.ip == ip && l.from <= at && l.to.is_none_or(|to| at < to));
        match (holders.next(), holders.next()) {
            (Some(lease), None) => Attribution::Pod(&lease.pod),
            (None, _) => Attribution::UnknownIp,
            (Some(_), Some(_)) => Attribution::AmbiguousIp,
        }
    }
}

/// A record's address: brackets and an IPv6 zone (`%eth0`, meaningless across hosts) dropped, an
/// IPv4-mapped IPv6 address read as the IPv4 address it maps.
pub fn parse_record_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let address = text
        .split_once('%')
        .map_or(text, |(address, _zone)| address);
    address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const RETAIN: Duration = Duration::from_secs(600);

    fn pod(name: &str, ip: &str, created: i64) -> PodAddress {
        PodAddress {
            pod: name.into(),
            ip: ip.parse().unwrap(),
            created: Some(created),
        }
    }

    #[test]
    fn a_reused_ip_attributes_each_record_to_the_pod_that_held_it() {
        // OPM-17: pod-a holds 10.0.1.11 until T0; pod-c gets it at T0 + 20 s; the adapter sees both late.
        let t0 = 100 * MIN;
        let mut history = LeaseHistory::default();
        history.observe(
            &[pod("pod-a", "10.0.1.11", 0), pod("pod-b", "10.0.1.12", 0)],
            t0 - MIN,
            RETAIN,
        );
        history.observe(&[pod("pod-b", "10.0.1.12", 0)], t0 + 5_000, RETAIN);
        history.observe(
            &[
                pod("pod-b", "10.0.1.12", 0),
                pod("pod-c", "10.0.1.11", t0 + 20_000),
            ],
            t0 + 30_000,
            RETAIN,
        );
        assert_eq!(
            history.attribute("10.0.1.11", t0 - 1_000),
            Attribution::Pod("pod-a")
        );
        assert_eq!(
            history.attribute("10.0.1.11", t0 + 10_000),
            Attribution::UnknownIp,
            "between the tenures"
        );
        assert_eq!(
            history.attribute("10.0.1.11", t0 + 25_000),
            Attribution::Pod("pod-c")
        );
        assert_eq!(
            history.attribute("10.0.1.12", t0),
            Attribution::Pod("pod-b")
        );
    }

    #[test]
    fn a_new_holder_ends_the_old_tenure_even_when_the_deletion_was_seen_late() {
        let mut history = LeaseHistory::default();
        history.observe(&[pod("pod-a", "10.0.1.11", 0)], MIN, RETAIN);
        // pod-a vanished and pod-c took its IP at 2 min, both first seen at 3 min.
        history.observe(&[pod("pod-c", "10.0.1.11", 2 * MIN)], 3 * MIN, RETAIN);
        assert_eq!(
            history.attribute("10.0.1.11", 2 * MIN - 1),
            Attribution::Pod("pod-a")
        );
        assert_eq!(
            history.attribute("10.0.1.11", 2 * MIN + 1),
            Attribution::Pod("pod-c")
        );
    }

    #[test]
    fn unknown_zero_and_ambiguous_addresses_are_not_guessed() {
        let mut history = LeaseHistory::default();
        history.observe(
            &[pod("pod-a", "10.0.1.11", 0), pod("pod-x", "10.0.1.11", 0)],
            MIN,
            RETAIN,
        );
        assert_eq!(history.attribute("10.0.9.9", MIN), Attribution::UnknownIp);
        assert_eq!(history.attribute("0.0.0.0", MIN), Attribution::ZeroIp);
        assert_eq!(
            history.attribute("10.0.1.11", MIN),
            Attribution::AmbiguousIp,
            "two pods hold it together"
        );
        assert_eq!(
            history.attribute("10.0.1.11", MIN).reason(),
            Some("ambiguous_ip")
        );
    }

    #[test]
    fn a_pod_of_unknown_age_holds_its_ip_from_before_it_was_first_seen() {
        let mut history = LeaseHistory::default();
        history.observe(
            &[PodAddress {
                pod: "pod-a".into(),
                ip: "10.0.1.11".parse().unwrap(),
                created: None,
            }],
            10 * MIN,
            RETAIN,
        );
        assert_eq!(
            history.attribute("10.0.1.11", 9 * MIN),
            Attribution::Pod("pod-a"),
            "a record 65 s old"
        );
    }

    #[test]
    fn closed_leases_are_forgotten_after_the_retention() {
        let mut history = LeaseHistory::default();
        history.observe(&[pod("pod-a", "10.0.1.11", 0)], MIN, RETAIN);
        history.observe(&[], 2 * MIN, RETAIN);
        assert_eq!(
            history.attribute("10.0.1.11", MIN),
            Attribution::Pod("pod-a")
        );
        history.observe(&[], 20 * MIN, RETAIN);
        assert_eq!(history.attribute("10.0.1.11", MIN), Attribution::UnknownIp);
    }

    #[test]
    fn ipv6_records_match_pods_whatever_form_and_zone_java_writes() {
        let mut history = LeaseHistory::default();
        history.observe(&[pod("pod-a", "fd00:10:244:1::5", 0)], MIN, RETAIN);
        for written in [
            "fd00:10:244:1:0:0:0:5",
            "fd00:10:244:1::5",
            "fd00:10:244:1:0:0:0:5%eth0",
            "fd00:10:244:1:0:0:0:5%2",
            "[fd00:10:244:1::5]",
            "FD00:10:244:1:0:0:0:5",
        ] {
            assert_eq!(
                history.attribute(written, MIN),
                Attribution::Pod("pod-a"),
                "{written}"
            );
        }
        assert_eq!(history.attribute("::", MIN), Attribution::ZeroIp);
        assert_eq!(history.attribute("not-an-ip", MIN), Attribution::InvalidIp);
        assert_eq!(history.attribute("", MIN).reason(), Some("invalid_ip"));
    }

    #[test]
    fn a_dual_stack_pod_is_found_by_either_address() {
        let mut history = LeaseHistory::default();
        history.observe(
            &[
                pod("pod-a", "10.244.1.5", 0),
                pod("pod-a", "fd00:10:244:1::5", 0),
                pod("pod-b", "10.244.1.6", 0),
            ],
            MIN,
            RETAIN,
        );
        assert_eq!(
            history.attribute("10.244.1.5", MIN),
            Attribution::Pod("pod-a")
        );
        assert_eq!(
            history.attribute("fd00:10:244:1:0:0:0:5%eth0", MIN),
            Attribution::Pod("pod-a")
        );
        assert_eq!(
            history.attribute("::ffff:10.244.1.6", MIN),
            Attribution::Pod("pod-b"),
            "an IPv4-mapped address is its IPv4 address"
        );
    }
}
