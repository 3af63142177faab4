use super::*;

fn parse(url: &str) -> (RedisTarget, RedisOptions) {
    RedisTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn one_server_keeps_its_url() {
    let (t, o) = parse("redis://h:6379/2?prefix=app&protocol=resp3");
    assert_eq!(t, RedisTarget::Single("redis://h:6379/2?protocol=resp3".into()));
    assert_eq!(o.prefix, "{app}");
}

#[test]
fn a_cluster_url_lists_its_seed_nodes() {
    let (t, o) = parse("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001,redis-3/?prefix=app&buckets=16");
    assert_eq!(
        t,
        RedisTarget::Cluster {
            nodes: vec![
                "redis://u:p%40ss@10.0.0.1:7000/".into(),
                "redis://u:p%40ss@10.0.0.2:7001/".into(),
                "redis://u:p%40ss@redis-3:6379/".into(),
            ]
        }
    );
    assert_eq!((o.prefix.as_str(), o.buckets), ("{app}", Some(16)));
    let (t, _) = parse("REDIS+CLUSTER://[::1]:7000?protocol=resp3");
    assert_eq!(
        t,
        RedisTarget::Cluster {
            nodes: vec!["redis://[::1]:7000/?protocol=resp3".into()]
        }
    );
}

#[test]
fn a_sentinel_url_names_the_master() {
    let (t, o) = parse("redis+sentinel://:pw@s1:26380,s2/mymaster/3?grace_secs=60");
    assert_eq!(
        t,
        RedisTarget::Sentinel(SentinelTarget {
            sentinels: vec!["redis://s1:26380/".into(), "redis://s2:26379/".into()],
            master: "mymaster".into(),
            master_info: "redis://:pw@x/3".into(),
        })
    );
    assert_eq!(o.grace, Duration::from_secs(60));
    let (t, _) = parse("redis+sentinel://u:pw@s1/m?sentinel_auth=true");
    let RedisTarget::Sentinel(s) = t else {
        panic!("{t:?}")
    };
    assert_eq!(s.sentinels, vec!["redis://u:pw@s1:26379/".to_owned()]);
    assert_eq!(s.master_info, "redis://u:pw@x/0");
}

#[test]
fn bad_multi_host_urls_are_refused_clearly() {
    for (bad, says) in [
        ("redis+cluster://", "empty host"),
        ("redis+cluster://a:1,,b:2", "empty host"),
        ("redis+cluster://a:99999", "bad host"),
        ("redis+cluster://a:1/0", "no path"),
        ("redis+cluster://a:1/?buckets=3", "power of two"),
        ("redis+cluster://a:1/?tls_ca=/x", "without TLS"),
        ("redis+sentinel://s1:26379", "master's name is missing"),
        ("redis+sentinel://s1/m/x", "database"),
        ("redis+sentinel://s1/m/0/extra", "master's name is missing"),
        ("redis+sentinel://s1/m%20x", "master name"),
        ("redis+sentinel://s1/m?protocol=resp3", "options"),
        ("redis+sentinel://s1/m?sentinel_auth=maybe", "true or false"),
        ("rediss+cluster://a:1", "not supported yet"),
        ("redis+unix://a", "unknown"),
        ("localhost:6379", "expected redis://"),
    ] {
        let e = RedisTarget::parse(bad).expect_err(bad).to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn the_debug_form_shows_no_password() {
    let (t, _) = parse("redis+cluster://u:secret@a:1,b:2");
    let (s, _) = parse("redis+sentinel://u:secret@a/m");
    let (one, _) = parse("redis://u:secret@a/");
    for t in [t, s, one] {
        assert!(!format!("{t:?}").contains("secret"), "{t:?}");
    }
}

#[test]
fn timeouts_are_options_of_every_url_form() {
    let (t, o) = parse("redis://h/?timeout_ms=250&connect_timeout_ms=1500&protocol=resp3");
    assert_eq!(t, RedisTarget::Single("redis://h/?protocol=resp3".into()));
    assert_eq!(o.response_timeout, Duration::from_millis(250));
    assert_eq!(o.connect_timeout, Duration::from_millis(1500));
    let (_, o) = parse("redis+cluster://a:1/?timeout_ms=100");
    assert_eq!(o.response_timeout, Duration::from_millis(100));
    let (_, o) = parse("redis+sentinel://s1/m?timeout_ms=100&connect_timeout_ms=60000");
    assert_eq!(
        (o.response_timeout, o.connect_timeout),
        (Duration::from_millis(100), Duration::from_secs(60))
    );
    let d = RedisOptions::default();
    assert_eq!(
        (d.response_timeout, d.connect_timeout),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    for bad in [
        "timeout_ms=0",
        "timeout_ms=60001",
        "timeout_ms=1s",
        "connect_timeout_ms=-1",
    ] {
        let url = format!("redis://h/?{bad}");
        let e = RedisTarget::parse(&url).expect_err(&url).to_string();
        assert!(e.contains("1 to 60000 milliseconds"), "{bad}: {e}");
    }
}
