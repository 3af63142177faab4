use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn parses_every_command() {
    let c = parse_from([
        "tessera",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory://",
    ])
    .unwrap();
    assert!(matches!(c.command, Command::Serve));
    assert_eq!(c.common.store.as_deref(), Some("memory://"));
    let c = parse_from([
        "tessera",
        "--data-dir",
        "/tmp/x",
        "api-keys",
        "create",
        "--name",
        "ci",
    ])
    .unwrap();
    assert!(
        matches!(c.command, Command::ApiKeys(ApiKeysCommand::Create { ref name, ref scopes }) if name == "ci" && scopes.is_empty())
    );
    let c = parse_from([
        "tessera",
        "api-keys",
        "create",
        "--scope",
        "events",
        "--scope",
        "revocations",
    ])
    .unwrap();
    assert!(matches!(
        c.command,
        Command::ApiKeys(ApiKeysCommand::Create { ref scopes, .. }) if scopes == &["events", "revocations"]
    ));
    assert!(parse_from(["tessera", "api-keys", "create", "--scope", "everything"]).is_err());
    assert!(parse_from(["tessera", "api-keys", "list"]).is_ok());
    assert!(parse_from(["tessera", "api-keys", "revoke", "key_x"]).is_ok());
    assert!(parse_from(["tessera", "sessions", "list", "--subject", "u"]).is_ok());
    assert!(parse_from(["tessera", "sessions", "revoke", "ses_x"]).is_ok());
    assert!(parse_from(["tessera", "sessions", "revoke", "--subject", "u"]).is_ok());
    assert!(parse_from(["tessera", "sessions", "revoke"]).is_err());
    assert!(parse_from(["tessera", "sessions", "revoke", "ses_x", "--subject", "u"]).is_err());
    assert!(parse_from(["tessera", "keys", "list", "--json"]).is_ok());
    let c = parse_from(["tessera", "keys", "rotate", "--in", "0"]).unwrap();
    assert!(matches!(
        c.command,
        Command::Keys(KeysCommand::Rotate { activate_in: Some(0) })
    ));
    assert!(parse_from(["tessera", "keys", "rotate", "--in", "-5"]).is_err());
    let c = parse_from(["tessera", "keys", "revoke", "kid-1"]).unwrap();
    assert!(matches!(c.command, Command::Keys(KeysCommand::Revoke { ref kid }) if kid == "kid-1"));
    assert!(parse_from(["tessera", "keys", "revoke"]).is_err());
    let c = parse_from(["tessera", "config", "check", "--log-format", "json"]).unwrap();
    assert_eq!(c.common.log_format, Some(LogFormat::Json));
    assert!(parse_from(["tessera", "serve", "--log-format", "xml"]).is_err());
}
