//! The native node's UDP sockets: one for IPv4 and, when the host has IPv6, a second on
//! `[::]` that takes IPv6 only (`IPV6_V6ONLY`), as `dhtnode` opens both.
//!
//! Each socket has a reader thread that hands datagrams to the node's thread through one
//! bounded queue; a datagram that finds the queue full is dropped and counted, as a full
//! socket buffer would drop it. Datagrams out go through the socket of their destination's
//! family (none: dropped and counted).

use std::io;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Datagrams waiting for the node's thread, at most.
// SECURITY: row 156
pub(super) const QUEUE: usize = 4096;
/// Largest datagram read (OpenDHT's parts are 1,280 bytes; its messages stay under 1,500).
const MAX_DATAGRAM: usize = 2048;
/// How often a reader looks whether the node stopped.
const READ_TICK: Duration = Duration::from_millis(100);

/// A datagram in, with its source.
pub(super) type Incoming = (SocketAddr, Vec<u8>);

/// Both sockets, their readers, and what was dropped on the way.
pub(super) struct Sockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    stop: Arc<AtomicBool>,
    /// Datagrams dropped: the queue to the node was full.
    pub(super) queue_full: Arc<AtomicU64>,
    /// Datagrams out to a family we have no socket for.
    pub(super) no_socket: u64,
}

impl Sockets {
    /// Binds `bind` (IPv4 or IPv6) and, if `bind6` is given and `bind` is IPv4, an IPv6-only
    /// socket there (the same port as the IPv4 socket when `bind6`'s is 0 and that port is
    /// free, else any). A host without IPv6 gets the IPv4 socket alone.
    pub(super) fn open(
        bind: SocketAddr,
        bind6: Option<SocketAddr>,
    ) -> io::Result<(Sockets, mpsc::Receiver<Incoming>)> {
        let first = if bind.is_ipv6() {
            v6_only(bind)?
        } else {
            UdpSocket::bind(bind)?
        };
        let mut v6 = None;
        if let (true, Some(b6)) = (bind.is_ipv4(), bind6) {
            let port = first.local_addr()?.port();
            let same = SocketAddr::new(b6.ip(), if b6.port() == 0 { port } else { b6.port() });
            v6 = match v6_only(same) {
                Ok(s) => Some(s),
                Err(_) if b6.port() == 0 => v6_only(b6).ok(),
                Err(e) => {
                    tracing::debug!(error = %e, "no IPv6 socket for the DHT node");
                    None
                }
            };
        }
        let (v4, v6) = if bind.is_ipv6() {
            (None, Some(first))
        } else {
            (Some(first), v6)
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let sockets = Sockets {
            v4,
            v6,
            stop: Arc::new(AtomicBool::new(false)),
            queue_full: Arc::new(AtomicU64::new(0)),
            no_socket: 0,
        };
        for socket in [&sockets.v4, &sockets.v6].into_iter().flatten() {
            let socket = socket.try_clone()?;
            socket.set_read_timeout(Some(READ_TICK))?;
            let (stop, full, tx) = (sockets.stop.clone(), sockets.queue_full.clone(), tx.clone());
            std::thread::Builder::new()
                .name("ferry-opendht-rx".into())
                .spawn(move || read(&socket, &stop, &full, &tx))?;
        }
        Ok((sockets, rx))
    }

    /// The IPv4 socket's address.
    pub(super) fn local4(&self) -> Option<SocketAddr> {
        self.v4.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The IPv6 socket's address.
    pub(super) fn local6(&self) -> Option<SocketAddr> {
        self.v6.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Whether we have a socket for `addr`'s family.
    pub(super) fn reaches(&self, addr: &SocketAddr) -> bool {
        if addr.is_ipv6() {
            self.v6.is_some()
        } else {
            self.v4.is_some()
        }
    }

    /// Sends `data` to `to` through the socket of its family.
    pub(super) fn send(&mut self, data: &[u8], to: SocketAddr) {
        let socket = if to.is_ipv6() { &self.v6 } else { &self.v4 };
        match socket {
            // A datagram the kernel refuses (no route, a full buffer) is lost, as on the wire.
            Some(s) => {
                let _ = s.send_to(data, to);
            }
            None => self.no_socket += 1,
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An IPv6 socket that takes IPv6 only, so that an IPv4 socket may share its port.
fn v6_only(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let ip = match addr {
        SocketAddr::V6(a) => *a.ip(),
        SocketAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    };
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.bind(&SocketAddr::new(ip.into(), addr.port()).into())?;
    Ok(socket.into())
}

fn read(socket: &UdpSocket, stop: &AtomicBool, full: &AtomicU64, tx: &mpsc::SyncSender<Incoming>) {
    let mut buf = [0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        // An error is a timeout, or an ICMP error reported on the socket: nothing to read.
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        match tx.try_send((from, buf[..n].to_vec())) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                full.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    // SECURITY: row 156
    #[test]
    fn datagrams_past_the_queue_are_dropped_and_counted() {
        let (sockets, rx) =
            Sockets::open("127.0.0.1:0".parse().expect("addr"), None).expect("binds");
        let to = sockets.local4().expect("an IPv4 socket");
        let flood = UdpSocket::bind("127.0.0.1:0").expect("binds");
        // Nobody takes from the queue: past `QUEUE` datagrams, the rest are dropped.
        let deadline = Instant::now() + Duration::from_secs(60);
        while sockets.queue_full.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the queue never filled");
            for _ in 0..256 {
                let _ = flood.send_to(b"x", to);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // The queue was full: the node's side finds every place taken.
        for i in 0..QUEUE {
            assert!(rx.try_recv().is_ok(), "only {i} datagrams were queued");
        }
    }
}
