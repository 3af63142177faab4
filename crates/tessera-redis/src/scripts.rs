//! The Lua scripts, each with the shared prelude, hashed once.
//!
//! Every state-changing method is one script, so one atomic step on the
//! server; `redis::Script` sends EVALSHA and loads the script on NOSCRIPT.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");
const TOUCH: &str = include_str!("lua/touch.lua");
const FAMILY_WRITE: &str = include_str!("lua/family_write.lua");
const CREATE: &str = include_str!("lua/create.lua");
const UPDATE: &str = include_str!("lua/update.lua");

fn with_prelude(parts: &[&str]) -> Script {
    let mut code = String::from(PRELUDE);
    for p in parts {
        code.push('\n');
        code.push_str(p);
    }
    Script::new(&code)
}

/// After a script that changes sessions: publish the invalidations its
/// body collected (`INV`, see the prelude) and answer `{answer, INV}`.
/// Published from inside the script, they are part of its atomic step:
/// no reader on any node can see the change without the message being
/// on its way to every subscriber. An error reply passes through as is.
const PUBLISH_INVALIDATIONS: &str = r"
local out = main()
if out == nil then out = false end
if type(out) == 'table' and out.err then return out end
local names = table.concat(INV)
if names ~= '' then redis.call('PUBLISH', P .. 'i', names) end
return { out, names }
";

/// A script that changes sessions: its body runs as a function, so each of
/// its `return`s goes through [`PUBLISH_INVALIDATIONS`]; the caller reads
/// the answer with `RedisStore::run_changing`.
fn changing_sessions(parts: &[&str]) -> Script {
    let mut code = String::from(PRELUDE);
    code.push_str("\nlocal function main()\n");
    for p in parts {
        code.push_str(p);
        code.push('\n');
    }
    code.push_str("end\n");
    code.push_str(PUBLISH_INVALIDATIONS);
    Script::new(&code)
}

pub(crate) struct Scripts {
    pub create: Script,
    pub create_with_family: Script,
    pub get_by_token: Script,
    pub touch: Script,
    pub update: Script,
    pub update_with_family: Script,
    pub list_by_subject: Script,
    pub revoke_subject: Script,
    pub revoke_all: Script,
    pub sweep: Script,
    pub count_active: Script,
    pub family_create: Script,
    pub family_find: Script,
    pub family_rotate: Script,
    pub family_clear_sealed: Script,
    pub family_revoke: Script,
    pub families_of: Script,
    pub key_insert: Script,
    pub keys_all: Script,
    pub key_delete: Script,
    pub key_revoke: Script,
    pub api_insert: Script,
    pub api_by_hash: Script,
    pub api_all: Script,
    pub api_revoke: Script,
    pub client_insert: Script,
    pub client_get: Script,
    pub client_revoke: Script,
    pub events_cursor: Script,
    pub events_delete: Script,
    pub events_append: Script,
    pub lease: Script,
    pub use_once: Script,
    pub add_hits: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    create: changing_sessions(&[CREATE]),
    // create.lua runs as a function inside it, so its returns come back
    // to the tail, which adds the family only after a create.
    create_with_family: changing_sessions(&[
        FAMILY_WRITE,
        include_str!("lua/create_with_family_head.lua"),
        CREATE,
        include_str!("lua/create_with_family_tail.lua"),
    ]),
    get_by_token: with_prelude(&[include_str!("lua/get_by_token.lua")]),
    touch: changing_sessions(&[TOUCH, include_str!("lua/touch_main.lua")]),
    update: changing_sessions(&[UPDATE]),
    update_with_family: changing_sessions(&[
        FAMILY_WRITE,
        include_str!("lua/update_with_family_head.lua"),
        UPDATE,
        include_str!("lua/update_with_family_tail.lua"),
    ]),
    list_by_subject: with_prelude(&[include_str!("lua/list_by_subject.lua")]),
    revoke_subject: changing_sessions(&[include_str!("lua/revoke_subject.lua")]),
    revoke_all: changing_sessions(&[include_str!("lua/revoke_all.lua")]),
    sweep: changing_sessions(&[include_str!("lua/sweep.lua")]),
    count_active: with_prelude(&[include_str!("lua/count_active.lua")]),
    family_create: with_prelude(&[FAMILY_WRITE, include_str!("lua/family_create.lua")]),
    family_find: with_prelude(&[include_str!("lua/family_find.lua")]),
    family_rotate: changing_sessions(&[TOUCH, include_str!("lua/family_rotate.lua")]),
    family_clear_sealed: with_prelude(&[include_str!("lua/family_clear_sealed.lua")]),
    family_revoke: with_prelude(&[include_str!("lua/family_revoke.lua")]),
    families_of: with_prelude(&[include_str!("lua/families_of.lua")]),
    key_insert: with_prelude(&[include_str!("lua/key_insert.lua")]),
    keys_all: with_prelude(&[include_str!("lua/keys_all.lua")]),
    key_delete: with_prelude(&[include_str!("lua/key_delete.lua")]),
    key_revoke: with_prelude(&[include_str!("lua/key_revoke.lua")]),
    api_insert: with_prelude(&[include_str!("lua/api_insert.lua")]),
    api_by_hash: with_prelude(&[include_str!("lua/api_by_hash.lua")]),
    api_all: with_prelude(&[include_str!("lua/api_all.lua")]),
    api_revoke: with_prelude(&[include_str!("lua/api_revoke.lua")]),
    client_insert: with_prelude(&[include_str!("lua/client_insert.lua")]),
    client_get: with_prelude(&[include_str!("lua/client_get.lua")]),
    client_revoke: with_prelude(&[include_str!("lua/client_revoke.lua")]),
    events_cursor: with_prelude(&[include_str!("lua/events_cursor.lua")]),
    events_delete: with_prelude(&[include_str!("lua/events_delete.lua")]),
    events_append: with_prelude(&[include_str!("lua/events_append.lua")]),
    lease: Script::new(include_str!("lua/lease.lua")),
    use_once: Script::new(include_str!("lua/use_once.lua")),
    add_hits: Script::new(include_str!("lua/add_hits.lua")),
});
