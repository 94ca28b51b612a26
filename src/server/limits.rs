//! Request and byte rate limits (`serve --rate-limit-token N`, `--rate-limit-address N`,
//! `--byte-limit-token BYTES`, `--byte-limit-address BYTES`; docs/design.md §20): token
//! buckets per caller, refusing with 429 and `Retry-After`, which the helper waits out and
//! asks again (`client::with_retries`).
//!
//! Bytes are counted where this server first sees them: the sizes it hands out presigned
//! URLs for (declared sizes of uploads, sizes of packs and LFS objects in download answers)
//! and the inline packs of `update`, against the caller's [`ByteBudget`]; and the bytes of
//! the local store's `/_store` transfers, against the mover's address ([`charge_transfer`]).
//! On a local-disk store a request counted by address is not charged for what it is handed:
//! its transfer is, so that no byte counts twice in one bucket. A byte bucket may go into
//! debt: one pack larger than the bucket still goes (a limit must not make a push
//! impossible), and the caller's next transfer waits until the debt is paid back.
//!
//! Owns the buckets, the middleware ([`enforce`]) that the API and LFS routes go through, the
//! [`ByteBudget`] it hands those routes, and [`charge_transfer`] for the local store's
//! `/_store` transfers. Request limits leave out `/healthz`, `/readyz`, `/metrics` and
//! `/_store` (each URL was handed out by a request that was counted, and expires). Who a
//! request is comes from `credentials::rate_subject`.
//!
//! Each request is counted by one limit: by the token limit when it carries a token that
//! verifies (keyed by the token's subject, or the whole token when it names none; in plugin
//! mode by the user Hypha names) and that limit is on; otherwise by the address limit (keyed
//! by the peer's IP, an IPv6 peer by its /64; with `--trust-forwarded-for`, the last address of
//! `X-Forwarded-For`). Plugin mode has no address limit: every request comes from the plugin
//! on loopback.
//!
//! Memory is bounded: keys are kept as 64-bit keyed hashes in two generations of at most
//! [`GENERATION`] keys each; when the current one is full, the previous one (keys not seen
//! since the current one started) is dropped. A dropped key starts again with a full bucket,
//! which is what an idle key's bucket would hold anyway. One hash lookup per request, no
//! background task.

use super::credentials;
use super::error::ApiError;
use super::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Keys per generation: a limit tracks at most twice this many. 28,672 keys fill a hash
/// table of 32,768 slots of 25 bytes (seven eighths is its load limit): about 0.8 MB a
/// generation, 1.6 MB a limit.
pub const GENERATION: usize = 28 * 1024;

/// What the operator asked for (`serve --rate-limit-*`). All zero (the default): no limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Requests a minute per token (per user in plugin mode); 0 = off.
    pub token_per_minute: u32,
    /// Requests a minute per address, for requests the token limit does not count; 0 = off.
    pub address_per_minute: u32,
    /// Take the client's address from the last entry of `X-Forwarded-For` (a proxy in
    /// front adds it) instead of the socket's peer.
    pub trust_forwarded_for: bool,
    /// Bytes a minute per token (per user in plugin mode); 0 = off.
    pub token_bytes_per_minute: u64,
    /// Bytes a minute per address, for what the token byte limit does not count and for
    /// every `/_store` transfer; 0 = off.
    pub address_bytes_per_minute: u64,
}

impl Settings {
    pub fn is_off(&self) -> bool {
        self.token_per_minute == 0
            && self.address_per_minute == 0
            && self.token_bytes_per_minute == 0
            && self.address_bytes_per_minute == 0
    }
}

/// The limits of one server.
#[derive(Debug)]
pub struct RateLimits {
    token: Option<Limiter>,
    address: Option<Limiter>,
    token_bytes: Option<Limiter>,
    address_bytes: Option<Limiter>,
    trust_forwarded_for: bool,
    /// The store is this server's local disk: its `/_store` transfers are charged, so that
    /// what an address is handed is not ([`ByteBudget::hand_out`]).
    local_transfers: bool,
}

impl RateLimits {
    /// `None` when every limit is off. `local_transfers`: the store is local disk, whose
    /// presigned transfers this server answers itself.
    pub fn new(settings: Settings, local_transfers: bool) -> Option<RateLimits> {
        if settings.is_off() {
            return None;
        }
        Some(RateLimits {
            token: Limiter::new(settings.token_per_minute.into()),
            address: Limiter::new(settings.address_per_minute.into()),
            token_bytes: Limiter::new(settings.token_bytes_per_minute),
            address_bytes: Limiter::new(settings.address_bytes_per_minute),
            trust_forwarded_for: settings.trust_forwarded_for,
            local_transfers,
        })
    }
}

/// One limit: a token bucket per key, holding up to [`Limiter::burst`] requests (or bytes)
/// and refilled at `per_minute` a minute.
pub struct Limiter {
    per_minute: u64,
    burst: f64,
    /// Requests a second.
    rate: f64,
    /// Keyed (random per limiter): a client cannot choose keys that collide.
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
    buckets: Mutex<Generations>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("per_minute", &self.per_minute)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Generations {
    current: HashMap<u64, Bucket>,
    previous: HashMap<u64, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Requests it may still take now.
    tokens: f64,
    /// Seconds since the limiter's epoch when `tokens` was computed.
    at: f64,
}

impl Limiter {
    /// `None` for 0 (off).
    pub fn new(per_minute: u64) -> Option<Limiter> {
        (per_minute > 0).then(|| Limiter {
            per_minute,
            burst: burst(per_minute) as f64,
            rate: per_minute as f64 / 60.0,
            hasher: Default::default(),
            epoch: Instant::now(),
            buckets: Mutex::default(),
        })
    }

    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// Take one request for `key` at `now`: `Err(seconds)` to wait (at least 1) when its
    /// bucket is empty.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), u64> {
        self.with_bucket(key, now, |tokens| {
            if tokens >= 1.0 {
                (tokens - 1.0, Ok(()))
            } else {
                (tokens, Err(self.wait(1.0 - tokens)))
            }
        })
    }

    /// Take `cost` bytes for `key` at `now`, going into debt if the bucket holds fewer:
    /// refused (`Err(seconds)`, at least 1) only while an earlier debt is not paid back.
    /// A transfer larger than the bucket therefore still goes once, and the key then waits
    /// for as long as its bytes take at the limit's rate.
    pub fn take(&self, key: &[u8], cost: u64, now: Instant) -> Result<(), u64> {
        self.ready(key, now)?;
        self.charge(key, cost, now);
        Ok(())
    }

    /// `Err(seconds)` (at least 1) while `key` is in debt; takes nothing.
    pub fn ready(&self, key: &[u8], now: Instant) -> Result<(), u64> {
        self.with_bucket(key, now, |tokens| {
            if tokens >= 0.0 {
                (tokens, Ok(()))
            } else {
                (tokens, Err(self.wait(-tokens)))
            }
        })
    }

    /// Take `cost` for `key`, into debt if need be: after [`Limiter::ready`] said yes and
    /// the request was found worth answering (a request refused for another reason costs
    /// nothing).
    pub fn charge(&self, key: &[u8], cost: u64, now: Instant) {
        let _ = self.with_bucket(key, now, |tokens| (tokens - cost as f64, Ok(())));
    }

    /// Whole seconds (at least 1) until `missing` comes back.
    fn wait(&self, missing: f64) -> u64 {
        (missing / self.rate).ceil().max(1.0) as u64
    }

    /// The refilled bucket of `key` (full when unknown) through `decide`, which returns
    /// what it holds afterwards and the verdict.
    fn with_bucket(
        &self,
        key: &[u8],
        now: Instant,
        decide: impl FnOnce(f64) -> (f64, Result<(), u64>),
    ) -> Result<(), u64> {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        let key = h.finish();
        let now = now.saturating_duration_since(self.epoch).as_secs_f64();
        let mut g = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = match g.current.get(&key) {
            Some(b) => *b,
            None => {
                let found = g.previous.remove(&key);
                if g.current.len() >= GENERATION {
                    // Keys not seen for a whole generation go; their buckets were full or
                    // nearly so. (A key in debt that long has paid most of it back.)
                    g.previous = std::mem::take(&mut g.current);
                }
                found.unwrap_or(Bucket {
                    tokens: self.burst,
                    at: now,
                })
            }
        };
        let tokens = (bucket.tokens + (now - bucket.at).max(0.0) * self.rate).min(self.burst);
        let (tokens, verdict) = decide(tokens);
        g.current.insert(key, Bucket { tokens, at: now });
        verdict
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        let g = self.buckets.lock().unwrap();
        g.current.len() + g.previous.len()
    }
}

/// Requests (or bytes) a key may send at once: ten seconds' worth, at least one.
pub fn burst(per_minute: u64) -> u64 {
    per_minute.div_ceil(6).max(1)
}

/// What a request may still be handed or sent, in bytes: the byte limit that counts it (by
/// token, else by address) and its key. The middleware puts one in every limited request's
/// extensions; the routes that hand out presigned URLs or take inline packs call
/// [`ByteBudget::take`], or [`ByteBudget::ready`] then [`ByteBudget::charge`], before they
/// answer.
#[derive(Clone, Default)]
pub struct ByteBudget {
    limit: Option<(Arc<RateLimits>, ByteKey)>,
}

#[derive(Clone)]
enum ByteKey {
    /// A token's subject, and what to call it in a message (`token`, `user`).
    Token(String, &'static str),
    Address(Vec<u8>),
}

impl std::fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key may hold a whole token: never printed.
        f.debug_struct("ByteBudget")
            .field("limited", &self.limit.is_some())
            .finish()
    }
}

/// What a request moves, for its [`ByteBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Bytes this server takes or sends itself (inline packs).
    Here(u64),
    /// Bytes it hands out presigned URLs for. On a local-disk store, a request the address
    /// limit counts is not charged for them: its `/_store` transfer is.
    HandedOut(u64),
}

impl ByteBudget {
    /// Charge what the request moves: refused with 429 while the caller's earlier transfers
    /// are not paid back. Nothing (0 bytes) is never refused.
    pub fn take(&self, moved: Moved) -> Result<(), ApiError> {
        self.ready(moved)?;
        self.charge(moved);
        Ok(())
    }

    /// Whether what the request is handed counts against a limit.
    pub fn counts_hand_outs(&self) -> bool {
        self.limiter(Moved::HandedOut(1)).is_some()
    }

    /// The first half of [`ByteBudget::take`]: refused while in debt, charging nothing, for
    /// a route that has more to check before it answers (a quota).
    pub fn ready(&self, moved: Moved) -> Result<(), ApiError> {
        match self.limiter(moved) {
            Some((limiter, what, key)) => limiter
                .ready(key, Instant::now())
                .map_err(|secs| bytes_refused(limiter, what, secs)),
            None => Ok(()),
        }
    }

    /// The second half: charge, into debt if need be.
    pub fn charge(&self, moved: Moved) {
        if let Some((limiter, _, key)) = self.limiter(moved) {
            let (Moved::Here(bytes) | Moved::HandedOut(bytes)) = moved;
            limiter.charge(key, bytes, Instant::now());
        }
    }

    /// The limit that counts `moved`, what to call its key, and the key; `None` when none
    /// does (no limit, nothing moved, or a local transfer charged later).
    fn limiter(&self, moved: Moved) -> Option<(&Limiter, &'static str, &[u8])> {
        let (limits, key) = self.limit.as_ref()?;
        let (Moved::Here(bytes) | Moved::HandedOut(bytes)) = moved;
        if bytes == 0 {
            return None;
        }
        match key {
            ByteKey::Token(subject, what) => {
                Some((limits.token_bytes.as_ref()?, *what, subject.as_bytes()))
            }
            ByteKey::Address(_)
                if matches!(moved, Moved::HandedOut(_)) && limits.local_transfers =>
            {
                None
            }
            ByteKey::Address(ip) => Some((limits.address_bytes.as_ref()?, "address", ip)),
        }
    }
}

fn bytes_refused(limiter: &Limiter, what: &str, secs: u64) -> ApiError {
    ApiError::rate_limited(
        format!(
            "byte rate limit of {} a minute for this {what} reached; retry in {secs} s",
            human_bytes(limiter.per_minute())
        ),
        secs,
        if what == "address" {
            "byte_limited_address"
        } else {
            "byte_limited_token"
        },
    )
}

/// `n` bytes for a message: exact, and in MiB or GiB when that large.
pub(crate) fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    match n {
        n if n >= 1 << 30 => format!("{n} bytes ({:.1} GiB)", n as f64 / (1u64 << 30) as f64),
        n if n >= MIB => format!("{n} bytes ({:.1} MiB)", n as f64 / MIB as f64),
        n => format!("{n} bytes"),
    }
}

/// A `/_store` transfer of `bytes` (the local store's presigned URLs), charged to the
/// mover's address: whoever holds the URL, the bytes go through this server. `Err` is the
/// 429 to answer instead.
pub fn charge_transfer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    peer: Option<IpAddr>,
    bytes: u64,
) -> Result<(), ApiError> {
    let Some(limits) = state.limits.as_deref() else {
        return Ok(());
    };
    let Some(limiter) = limits.address_bytes.as_ref() else {
        return Ok(());
    };
    let key = ip_key(
        limits
            .trust_forwarded_for
            .then(|| forwarded_for(headers))
            .flatten()
            .or(peer),
    );
    limiter
        .take(&key, bytes, Instant::now())
        .map_err(|secs| bytes_refused(limiter, "address", secs))
}

/// The middleware of the API and LFS routes: the request goes on (with its [`ByteBudget`]),
/// or is answered 429.
pub async fn enforce(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(limits) = state.limits.clone() else {
        return next.run(req).await;
    };
    let now = Instant::now();
    let plugin = state.plugin_key.is_some();
    // Whom a token limit would count: asked only when one is on (it verifies the token).
    let subject = (limits.token.is_some() || limits.token_bytes.is_some())
        .then(|| credentials::rate_subject(&state, req.headers()))
        .flatten();
    // Its address, when a limit by address may count it.
    let address = if !plugin && (limits.address.is_some() || limits.address_bytes.is_some()) {
        address_key(&req, limits.trust_forwarded_for)
    } else {
        Vec::new()
    };
    let refused = match (&limits.token, &subject) {
        (Some(limiter), Some(key)) => {
            let what = if plugin { "user" } else { "token" };
            limiter
                .check(key.as_bytes(), now)
                .err()
                .map(|secs| (limiter, what, secs))
        }
        _ if plugin => None,
        _ => limits.address.as_ref().and_then(|limiter| {
            limiter
                .check(&address, now)
                .err()
                .map(|secs| (limiter, "address", secs))
        }),
    };
    if let Some((limiter, what, secs)) = refused {
        let err = ApiError::rate_limited(
            format!(
                "rate limit of {} requests a minute for this {what} reached; retry in {secs} s",
                limiter.per_minute()
            ),
            secs,
            if what == "address" {
                "rate_limited_address"
            } else {
                "rate_limited_token"
            },
        );
        return if req.uri().path().contains("/info/lfs/") {
            err.into_lfs_response()
        } else {
            err.into_response()
        };
    }
    let byte_key = match (&limits.token_bytes, subject) {
        (Some(_), Some(key)) => Some(ByteKey::Token(key, if plugin { "user" } else { "token" })),
        _ if plugin => None,
        _ => limits
            .address_bytes
            .as_ref()
            .map(|_| ByteKey::Address(address)),
    };
    let budget = ByteBudget {
        limit: byte_key.map(|key| (limits.clone(), key)),
    };
    req.extensions_mut().insert(budget);
    next.run(req).await
}

/// The bytes the address limit keys a request by: its client's IP (an IPv6 one cut to its
/// /64, what one host usually has), or empty when the connection's address is unknown.
fn address_key(req: &Request, trust_forwarded_for: bool) -> Vec<u8> {
    let forwarded = trust_forwarded_for
        .then(|| forwarded_for(req.headers()))
        .flatten();
    let ip = forwarded.or_else(|| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    });
    ip_key(ip)
}

/// An IP as a limit's key: v4 whole, v6 cut to its /64; empty when unknown.
fn ip_key(ip: Option<IpAddr>) -> Vec<u8> {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets()[..8].to_vec(),
        None => Vec::new(),
    }
}

/// The last address of `X-Forwarded-For`: the one the proxy in front of this server added
/// (the earlier ones are the client's to write). `None` when it is missing or unreadable.
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    let bare = last.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
    bare.unwrap_or(last)
        .parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_a_burst_and_refills() {
        let l = Limiter::new(60).unwrap();
        assert_eq!(burst(60), 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.check(b"alice", t0), Ok(()));
        }
        assert_eq!(l.check(b"alice", t0), Err(1));
        // Another key is not affected.
        assert_eq!(l.check(b"bob", t0), Ok(()));
        // One request a second comes back (a millisecond more: times are float seconds).
        assert_eq!(l.check(b"alice", t0 + Duration::from_millis(1001)), Ok(()));
        assert_eq!(l.check(b"alice", t0 + Duration::from_millis(1100)), Err(1));
        // Never more than the burst, however long the key was idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(l.check(b"alice", later), Ok(()));
        }
        assert!(l.check(b"alice", later).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_until_one_request_is_back() {
        let l = Limiter::new(6).unwrap();
        assert_eq!(burst(6), 1);
        assert_eq!(burst(1), 1);
        assert_eq!(burst(600), 100);
        let t0 = Instant::now();
        assert_eq!(l.check(b"k", t0), Ok(()));
        assert_eq!(l.check(b"k", t0), Err(10));
        assert_eq!(l.check(b"k", t0 + Duration::from_millis(8500)), Err(2));
        assert_eq!(l.check(b"k", t0 + Duration::from_millis(10_001)), Ok(()));
        // A fast rate still asks for at least a second.
        let fast = Limiter::new(6000).unwrap();
        for _ in 0..1000 {
            assert_eq!(fast.check(b"k", t0), Ok(()));
        }
        assert_eq!(fast.check(b"k", t0), Err(1));
    }

    #[test]
    fn a_byte_bucket_goes_into_debt_once_and_waits_it_out() {
        // 6,000 bytes a minute: 100 a second, a bucket of 1,000.
        let l = Limiter::new(6000).unwrap();
        let t0 = Instant::now();
        // More than the bucket goes once...
        assert_eq!(l.take(b"k", 5000, t0), Ok(()));
        // ...and the debt (4,000 bytes) is paid back at 100 a second.
        assert_eq!(l.take(b"k", 1, t0), Err(40));
        assert_eq!(l.take(b"k", 1, t0 + Duration::from_secs(30)), Err(10));
        assert_eq!(l.take(b"k", 1, t0 + Duration::from_millis(40_001)), Ok(()));
        // Another key is not affected; a zero-byte take never puts one into debt.
        assert_eq!(l.take(b"other", 0, t0), Ok(()));
        assert_eq!(l.take(b"other", 1000, t0), Ok(()));
        assert_eq!(l.take(b"other", 1, t0), Ok(()));
        assert_eq!(l.take(b"other", 1, t0), Err(1));
    }

    #[test]
    fn memory_is_bounded_and_recent_keys_are_kept() {
        let l = Limiter::new(60).unwrap();
        let t0 = Instant::now();
        // A key that used its burst, then a flood of other keys.
        for _ in 0..10 {
            l.check(b"busy", t0).unwrap();
        }
        for i in 0..GENERATION as u32 {
            l.check(&i.to_be_bytes(), t0).unwrap();
        }
        // Still known after one generation turned over: seen in the previous one.
        assert!(l.check(b"busy", t0).is_err());
        for i in 0..(3 * GENERATION as u32) {
            l.check(&(i + GENERATION as u32).to_be_bytes(), t0).unwrap();
            assert!(l.tracked() <= 2 * GENERATION);
        }
        // Evicted after two generations of other keys: it starts full again.
        assert_eq!(l.check(b"busy", t0), Ok(()));
    }

    #[test]
    fn forwarded_for_takes_the_last_address() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(forwarded_for(&h), None);
        h.insert("x-forwarded-for", "10.0.0.1, 203.0.113.7".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("203.0.113.7".parse().unwrap()));
        h.append("x-forwarded-for", "2001:db8::1".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("2001:db8::1".parse().unwrap()));
        h.insert("x-forwarded-for", "198.51.100.2:4711".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("198.51.100.2".parse().unwrap()));
        h.insert("x-forwarded-for", "[2001:db8::2]".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("2001:db8::2".parse().unwrap()));
        h.insert("x-forwarded-for", "[2001:db8::3]:443".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("2001:db8::3".parse().unwrap()));
        h.insert("x-forwarded-for", "1.2.3.4, garbage".parse().unwrap());
        assert_eq!(forwarded_for(&h), None);
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64() {
        let req = |ip: &str, xff: Option<&str>| {
            let mut r = Request::new(axum::body::Body::empty());
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 1)));
            if let Some(x) = xff {
                r.headers_mut()
                    .insert("x-forwarded-for", x.parse().unwrap());
            }
            r
        };
        let a = address_key(&req("2001:db8:1:2::1", None), false);
        let b = address_key(&req("2001:db8:1:2:ffff::9", None), false);
        let c = address_key(&req("2001:db8:1:3::1", None), false);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            address_key(&req("::ffff:192.0.2.1", None), false),
            vec![192, 0, 2, 1]
        );
        // The header counts only when the operator says a proxy sets it.
        let proxied = req("127.0.0.1", Some("192.0.2.9"));
        assert_eq!(address_key(&proxied, false), vec![127, 0, 0, 1]);
        assert_eq!(address_key(&proxied, true), vec![192, 0, 2, 9]);
        assert_eq!(
            address_key(&req("127.0.0.1", Some("nonsense")), true),
            vec![127, 0, 0, 1]
        );
    }
}
