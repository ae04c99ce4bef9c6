//! Lines local to a host (`·`): what an endpoint tells its application (a node's [`Event`],
//! an ICE agent's events) and the file operations it asks for.

use crate::io::{Event, FileOp};

use super::{Bulk, Names, Summary};

/// Summarises an application event; transfer ids become ordinals, devices their labels.
pub fn event(event: &Event, names: &mut Names) -> Summary {
    let ids = &mut names.transfers;
    match event {
        Event::IncomingTransfer {
            transfer,
            name,
            size,
            ..
        } => Summary::plain(format!(
            "{} incoming {name:?} {size} bytes",
            ids.of(*transfer)
        )),
        Event::IncomingManifest {
            manifest,
            files,
            folders,
            size,
            names: shown,
            ..
        } => Summary::plain(format!(
            "{} incoming manifest: {files} files, {folders} folders, {size} bytes, {shown:?}",
            ids.of(*manifest)
        )),
        Event::ManifestFile {
            manifest,
            transfer,
            path,
            size,
        } => {
            let (m, t) = (ids.of(*manifest), ids.of(*transfer));
            Summary::plain(format!("{m} file {t} {path:?} {size} bytes, taken"))
        }
        Event::SubTransfer {
            group, transfer, ..
        } => {
            let (g, t) = (ids.of(*group), ids.of(*transfer));
            Summary::plain(format!("{g} reaches a device as {t}"))
        }
        Event::ConnectionRequest { account, device } => {
            let labels = &names.labels;
            Summary::plain(if labels.knows_device(device) {
                format!("device {} asks to connect", labels.device_name(device))
            } else {
                format!(
                    "account {} device {} asks to connect",
                    labels.account_name(account),
                    labels.device_name(device)
                )
            })
        }
        Event::RequestDropped {
            account,
            device,
            reason,
        } => Summary::plain(format!(
            "request of account {} device {} dropped: {reason}",
            names.labels.account_name(account),
            names.labels.device_name(device)
        )),
        Event::AskAgain { from, transfer, .. } => Summary::plain(format!(
            "device {} asks for {} again",
            names.labels.device_name(&from.device),
            ids.of(*transfer)
        )),
        Event::AskAnswered {
            transfer,
            device,
            answer,
            ..
        } => {
            let t = ids.of(*transfer);
            let who = device.map_or("no device".to_owned(), |d| {
                format!("device {}", names.labels.device_name(&d))
            });
            Summary::plain(match answer {
                Ok(a) => format!("{t} asked again: {who} answers {a}"),
                Err(why) => format!("{t} asked again: {who}: {why}"),
            })
        }
        Event::Connected { device, path } => Summary::plain(format!(
            "path to device {}: {path}",
            names.labels.device_name(device)
        )),
        Event::PeerUnreachable { device, reason } => Summary::plain(format!(
            "device {} unreachable: {reason}",
            names.labels.device_name(device)
        )),
        Event::Aggregate {
            group,
            status,
            done,
            total,
        } => {
            let g = ids.of(*group);
            Summary {
                text: format!("{g} aggregate {status} {done}/{total}"),
                bulk: Some(Bulk::Latest {
                    key: format!("agg {g}"),
                }),
            }
        }
        Event::Status {
            transfer,
            status,
            reason,
        } => {
            let t = ids.of(*transfer);
            match reason {
                Some(r) => Summary::plain(format!("{t} {status} ({r})")),
                None => Summary::plain(format!("{t} {status}")),
            }
        }
        Event::Resuming {
            transfer,
            offset,
            total,
            verified,
        } => Summary::plain(format!(
            "{} resuming at {offset}/{total}{}",
            ids.of(*transfer),
            if *verified { " (prefix verified)" } else { "" }
        )),
        Event::Restarted {
            transfer,
            held,
            total,
        } => Summary::plain(format!(
            "{} restarting at 0/{total} (the {held} bytes held did not match)",
            ids.of(*transfer)
        )),
        Event::Progress {
            transfer,
            done,
            total,
        } => {
            let t = ids.of(*transfer);
            Summary {
                text: format!("{t} progress {done}/{total}"),
                bulk: Some(Bulk::Latest { key: t }),
            }
        }
        Event::Verified {
            transfer,
            digest,
            name,
        } => {
            let t = ids.of(*transfer);
            if name.is_empty() {
                Summary::plain(format!("{t} verified sha3={}…", digest.short()))
            } else {
                Summary::plain(format!(
                    "{t} verified sha3={}… saved as {name:?}",
                    digest.short()
                ))
            }
        }
        Event::ShutDown => Summary::plain("shut down"),
    }
}

/// Summarises a file operation. Reads and writes collapse into byte counts.
pub fn file_op(op: &FileOp) -> Summary {
    match op {
        FileOp::OpenSource { source, .. } => Summary::plain(format!("file open {source:?}")),
        FileOp::OpenPartial {
            name,
            size,
            place: None,
            ..
        } => Summary::plain(format!(
            "file open partial for {:?} ({size} bytes)",
            name.as_str()
        )),
        FileOp::OpenPartial {
            size,
            place: Some(place),
            ..
        } => Summary::plain(format!(
            "file open partial for {:?} in its manifest ({size} bytes)",
            place.path.to_string()
        )),
        FileOp::MakeTree { manifest, .. } => Summary::plain(format!(
            "file make the tree of a manifest ({} entries)",
            manifest.entries().len()
        )),
        FileOp::Read { len, .. } => Summary::sum("read", u64::from(*len)),
        FileOp::Write { data, .. } => Summary::sum("write", data.len() as u64),
        FileOp::Digest { len, .. } => Summary::plain(format!("file sha3-512 of {len} bytes")),
        FileOp::Commit { .. } => Summary::plain("file commit to final name"),
        FileOp::ForgetTree { .. } => Summary::plain("file forget the tree of a manifest"),
        FileOp::Discard { .. } => Summary::plain("file discard partial"),
        FileOp::Close { .. } => Summary::plain("file close"),
        FileOp::Truncate { .. } => Summary::plain("file truncate partial to 0"),
    }
}

/// Summarises an event of an ICE agent: `selected c0: host 10.0.0.2:9 → host
/// 10.0.0.1:5000`, `failed: ICE timeout (2 pairs)`, `role changed to controlled`, `learned
/// peer-reflexive 203.0.113.7:40001`.
pub fn ice_event(event: &crate::ice::Event) -> Summary {
    use crate::ice::Event as E;
    Summary::plain(match event {
        E::Selected {
            conn,
            local,
            remote,
        } => format!(
            "selected {conn}: {} {} → {} {}",
            local.kind.as_str(),
            local.addr,
            remote.kind.as_str(),
            remote.addr
        ),
        E::Failed { reason, pairs } => format!("failed: {reason} ({} pairs)", pairs.len()),
        E::RoleChanged { role } => format!("role changed to {role}"),
        E::PeerReflexive { candidate } => format!("learned peer-reflexive {}", candidate.addr),
    })
}
