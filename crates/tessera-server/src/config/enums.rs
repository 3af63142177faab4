//! The string-valued settings (`log_format`, `[sqlite] synchronous`): each
//! parses from, and prints as, its name. The `string_enum!` macro that makes
//! them is also used by `tokens.rs`. (`[cookie] same_site` is
//! `tessera_http::cookies::SameSite`, shared with the library.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? } default $def:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
        pub enum $name {
            $(
                #[value(name = $s)]
                #[serde(rename = $s)]
                $variant,
            )+
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl Default for $name {
            fn default() -> Self { $name::$def }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!("expected one of {}, got {s:?}", Self::NAMES.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(super) use string_enum;

string_enum!(
    /// Log line format.
    LogFormat { Text => "text", Json => "json" } default Text
);
string_enum!(
    /// SQLite `PRAGMA synchronous`.
    Synchronous { Normal => "normal", Full => "full" } default Normal
);
