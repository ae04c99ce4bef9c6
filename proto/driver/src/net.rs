//! TCP sockets as the core asks for them, made with `socket2` before a runtime adopts them.
//!
//! Every listener binds with address and port reuse, so that an outbound connection can later
//! bind the same port ([`Output::Connect`](ferry_proto::io::Output::Connect) with a `local_port`):
//! ICE-TCP active candidates and simultaneous open need it. Both sockets set `SO_REUSEADDR`
//! and, on Unix, `SO_REUSEPORT` (Linux requires it on both for a second bind of a listening
//! port). The price: another socket of the same user that also asks for port reuse can bind
//! a port one of our listeners holds, so a `Listen` on a fixed port is not exclusive.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use ferry_proto::io::ConnectError;

/// How many pending connections a listener queues.
const BACKLOG: i32 = 1024;

fn reusable_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        // One family per socket, on every system: dual-stack sockets differ between them.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking listener bound to `local` with address and port reuse.
pub fn listener(local: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = reusable_socket(&local)?;
    socket.bind(&local.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking socket for a connection to `remote`, bound first to `local` when given (a
/// listening address, for a connection from a listening port), with the connect already
/// started: the runtime waits until it is writable, then asks [`finish_connect`].
pub fn start_connect(
    remote: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<std::net::TcpStream, ConnectError> {
    let socket = reusable_socket(&remote).map_err(|e| connect_error(&e))?;
    if let Some(local) = local {
        socket
            .bind(&local.into())
            .map_err(|_| ConnectError::LocalPortUnavailable)?;
    }
    match socket.connect(&SockAddr::from(remote)) {
        Ok(()) => {}
        Err(e) if in_progress(&e) => {}
        Err(e) => return Err(connect_error(&e)),
    }
    let _ = socket.set_tcp_nodelay(true);
    Ok(socket.into())
}

/// Once a started connect is writable: its outcome, with the local address it got.
pub fn finish_connect(socket: socket2::SockRef<'_>) -> Result<SocketAddr, ConnectError> {
    if let Some(e) = socket.take_error().map_err(|e| connect_error(&e))? {
        return Err(connect_error(&e));
    }
    // Writable without an error but not connected happens on some systems after a failure.
    socket.peer_addr().map_err(|e| connect_error(&e))?;
    let local = socket.local_addr().map_err(|e| connect_error(&e))?;
    local
        .as_socket()
        .ok_or_else(|| ConnectError::Other("not an IP socket".into()))
}

/// Where a connection to `remote` from `port` binds: the address of the listener that holds
/// that port in the same family, or the unspecified address.
pub fn local_for(
    remote: SocketAddr,
    port: u16,
    listening: impl IntoIterator<Item = SocketAddr>,
) -> SocketAddr {
    listening
        .into_iter()
        .find(|l| l.port() == port && l.is_ipv4() == remote.is_ipv4())
        .unwrap_or_else(|| {
            let any = if remote.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            SocketAddr::new(any, port)
        })
}

/// Makes the next close of this socket a reset (RST) instead of an orderly FIN.
pub fn reset_on_close(socket: socket2::SockRef<'_>) {
    let _ = socket.set_linger(Some(std::time::Duration::ZERO));
}

/// Whether a non-blocking connect is under way (`EINPROGRESS`, which std has no kind for).
fn in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    // Windows reports a started connect as WSAEWOULDBLOCK.
    e.kind() == ErrorKind::WouldBlock
}

/// What the core hears for a failed connect.
pub fn connect_error(e: &io::Error) -> ConnectError {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => ConnectError::Refused,
        ErrorKind::TimedOut => ConnectError::TimedOut,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => ConnectError::Unreachable,
        ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable => ConnectError::LocalPortUnavailable,
        _ => ConnectError::Other(e.to_string()),
    }
}
