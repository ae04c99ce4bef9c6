//! The names the file service gives files: a partial file's name in the private folder (from
//! its [`PartialKey`], never from the offered name), and the variants tried for a final name (`name (1).ext`, …).

use ferry_proto::transfer::PartialKey;

/// What the name of a partial file ends with.
pub const PARTIAL_SUFFIX: &str = ".ferry-part";

/// The partial file's name for `key`: `<account>-<transfer id>.ferry-part` (68 bytes at
/// most), of a fixed form no offered name decides.
pub(super) fn partial_name(key: &PartialKey) -> String {
    format!("{key}{PARTIAL_SUFFIX}")
}

/// The names tried for a file called `name`: itself, then `stem (n).ext`. A name that looks
/// like a partial file gets `_` appended, so no final file is ever taken for a partial one.
pub(super) fn variant(name: &str, n: u32) -> String {
    let name = if name.ends_with(PARTIAL_SUFFIX) {
        format!("{name}_")
    } else {
        name.to_owned()
    };
    if n == 0 {
        return name;
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}
