//! OpenDHT 2.4.12's constants, each named after the one it copies.
//!
//! `network_engine.h` holds the wire's; `value.h` the value size; `dht.h`, `node.h`,
//! `routing_table.h`, `search.h` and `storage.h` the node's timings and limits.

use std::time::Duration;

/// `NetworkEngine::my_v`: the user-agent field `v` every message carries.
pub const MY_V: &str = "RNG1";

/// `NetworkEngine::MTU`: the largest chunk of a value sent in one value-part message.
pub const MTU: usize = 1280;

/// `NetworkEngine::MAX_PACKET_VALUE_SIZE`: values whose packed sizes add up to this or
/// more travel in value-part messages after the message that announces their sizes.
pub const MAX_PACKET_VALUE_SIZE: usize = 600;

/// `NetworkEngine::packValueHeader`'s count limit: 50 values or more go in parts too.
pub const MAX_VALUES_INLINE: usize = 50;

/// `NetworkEngine::RX_MAX_PACKET_TIME`: the longest a value-part message may take in all.
pub const RX_MAX_PACKET_TIME: Duration = Duration::from_secs(10);

/// `NetworkEngine::RX_TIMEOUT`: the longest wait between two parts of one message.
pub const RX_TIMEOUT: Duration = Duration::from_secs(3);

/// `NetworkEngine::NODE4_INFO_BUF_LEN`: an IPv4 node in `n4`: id, address, port.
pub const NODE4_INFO_BUF_LEN: usize = 20 + 4 + 2;

/// `NetworkEngine::NODE6_INFO_BUF_LEN`: an IPv6 node in `n6`: id, address, port.
pub const NODE6_INFO_BUF_LEN: usize = 20 + 16 + 2;

/// `NetworkEngine::UDP_REPLY_TIME`: a node that answered within this is "confirmed".
pub const UDP_REPLY_TIME: Duration = Duration::from_secs(15);

/// `Value::MAX_VALUE_SIZE` (`value.h`): the largest value a node stores (64 KiB).
pub const MAX_VALUE_SIZE: usize = 64 * 1024;

/// `ParsedMessage::msgpack_unpack`: a value header above this size is skipped.
pub const MAX_VALUE_HEADER_SIZE: usize = MAX_VALUE_SIZE + 32;

/// `DhtProtocolException::NON_AUTHORITATIVE_INFORMATION`: an incomplete request.
pub const ERROR_NON_AUTHORITATIVE: u16 = 203;
/// `DhtProtocolException::UNAUTHORIZED`: a put or listen with a wrong token.
pub const ERROR_UNAUTHORIZED: u16 = 401;
/// `DhtProtocolException::NOT_FOUND`: a refresh of a value we do not hold.
pub const ERROR_NOT_FOUND: u16 = 404;

/// `AF_INET` as OpenDHT writes it in the `w` (want) list (Linux's value).
pub const AF_INET: u64 = 2;
/// `AF_INET6` as OpenDHT writes it in the `w` (want) list (Linux's value).
pub const AF_INET6: u64 = 10;

/// `TARGET_NODES` (`dht.h`): nodes a search stores a value on, and nodes a find returns.
pub const TARGET_NODES: usize = 8;

/// `Bucket` capacity (`TARGET_NODES` in `routing_table.cpp`): nodes one bucket holds.
pub const BUCKET_SIZE: usize = 8;

/// `Node::NODE_GOOD_TIME` (`node.h`): a node heard from within this is good.
pub const NODE_GOOD_TIME: Duration = Duration::from_secs(2 * 60 * 60);

/// `Node::NODE_EXPIRE_TIME` (`node.h`): a node not heard from for this is dubious and
/// gets pinged.
pub const NODE_EXPIRE_TIME: Duration = Duration::from_secs(10 * 60);

/// `Node::MAX_RESPONSE_TIME` (`node.h`): wait this long for an answer before resending.
pub const MAX_RESPONSE_TIME: Duration = Duration::from_secs(1);

/// `Request::MAX_ATTEMPT_COUNT` (`request.h`): sends of one request before it expires.
pub const MAX_ATTEMPT_COUNT: u32 = 3;

/// `Node::MAX_AUTH_ERRORS` (`node.h`): after this many expired requests a node is bad.
pub const MAX_AUTH_ERRORS: u32 = 3;

/// `ValueType::USER_DATA`'s expiration (`value.h`): a stored value lives 10 minutes
/// unless refreshed or put again.
pub const VALUE_EXPIRATION: Duration = Duration::from_secs(10 * 60);

/// `Dht::LISTEN_EXPIRE_TIME` (`dht.h`): a listen lasts this long unless renewed.
pub const LISTEN_EXPIRE_TIME: Duration = Duration::from_secs(30);

/// `Dht::REANNOUNCE_MARGIN` (`dht.h`): re-announce our values this long before they expire.
pub const REANNOUNCE_MARGIN: Duration = Duration::from_secs(10);

/// `Dht::SEARCH_NODES` (`dht.h`): nodes a search keeps, closest first.
pub const SEARCH_NODES: usize = 14;

/// `Dht::MAX_REQUESTED_SEARCH_NODES` (`dht.h`): requests one search has in flight (α).
pub const MAX_REQUESTED_SEARCH_NODES: usize = 4;

/// `Dht::LISTEN_NODES` (`dht.h`): nodes a listen registers with.
pub const LISTEN_NODES: usize = 4;

/// `Dht::MAX_HASHES` (`dht.h`): keys one node stores values under.
pub const MAX_HASHES: usize = 16384;

/// `Dht::MAX_SEARCHES` (`dht.h`): searches one node runs at once.
pub const MAX_SEARCHES: usize = 2048;

/// `Dht::TOKEN_SIZE` (`dht.h`): the bytes of a write token.
pub const TOKEN_SIZE: usize = 32;

/// `DEFAULT_STORAGE_LIMIT` (`callbacks.h`): bytes we store for others in all (64 MiB).
pub const MAX_STORE_SIZE: usize = 64 * 1024 * 1024;

/// Values stored under one key. Ferry's own bound (OpenDHT bounds a key only by the
/// total store): one key cannot take the whole store.
pub const MAX_VALUES_PER_KEY: usize = 1024;

/// Bytes one address may have stored with us. Ferry's own figure for OpenDHT's per-address
/// `store_quota` (`StorageBucket`, `dht.h`): 1/64 of the store, 1 MiB.
pub const MAX_STORE_PER_ADDRESS: usize = MAX_STORE_SIZE / 64;

/// How often the secret behind write tokens rotates (OpenDHT's `rotateSecrets` picks a
/// random 15–45 minutes; Ferry takes the middle). A token of the previous secret is still
/// accepted, as `Dht::tokenMatch` does.
pub const TOKEN_ROTATION: Duration = Duration::from_secs(30 * 60);

/// Requests we answer per second in all. Ferry's own figure (OpenDHT's
/// `NetworkConfig::max_req_per_sec` is set by its runner).
pub const MAX_REQUESTS_PER_SEC: usize = 1600;

/// Requests we answer per second from one address (`max_peer_req_per_sec`, one eighth of
/// the global limit as `DhtRunner` sets it: global limiting needs at least 8 addresses).
pub const MAX_PEER_REQUESTS_PER_SEC: usize = MAX_REQUESTS_PER_SEC / 8;
