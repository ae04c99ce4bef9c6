//! The ICE description Jami puts in a connection request or answer ("SDP" in Jami's docs).
//!
//! ```text
//! 0d04b932                    ufrag (Jami: 8 characters)
//! 7c33834e7cf944bf0e367b47    pwd   (Jami: 24 characters)
//! H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 50693 typ host tcptype passive
//! …                           one candidate line each
//! ```
//!
//! Lines end with `\n` (a `\r` before it is tolerated). Empty lines are ignored. A line that is
//! not a candidate is skipped and reported in [`Parsed::bad_lines`], never fatal: the seed's
//! own example holds an `X.X.X.X` placeholder line and two `host:port` lines, and the good
//! candidates around them must still be used. Only a missing or malformed ufrag or pwd is
//! fatal, since no check can be authenticated without them.

use std::fmt;

use super::candidate::{Candidate, CandidateError};

/// The credentials and candidates of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The username fragment.
    pub ufrag: String,
    /// The password.
    pub pwd: String,
    /// The candidates, in the order they were written.
    pub candidates: Vec<Candidate>,
}

/// A line of a description that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Its number, from 1.
    pub number: usize,
    /// Why it was skipped.
    pub error: CandidateError,
}

/// A parsed description and the lines that were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What was understood.
    pub description: Description,
    /// What was skipped, in order.
    pub bad_lines: Vec<BadLine>,
}

/// A description that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionError {
    /// No ufrag line, or one that is not 4 to 256 ICE characters.
    #[error("missing or malformed ufrag")]
    Ufrag,
    /// No pwd line, or one that is not 22 to 256 ICE characters (the seed's Jami pwd has
    /// 24).
    #[error("missing or malformed pwd")]
    Pwd,
}

fn is_ice_chars(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}

impl Description {
    /// Parses a description; see the module docs for what is skipped.
    pub fn parse(text: &str) -> Result<Parsed, DescriptionError> {
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l).trim()))
            .filter(|(_, l)| !l.is_empty());
        let ufrag = match lines.next() {
            Some((_, u)) if is_ice_chars(u, 4..=256) => u.to_owned(),
            _ => return Err(DescriptionError::Ufrag),
        };
        let pwd = match lines.next() {
            Some((_, p)) if is_ice_chars(p, 22..=256) => p.to_owned(),
            _ => return Err(DescriptionError::Pwd),
        };
        let mut candidates = Vec::new();
        let mut bad_lines = Vec::new();
        for (number, line) in lines {
            match line.parse::<Candidate>() {
                Ok(c) => candidates.push(c),
                Err(error) => bad_lines.push(BadLine { number, error }),
            }
        }
        Ok(Parsed {
            description: Description {
                ufrag,
                pwd,
                candidates,
            },
            bad_lines,
        })
    }
}

impl fmt::Display for Description {
    /// Jami's form: ufrag, pwd, then one candidate per line, each ending with `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.ufrag)?;
        writeln!(f, "{}", self.pwd)?;
        for c in &self.candidates {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}
