#[test]
fn column_lists_match_their_counts_and_aliases() {
    let count = |cols: &str| cols.split(", ").count();
    assert_eq!(count(family_columns!()), super::FAMILY_COLUMNS);
    assert_eq!(count(session_columns!()), 19);
    for (bare, aliased) in [
        (family_columns!(), family_columns!("f.")),
        (session_columns!(), session_columns!("s.")),
    ] {
        let stripped: Vec<&str> = aliased
            .split(", ")
            .map(|c| c.strip_prefix("f.").or(c.strip_prefix("s.")).unwrap_or(c))
            .collect();
        assert_eq!(stripped.join(", "), bare);
        assert!(aliased.split(", ").all(|c| c.contains('.')), "{aliased}");
    }
}
