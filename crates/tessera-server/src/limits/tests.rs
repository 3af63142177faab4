use std::sync::Arc;

use axum::http::{Extensions, HeaderMap, HeaderValue};
use tessera_core::{ManualClock, MemoryStore, Timestamp};

use super::*;

fn limits(header: &str) -> AbuseLimits {
    let config = RateLimitsConfig {
        client_ip_header: header.into(),
        ..RateLimitsConfig::default()
    };
    AbuseLimits::new(
        &config,
        Arc::new(MemoryStore::new()),
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000))),
    )
}

fn peer(addr: &str) -> Extensions {
    let mut e = Extensions::new();
    e.insert(PeerAddr(addr.parse().unwrap()));
    e
}

fn subject(ip: &str) -> IpSubject {
    IpSubject::of(Some(ip.parse().unwrap()))
}

#[test]
fn the_peer_address_unless_a_proxy_header_is_configured() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    let none = limits("");
    assert_eq!(none.client_ip(&h, &peer("10.0.0.1:5000")), subject("10.0.0.1"));
    // No listener (router driven directly): one shared unknown subject.
    assert_eq!(none.client_ip(&h, &Extensions::new()), IpSubject::of(None));
}

#[test]
fn behind_a_proxy_the_last_entry_of_its_header_counts() {
    let l = limits("x-forwarded-for");
    let mut h = HeaderMap::new();
    // The client wrote the first entries; the proxy appended the last.
    h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 7.7.7.7"));
    h.append(
        "x-forwarded-for",
        HeaderValue::from_static("1.2.3.4, 203.0.113.9"),
    );
    assert_eq!(l.client_ip(&h, &peer("10.0.0.1:5000")), subject("203.0.113.9"));
    // Missing or garbage: the peer.
    let mut bad = HeaderMap::new();
    bad.insert("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
    assert_eq!(l.client_ip(&bad, &peer("10.0.0.1:5000")), subject("10.0.0.1"));
    assert_eq!(
        l.client_ip(&HeaderMap::new(), &peer("10.0.0.1:5000")),
        subject("10.0.0.1")
    );
}

#[test]
fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
    assert_eq!(subject("2001:db8:1:2:aaaa::1"), subject("2001:db8:1:2:ffff::9"));
    assert_ne!(subject("2001:db8:1:2::1"), subject("2001:db8:1:3::1"));
    assert_eq!(subject("::ffff:192.0.2.1"), subject("192.0.2.1"));
    assert_ne!(subject("192.0.2.1"), subject("192.0.2.2"));
}
