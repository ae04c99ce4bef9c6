//! The same TURN client scenarios as `turn_coturn`, against Ferry's own TURN server
//! (`ferry_sim::turn_server`) on real loopback sockets, driven by the plain blocking driver
//! on threads (one server per loopback). The simulator runs them too: `turn_sim`.
//! `cargo test -p ferry-tests --test turn_ferry_loopback`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_proto::turn::Family;
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_tests::coturn::{PASSWORD, REALM, USER};
use ferry_tests::realnet::{RealNet, is_listening};
use ferry_tests::turn_loopback::{Loopback, LoopbackServer};
use ferry_tests::turn_suite::{self, ServerFault};

/// Two servers, one listening on each loopback, each on its own thread.
struct FerryTurn {
    v4: SocketAddr,
    v6: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Faults for the IPv4 server.
    faults: mpsc::Sender<ServerFault>,
}

impl FerryTurn {
    fn start(configure: impl Fn(&mut TurnServerConfig)) -> FerryTurn {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut addrs = Vec::new();
        let (faults, fault_rx) = mpsc::channel::<ServerFault>();
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
            // Every peer here is on loopback, which the server refuses by default as coturn
            // does (the coturn tests pass `--allow-loopback-peers` likewise).
            config.allow_loopback_peers = true;
            configure(&mut config);
            let stop = stop.clone();
            let faults_here = if ip.is_ipv4() { fault_rx.take() } else { None };
            threads.push(std::thread::spawn(move || {
                let mut net = RealNet::new(TurnServer::new(config));
                while !stop.load(Ordering::Relaxed) {
                    net.run_until(Duration::from_millis(2), |_| false);
                    while let Some(fault) = faults_here.as_ref().and_then(|rx| rx.try_recv().ok()) {
                        net.command(|server, _| match fault {
                            ServerFault::Restart => server.restart(),
                            ServerFault::Silent => server.set_silent(true),
                            ServerFault::DropDataConnection(id) => server.drop_data_connection(id),
                        });
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

impl LoopbackServer for FerryTurn {
    fn addr(&self, family: Family) -> SocketAddr {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    fn fault(&self, fault: ServerFault) -> bool {
        let sent = self.faults.send(fault).is_ok();
        // Let the server thread take it before the scenario goes on.
        std::thread::sleep(Duration::from_millis(50));
        sent
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
    ($($name:ident: $configure:expr;)*) => {$(
        #[test]
        fn $name() {
            turn_suite::$name(&mut Loopback::new(FerryTurn::start($configure)));
        }
    )*};
}

against_ferry! {
    allocation_with_the_401_dance_and_clean_deallocation: |_| {};
    a_wrong_password_is_a_clear_error: |_| {};
    permission_then_connect_to_a_peer_with_bytes_both_ways: |_| {};
    a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways: |_| {};
    a_connection_from_an_address_without_permission_is_refused: |_| {};
    a_short_lifetime_is_refreshed: |c| c.max_lifetime = Duration::from_secs(4);
    ipv6_allocation_and_connect: |_| {};
    connect_and_accept_on_one_allocation: |_| {};
    early_data_beyond_the_limit_is_dropped: |_| {};
    a_stale_nonce_is_renewed: |c| c.nonce_lifetime = Duration::from_secs(2);
    an_allocation_not_refreshed_in_time_is_gone: |c| c.max_lifetime = Duration::from_secs(4);
    connect_errors_are_named_as_coturn_names_them: |_| {};
    a_restart_loses_the_allocation_and_the_client_hears_it: |_| {};
    a_server_that_stops_answering_is_a_timeout: |_| {};
    a_dropped_data_connection_closes_the_peer_stream: |_| {};
}
