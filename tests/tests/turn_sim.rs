//! The same TURN client scenarios as `turn_coturn`, against Ferry's own TURN server
//! (`ferry_sim::turn_server`), run here on real loopback sockets by the plain test driver.
//! `cargo test -p ferry-tests --test turn_sim`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_tests::coturn::{PASSWORD, REALM, USER};
use ferry_tests::realnet::{RealNet, is_listening};
use ferry_tests::turn_suite::{self, TurnFixture};

type Fault = Box<dyn FnOnce(&mut TurnServer) + Send>;

/// Two servers, one listening on each loopback, each on its own thread.
struct FerryTurn {
    v4: SocketAddr,
    v6: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Faults for the IPv4 server.
    faults: mpsc::Sender<Fault>,
}

impl FerryTurn {
    fn start(max_lifetime: Duration) -> FerryTurn {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut addrs = Vec::new();
        let (faults, fault_rx) = mpsc::channel::<Fault>();
        let mut fault_rx = Some(fault_rx);
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let port = TcpListener::bind((ip, 0))
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port();
            let listen = SocketAddr::new(ip, port);
            let mut config = TurnServerConfig::new(listen, USER, PASSWORD, REALM);
            config.relay_v4 = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            config.relay_v6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
            config.max_lifetime = max_lifetime;
            let stop = stop.clone();
            let faults_here = if ip.is_ipv4() { fault_rx.take() } else { None };
            threads.push(std::thread::spawn(move || {
                let mut net = RealNet::new(TurnServer::new(config));
                while !stop.load(Ordering::Relaxed) {
                    net.run_until(Duration::from_millis(20), |_| false);
                    while let Some(fault) = faults_here.as_ref().and_then(|rx| rx.try_recv().ok()) {
                        net.command(|server, _| fault(server));
                    }
                }
            }));
            while !is_listening(listen) {
                std::thread::sleep(Duration::from_millis(5));
            }
            addrs.push(listen);
        }
        FerryTurn {
            v4: addrs[0],
            v6: addrs[1],
            stop,
            threads,
            faults,
        }
    }
}

impl TurnFixture for FerryTurn {
    fn v4(&self) -> SocketAddr {
        self.v4
    }
    fn v6(&self) -> SocketAddr {
        self.v6
    }
}

impl Drop for FerryTurn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

macro_rules! against_ferry {
    ($($name:ident: $max_lifetime:expr;)*) => {$(
        #[test]
        fn $name() {
            let server = FerryTurn::start($max_lifetime);
            turn_suite::$name(&server);
        }
    )*};
}

const HOUR: Duration = Duration::from_secs(3600);

against_ferry! {
    allocation_with_the_401_dance_and_clean_deallocation: HOUR;
    a_wrong_password_is_a_clear_error: HOUR;
    permission_then_connect_to_a_peer_with_bytes_both_ways: HOUR;
    a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways: HOUR;
    a_connection_from_an_address_without_permission_is_refused: HOUR;
    a_short_lifetime_is_refreshed: Duration::from_secs(4);
    ipv6_allocation_and_connect: HOUR;
}

mod faults {
    use super::*;
    use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnError, TurnEvent};

    fn allocated(server: &FerryTurn) -> RealNet<TurnClient> {
        let mut config = TurnConfig::new(server.v4, USER, PASSWORD);
        config.family = Family::V4;
        config.request_timeout = Duration::from_secs(1);
        let mut net = RealNet::new(TurnClient::new(config, 9));
        let got = net.run_until(turn_suite::WAIT, |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
        });
        assert!(matches!(got, Some(TurnEvent::Allocated { .. })), "{got:?}");
        net
    }

    #[test]
    fn a_restart_loses_the_allocation_and_the_client_hears_it() {
        let server = FerryTurn::start(HOUR);
        let mut net = allocated(&server);
        server
            .faults
            .send(Box::new(|s| s.restart()))
            .expect("server thread");
        let got = net.run_until(turn_suite::WAIT, |e| matches!(e, TurnEvent::Failed { .. }));
        assert_eq!(
            got,
            Some(TurnEvent::Failed {
                error: TurnError::ControlLost
            })
        );
    }

    #[test]
    fn a_server_that_stops_answering_is_a_timeout() {
        let server = FerryTurn::start(HOUR);
        let mut net = allocated(&server);
        server
            .faults
            .send(Box::new(|s| s.set_silent(true)))
            .expect("server thread");
        std::thread::sleep(Duration::from_millis(100));
        net.command(|c, now| c.permit(now, [IpAddr::V4(Ipv4Addr::LOCALHOST)]));
        let got = net.run_until(turn_suite::WAIT, |e| {
            matches!(
                e,
                TurnEvent::PermissionFailed { .. } | TurnEvent::Permitted { .. }
            )
        });
        assert!(
            matches!(
                got,
                Some(TurnEvent::PermissionFailed {
                    error: TurnError::Timeout,
                    ..
                })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_dropped_data_connection_closes_the_peer_stream() {
        let server = FerryTurn::start(HOUR);
        let mut net = allocated(&server);
        let relayed = net.endpoint.relayed().expect("relayed");
        net.command(|c, now| c.permit(now, [IpAddr::V4(Ipv4Addr::LOCALHOST)]));
        assert!(
            net.run_until(turn_suite::WAIT, |e| matches!(
                e,
                TurnEvent::Permitted { .. }
            ))
            .is_some()
        );
        let peer = std::thread::spawn(move || {
            use std::io::Read as _;
            let mut s = std::net::TcpStream::connect(relayed).expect("connect");
            s.set_read_timeout(Some(turn_suite::WAIT)).expect("timeout");
            let mut buf = [0u8; 8];
            matches!(s.read(&mut buf), Ok(0) | Err(_))
        });
        let conn = match net.run_until(turn_suite::WAIT, |e| {
            matches!(e, TurnEvent::PeerStream { .. })
        }) {
            Some(TurnEvent::PeerStream { conn, .. }) => conn,
            other => panic!("{other:?}"),
        };
        // The server numbers connections from 0x1000; this is the first.
        server
            .faults
            .send(Box::new(|s| s.drop_data_connection(0x1000)))
            .expect("server thread");
        let got = net.run_until(turn_suite::WAIT, |e| {
            matches!(e, TurnEvent::PeerClosed { .. })
        });
        assert_eq!(got, Some(TurnEvent::PeerClosed { conn }));
        assert!(peer.join().expect("peer"), "the peer's side was reset too");
    }
}
