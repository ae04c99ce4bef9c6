//! The folders of accepted manifests (`PROTOCOL.md` §14): [`FileOp::MakeTree`] makes them
//! through the receive folder's descriptors, and a file placed in a manifest is committed
//! into its folder.
//!
//! The `name (1)` rule applies once per top-level folder, when the manifest is accepted: the
//! name each got is kept under the manifest's key (the sender's account and its id), shared by
//! every worker, so the files that come later go below it, and kept in the private folder
//! (`<sender account>-<mid>.ferry-tree`), so the same manifest accepted again — in this
//! process or a later one, a send taken up again — lands in the same folders (pruned with
//! the partial data, by age). A top-level *file* of a manifest takes its
//! free name when it is committed, as a single file does. Below the top level nothing is
//! renamed: Ferry made those folders itself, inside a folder it made.
//!
//! [`FileOp::MakeTree`]: ferry_proto::io::FileOp::MakeTree

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_proto::transfer::PartialKey;
use ferry_proto::transfer::manifest::{EntryKind, Manifest, RelPath};

use super::failure::Failure;
use crate::receive_folder::{ReceiveFolder, single};

/// Most manifests whose top-level names are remembered; the oldest is forgotten first (its
/// files, if any still come, are refused: their folder is unknown).
pub const MAX_TREES: usize = 1024;

/// The names the top-level folders of each accepted manifest got, by its key.
#[derive(Debug, Default, Clone)]
pub(super) struct Trees {
    inner: Arc<Mutex<TreeNames>>,
}

#[derive(Debug, Default)]
struct TreeNames {
    by_key: BTreeMap<String, BTreeMap<String, String>>,
    order: VecDeque<String>,
}

/// Largest kept list of top-level names read back (a manifest's tops are a few hundred
/// bytes; more is not ours).
const MAX_TREE_BYTES: u64 = 1 << 20;

/// What the kept list of a manifest's top-level names is called in the private folder:
/// `<sender account>-<mid>.ferry-tree`.
fn tree_name(key: &str) -> String {
    format!("{key}.ferry-tree")
}

/// Whether the receive folder at `folder` keeps the top-level names of the manifest `key`:
/// an offer of it was accepted before and not every file arrived (the same send taken up
/// again lands in the same folders). A read-only look, for what an application tells its
/// user.
pub fn keeps_tree(folder: &std::path::Path, key: &PartialKey) -> bool {
    let path = ReceiveFolder::partial_path(folder, &tree_name(&key.to_string()));
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// The top-level names an earlier process gave the manifest `key` (kept in the private
/// folder), if there is a readable list of single names. Anything else is said in the log
/// and ignored: the tree then takes fresh names, as a new one would.
fn kept_tops(folder: &ReceiveFolder, key: &str) -> Option<BTreeMap<String, String>> {
    let bytes = match folder.kept(&tree_name(key), MAX_TREE_BYTES) {
        Ok(bytes) => bytes?,
        Err(e) => {
            tracing::warn!("the names kept for manifest {key} are not read: {e}");
            return None;
        }
    };
    let tops: BTreeMap<String, String> = match serde_json::from_slice(&bytes) {
        Ok(tops) => tops,
        Err(e) => {
            tracing::warn!("the names kept for manifest {key} are not a list: {e}");
            return None;
        }
    };
    if !tops.iter().all(|(top, got)| single(top) && single(got)) {
        tracing::warn!("the names kept for manifest {key} are not single names");
        return None;
    }
    Some(tops)
}

/// The names tried for a top-level folder: itself, then `name (n)`.
fn folder_variant(name: &str, n: u32) -> String {
    match n {
        0 => name.to_owned(),
        n => format!("{name} ({n})"),
    }
}

impl Trees {
    /// Makes every folder of `manifest` (the top-level ones under a free name, once).
    pub(super) fn make(
        &self,
        folder: &ReceiveFolder,
        key: &PartialKey,
        manifest: &Manifest,
    ) -> Result<(), Failure> {
        let key = key.to_string();
        let known = self.lock().by_key.get(&key).cloned();
        let tops = match known {
            Some(tops) => tops,
            None => match kept_tops(folder, &key) {
                Some(tops) => tops,
                None => {
                    let tops = self.name_tops(folder, manifest)?;
                    let bytes = serde_json::to_vec(&tops).unwrap_or_default();
                    folder.keep(&tree_name(&key), &bytes)?;
                    tops
                }
            },
        };
        for entry in manifest.entries() {
            let mut components: Vec<&str> =
                entry.path.components().iter().map(|c| c.as_str()).collect();
            if entry.kind != EntryKind::Folder {
                components.pop();
            }
            let Some(top) = components.first().and_then(|t| tops.get(*t)) else {
                continue;
            };
            components[0] = top;
            folder.folder_at(&components)?;
        }
        let mut names = self.lock();
        if !names.by_key.contains_key(&key) {
            names.order.push_back(key.clone());
            if names.order.len() > MAX_TREES {
                if let Some(old) = names.order.pop_front() {
                    names.by_key.remove(&old);
                }
            }
        }
        names.by_key.insert(key, tops);
        Ok(())
    }

    /// Forgets the names the manifest `key` got, here and in the private folder.
    pub(super) fn forget(&self, folder: &ReceiveFolder, key: &PartialKey) -> Result<(), Failure> {
        let key = key.to_string();
        let mut names = self.lock();
        names.by_key.remove(&key);
        names.order.retain(|k| *k != key);
        drop(names);
        folder.forget(&tree_name(&key))?;
        Ok(())
    }

    /// Gives each top-level folder of `manifest` a free name in the receive folder.
    fn name_tops(
        &self,
        folder: &ReceiveFolder,
        manifest: &Manifest,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let mut tops = BTreeMap::new();
        for entry in manifest.entries() {
            let top = entry.path.top();
            if tops.contains_key(top) {
                continue;
            }
            let is_file = entry.path.components().len() == 1 && entry.kind != EntryKind::Folder;
            let got = match is_file {
                true => top.to_owned(),
                false => folder
                    .make_top_folder((0..super::MAX_VARIANTS).map(|n| folder_variant(top, n)))?,
            };
            tops.insert(top.to_owned(), got);
        }
        Ok(tops)
    }

    /// Where a file at `path` of the manifest `key` goes: the folders below the receive
    /// folder (the top one under the name it got; empty for a top-level file).
    pub(super) fn place(&self, key: &PartialKey, path: &RelPath) -> Result<Vec<String>, Failure> {
        let names = self.lock();
        let tops = names.by_key.get(&key.to_string()).ok_or(Failure::NoTree)?;
        let mut components: Vec<String> = path
            .components()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        components.pop();
        if let Some(first) = components.first_mut() {
            *first = tops.get(first.as_str()).ok_or(Failure::NoTree)?.clone();
        }
        Ok(components)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TreeNames> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
