//! The names the file service gives files: a partial file's name in the private folder, and
//! the variants tried for a final name (`name (1).ext`, …).

use ferry_proto::transfer::{Digest, MAX_NAME_BYTES};

/// What the name of a partial file ends with.
pub const PARTIAL_SUFFIX: &str = ".ferry-part";

/// The partial file's name for `name`: `name.ferry-part`, shortened (with a hash of the whole
/// name, so two long names stay apart) when that would pass the file-name limit.
pub(super) fn partial_name(name: &str) -> String {
    if name.len() + PARTIAL_SUFFIX.len() <= MAX_NAME_BYTES {
        return format!("{name}{PARTIAL_SUFFIX}");
    }
    let tag = &Digest::of(name.as_bytes()).short();
    let mut end = MAX_NAME_BYTES - PARTIAL_SUFFIX.len() - tag.len() - 1;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{tag}{PARTIAL_SUFFIX}", &name[..end])
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
