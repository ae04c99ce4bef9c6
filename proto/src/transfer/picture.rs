//! What a file taken as a picture without asking must start with: the magic bytes of a
//! JPEG, PNG, GIF or WebP file. A node that accepts "pictures" by their name alone (see
//! `NodeConfig::auto_accept_images_under`) would otherwise take any file named `x.jpg`
//! without the user's say; [`MagicCheck`] looks at the first bytes as they arrive and says
//! as soon as they can or cannot be one.

/// One magic: its bytes, `None` where any byte goes.
type Magic = &'static [Option<u8>];

const fn b(byte: u8) -> Option<u8> {
    Some(byte)
}

/// JPEG (SOI and the first marker's 0xFF), PNG, GIF 87a and 89a, and WebP (`RIFF`, a
/// length, `WEBP`).
const MAGICS: [Magic; 5] = [
    &[b(0xFF), b(0xD8), b(0xFF)],
    &[
        b(0x89),
        b(b'P'),
        b(b'N'),
        b(b'G'),
        b(0x0D),
        b(0x0A),
        b(0x1A),
        b(0x0A),
    ],
    &[b(b'G'), b(b'I'), b(b'F'), b(b'8'), b(b'7'), b(b'a')],
    &[b(b'G'), b(b'I'), b(b'F'), b(b'8'), b(b'9'), b(b'a')],
    &[
        b(b'R'),
        b(b'I'),
        b(b'F'),
        b(b'F'),
        None,
        None,
        None,
        None,
        b(b'W'),
        b(b'E'),
        b(b'B'),
        b(b'P'),
    ],
];

/// The longest magic.
const HEAD: usize = 12;

/// The first bytes of a file seen so far, checked against the pictures' magic bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct MagicCheck {
    head: [u8; HEAD],
    len: usize,
}

impl MagicCheck {
    /// The fewest bytes a picture can start with (a JPEG's).
    pub(crate) const SHORTEST: u64 = 3;

    /// Feeds the next bytes from the file's start; `ends` when they are the file's last.
    /// `Some(true)`: a picture's start; `Some(false)`: it cannot be one; `None`: more bytes
    /// are needed to tell.
    pub(crate) fn push(&mut self, data: &[u8], ends: bool) -> Option<bool> {
        let take = data.len().min(HEAD - self.len);
        self.head[self.len..self.len + take].copy_from_slice(&data[..take]);
        self.len += take;
        let seen = &self.head[..self.len];
        let fits = |magic: Magic| {
            magic
                .iter()
                .zip(seen)
                .all(|(want, got)| want.is_none_or(|w| w == *got))
        };
        if MAGICS.iter().any(|m| seen.len() >= m.len() && fits(m)) {
            return Some(true);
        }
        let possible = MAGICS.iter().any(|m| seen.len() < m.len() && fits(m));
        match possible && !ends {
            true => None,
            false => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]], ends: bool) -> Option<bool> {
        let mut c = MagicCheck::default();
        let mut last = None;
        for (i, chunk) in chunks.iter().enumerate() {
            last = c.push(chunk, ends && i + 1 == chunks.len());
            if last.is_some() {
                break;
            }
        }
        last
    }

    #[test]
    fn pictures_are_told_from_other_files_as_soon_as_their_first_bytes_allow() {
        assert_eq!(
            check(&[&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]], false),
            Some(true)
        );
        assert_eq!(check(&[b"\x89PNG\r\n\x1a\n rest"], false), Some(true));
        assert_eq!(check(&[b"GIF89a..."], false), Some(true));
        assert_eq!(
            check(&[b"RIFF", b"\x10\0\0\0", b"WEBPVP8 "], false),
            Some(true)
        );
        // One byte at a time still tells.
        let png: Vec<&[u8]> = b"\x89PNG\r\n\x1a\n".chunks(1).collect();
        assert_eq!(check(&png, false), Some(true));
        // An executable, a script, a RIFF that is a WAVE: no.
        assert_eq!(check(&[b"MZ\x90\0"], false), Some(false));
        assert_eq!(check(&[b"#!/bin/sh\n"], false), Some(false));
        assert_eq!(check(&[b"RIFF\x10\0\0\0WAVE"], false), Some(false));
        // Too few bytes to tell, unless the file ends there.
        assert_eq!(check(&[b"\x89P"], false), None);
        assert_eq!(check(&[b"\x89P"], true), Some(false));
        assert_eq!(check(&[b""], true), Some(false));
    }
}
