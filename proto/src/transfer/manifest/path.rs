//! [`RelPath`]: an entry's path inside the receive folder, one safe component after another.

use std::fmt;

use super::super::SafeName;
use super::{MAX_DEPTH, MAX_PATH_BYTES, ManifestError};

/// A relative path whose every component is a [`SafeName`]: joined to the receive folder it
/// stays inside it. Written with `/` between components, on the wire and here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelPath(Vec<SafeName>);

impl RelPath {
    /// Reads a path as a peer sent it. Refused: an absolute path, an empty, `.` or `..`
    /// component, more than [`MAX_PATH_BYTES`] bytes or [`MAX_DEPTH`] components, and a
    /// component with nothing usable left once made safe. Other components are made safe as
    /// a `Display-Name` is (a `\` inside one becomes `_`, so it cannot climb either).
    pub fn parse(raw: &str) -> Result<RelPath, ManifestError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(ManifestError::PathTooLong);
        }
        if raw.starts_with('/') || raw.starts_with('\\') {
            return Err(ManifestError::Absolute(raw.to_owned()));
        }
        let mut out = Vec::new();
        for component in raw.split('/') {
            if out.len() == MAX_DEPTH {
                return Err(ManifestError::TooDeep(raw.to_owned()));
            }
            out.push(Self::component(raw, component)?);
        }
        Ok(RelPath(out))
    }

    /// Builds a path from the sender's own components (file names on its disk), made safe
    /// the same way, so that what the sender lists is what the receiver will create.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = &'a str>,
    ) -> Result<RelPath, ManifestError> {
        let raw: Vec<&str> = components.into_iter().collect();
        let joined = raw.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(ManifestError::PathTooLong);
        }
        if raw.len() > MAX_DEPTH {
            return Err(ManifestError::TooDeep(joined));
        }
        if raw.is_empty() {
            return Err(ManifestError::EmptyComponent(joined));
        }
        raw.iter()
            .map(|c| Self::component(&joined, &c.replace('/', "_")))
            .collect::<Result<Vec<_>, _>>()
            .map(RelPath)
    }

    fn component(whole: &str, c: &str) -> Result<SafeName, ManifestError> {
        match c {
            "" => Err(ManifestError::EmptyComponent(whole.to_owned())),
            "." | ".." => Err(ManifestError::DotComponent(whole.to_owned())),
            c => SafeName::from_display_name(c)
                .map_err(|_| ManifestError::BadComponent(whole.to_owned())),
        }
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[SafeName] {
        &self.0
    }

    /// The first component: the entry's top-level name in the receive folder.
    pub fn top(&self) -> &str {
        self.0.first().map(SafeName::as_str).unwrap_or_default()
    }

    /// The folders that contain this entry, outermost first, each written as a path.
    pub fn ancestors(&self) -> impl Iterator<Item = String> + '_ {
        (1..self.0.len()).map(|n| join(&self.0[..n]))
    }
}

fn join(components: &[SafeName]) -> String {
    let names: Vec<&str> = components.iter().map(SafeName::as_str).collect();
    names.join("/")
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.0))
    }
}
