//! Turning a peer's `Display-Name` into a file name that is safe to create.
//!
//! A `Display-Name` comes from the network and is never trusted as a path. The rules:
//! - path separators (`/`, `\`) and the characters Windows forbids (`: * ? " < > |`) become `_`;
//! - NUL and every other control character become `_`, and so do the invisible format
//!   characters (bidirectional overrides and isolates, zero-width characters, tags, the BOM):
//!   with them `evil\u{202e}gpj.exe` shows as `evilexe.jpg`. The one exception is a zero-width
//!   joiner between two emoji, which is how a family or a profession is written (👩‍💻);
//! - leading and trailing spaces and dots are trimmed (so `..` and `.` vanish, and no hidden
//!   or Windows-mangled name is made);
//! - a leading `-` becomes `_`, so that the name is never taken for an option by a command
//!   the user runs on it (`rm *`);
//! - names longer than [`MAX_NAME_BYTES`] are shortened, keeping the extension;
//! - what is left must be non-empty and not a name Windows reserves (`CON`, `NUL`, `COM1`,
//!   `LPT1`, … with any extension), otherwise the name is refused (`invalid_pathname`).
//!
//! The result is a single path component: joined to the receive folder, it stays inside it.

use std::fmt;

/// Longest file name kept, in bytes (most file systems allow 255).
pub const MAX_NAME_BYTES: usize = 255;

/// A file name that is safe to create inside the receive folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeName(String);

/// Why a `Display-Name` could not be made into a [`SafeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing usable is left once separators, control characters, dots and spaces are gone.
    #[error("the name is empty once unsafe characters are removed")]
    Empty,
    /// The name is one Windows reserves for devices.
    #[error("the name {0:?} is reserved")]
    Reserved(String),
}

impl SafeName {
    /// Sanitises a peer's `Display-Name`.
    pub fn from_display_name(raw: &str) -> Result<SafeName, NameError> {
        let chars: Vec<char> = raw.chars().collect();
        let replaced: String = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| match c {
                '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
                ZWJ if joins_emoji(&chars, i) => ZWJ,
                c if c.is_control() || is_invisible(c) => '_',
                c => c,
            })
            .collect();
        let trimmed = replaced.trim_matches(|c: char| c == '.' || c.is_whitespace());
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let undashed = match trimmed.strip_prefix('-') {
            Some(rest) => format!("_{rest}"),
            None => trimmed.to_owned(),
        };
        let name = shorten(&undashed, MAX_NAME_BYTES);
        if is_reserved(&name) {
            return Err(NameError::Reserved(name));
        }
        Ok(SafeName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The zero-width joiner.
const ZWJ: char = '\u{200d}';

/// Whether the zero-width joiner at `chars[i]` joins two emoji (the first possibly followed by
/// a variation selector or a skin tone), as in 👩‍💻: there it is part of the picture.
fn joins_emoji(chars: &[char], i: usize) -> bool {
    let before = chars[..i]
        .iter()
        .rev()
        .find(|&&c| c != '\u{fe0f}' && !('\u{1f3fb}'..='\u{1f3ff}').contains(&c));
    let after = chars.get(i + 1);
    before.is_some_and(|&c| is_emoji(c)) && after.is_some_and(|&c| is_emoji(c))
}

/// Whether `c` is in one of the blocks emoji come from.
fn is_emoji(c: char) -> bool {
    matches!(c,
        '\u{2300}'..='\u{23ff}' // miscellaneous technical (⌚, ⏰)
        | '\u{2600}'..='\u{27bf}' // miscellaneous symbols, dingbats (☕, ❤, ✈)
        | '\u{2b00}'..='\u{2bff}' // arrows and shapes (⭐)
        | '\u{1f000}'..='\u{1faff}' // the emoji blocks proper
    )
}

/// Whether `c` is a character that changes how a name shows without showing itself: Unicode's
/// format characters and default-ignorable code points that a file name has no use for.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' // soft hyphen
        | '\u{34f}' // combining grapheme joiner
        | '\u{61c}' // Arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers
        | '\u{17b4}' | '\u{17b5}' // Khmer inherent vowels
        | '\u{180e}' // Mongolian vowel separator
        | '\u{200b}'..='\u{200f}' // zero-width space, joiners, LRM, RLM
        | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
        | '\u{2060}'..='\u{206f}' // word joiner, invisible operators, isolates
        | '\u{feff}' // BOM
        | '\u{fff0}'..='\u{fffb}' // interlinear annotations
        | '\u{1d173}'..='\u{1d17a}' // musical formatting
        | '\u{e0000}'..='\u{e007f}' // tags
    )
}

/// Cuts `name` to at most `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 && dot > 0 => &name[dot..],
        _ => "",
    };
    let mut stem_end = max - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    let stem = name[..stem_end].trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    format!("{stem}{ext}")
}

fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        SafeName::from_display_name(raw).expect("a safe name").0
    }

    #[test]
    fn ordinary_names_are_kept() {
        assert_eq!(ok("photo.jpg"), "photo.jpg");
        assert_eq!(ok("rapport final (2).pdf"), "rapport final (2).pdf");
        assert_eq!(ok("été.txt"), "été.txt");
    }

    #[test]
    fn separators_and_traversal_cannot_leave_the_folder() {
        assert_eq!(ok("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(ok("/etc/passwd"), "_etc_passwd");
        assert_eq!(ok("..\\windows\\system32"), "_windows_system32");
        assert_eq!(ok("C:secret"), "C_secret");
        for raw in ["..", ".", " ", "", "...", " . "] {
            assert_eq!(
                SafeName::from_display_name(raw),
                Err(NameError::Empty),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn control_characters_and_nul_are_replaced() {
        // SECURITY: row 4
        assert_eq!(ok("a\0b"), "a_b");
        assert_eq!(ok("a\nb\tc\x1b"), "a_b_c_");
        assert_eq!(ok(".hidden"), "hidden");
    }

    #[test]
    fn invisible_format_characters_are_replaced() {
        // SECURITY: row 3
        assert_eq!(ok("evil\u{202e}gpj.exe"), "evil_gpj.exe");
        assert_eq!(ok("a\u{200b}b\u{feff}c\u{2066}d\u{e0041}"), "a_b_c_d_");
        assert_eq!(ok("\u{200e}.bashrc"), "_.bashrc");
        // Variation selectors only choose a glyph: an emoji keeps its look.
        assert_eq!(ok("\u{2764}\u{fe0f}.png"), "\u{2764}\u{fe0f}.png");
        // SECURITY: row 118
        // A joiner between two emoji is part of the picture; anywhere else it goes.
        let coder = "\u{1f469}\u{1f3fd}\u{200d}\u{1f4bb}.png";
        assert_eq!(ok(coder), coder);
        let heart = "\u{2764}\u{fe0f}\u{200d}\u{1f525}";
        assert_eq!(ok(heart), heart);
        assert_eq!(ok("a\u{200d}b.txt"), "a_b.txt");
        assert_eq!(ok("\u{1f469}\u{200d}.exe"), "\u{1f469}_.exe");
        assert_eq!(ok("\u{200d}\u{1f4bb}"), "_\u{1f4bb}");
    }

    #[test]
    fn a_leading_dash_and_trailing_dots_and_spaces_go() {
        // SECURITY: row 118
        assert_eq!(ok("-rf"), "_rf");
        assert_eq!(ok("--help.txt"), "_-help.txt");
        assert_eq!(ok(" -x"), "_x");
        assert_eq!(ok("a-b"), "a-b");
        assert_eq!(ok("report.pdf. . "), "report.pdf");
        assert_eq!(ok("evil.exe\u{202e} "), "evil.exe_");
    }

    #[test]
    fn reserved_names_are_refused() {
        // SECURITY: row 2
        for raw in ["CON", "nul.txt", "com1", "LPT9.log", "aux"] {
            assert!(
                matches!(
                    SafeName::from_display_name(raw),
                    Err(NameError::Reserved(_))
                ),
                "{raw:?}"
            );
        }
        assert_eq!(ok("CONSOLE.txt"), "CONSOLE.txt");
        assert_eq!(ok("com10"), "com10");
    }

    #[test]
    fn long_names_are_shortened_keeping_the_extension() {
        // SECURITY: row 5
        let long = format!("{}.tar.gz", "é".repeat(300));
        let name = ok(&long);
        assert!(name.len() <= MAX_NAME_BYTES, "{} bytes", name.len());
        assert!(name.ends_with(".gz"));
        let no_ext = "x".repeat(1000);
        assert_eq!(ok(&no_ext).len(), MAX_NAME_BYTES);
    }
}
