//! Hypha-compatible HS256 JSON Web Tokens: minting and verification (docs/design.md §4, "Tokens").
//!
//! Owns the token format only: the claims Hypha puts in its tokens (`iss`, `aud`, `sub`,
//! `iat`, `exp`, `scope`) and the `ws:<workspace>#<r|rw|a>` grants in `scope`. It does not
//! read HTTP headers (that is `server`) nor decide what a route needs. Encoding, the
//! signature (aws-lc's constant-time HMAC), issuer and audience are `jsonwebtoken`'s; the
//! expiry is checked here against the caller's clock, and the scope grammar is Hypha's, so
//! it is parsed here. [`unverified_expiry`] reads a token's `exp` without any check, for the
//! client to say when a refused token expired; it never decides access.
//!
//! No error message or `Debug` output carries the token or the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far in the future a token's `nbf` or `iat` may be: the issuer's clock may run a little
/// ahead of ours. (`exp` gets none: a token is refused from its expiry second on.)
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Issuer Hypha writes into its tokens.
pub const DEFAULT_ISSUER: &str = "https://amun.ai/";
/// Audience Hypha writes into its tokens.
pub const DEFAULT_AUDIENCE: &str = "https://amun-ai.eu.auth0.com/api/v2/";

/// What a token may do in one workspace. Ordered: a higher permission implies the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    ReadWrite,
    Admin,
}

impl Permission {
    /// The code Hypha uses in a scope entry.
    pub fn as_code(self) -> &'static str {
        match self {
            Permission::Read => "r",
            Permission::ReadWrite => "rw",
            Permission::Admin => "a",
        }
    }

    pub fn can_write(self) -> bool {
        self >= Permission::ReadWrite
    }
}

impl std::str::FromStr for Permission {
    type Err = Error;

    /// Hypha's codes, including its `+` variants: `r+` adds files but cannot commit, so it
    /// reads here; `rw+` and `*` can commit.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "r" | "r+" | "read" => Ok(Permission::Read),
            "rw" | "rw+" | "read_write" => Ok(Permission::ReadWrite),
            "a" | "*" | "admin" => Ok(Permission::Admin),
            _ => Err(Error::UnknownPermission),
        }
    }
}

/// Why a token was refused. Never carries the token or any part of it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("malformed token")]
    Malformed,
    #[error("token uses an unsupported signing algorithm (only HS256 is accepted)")]
    UnsupportedAlgorithm,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token has no expiry")]
    NoExpiry,
    #[error("token is not valid yet (its nbf is in the future; check the clocks)")]
    NotYetValid,
    #[error("token was issued in the future (its iat is ahead of this server's clock; check the clocks)")]
    IssuedInFuture,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token is meant for another audience")]
    WrongAudience,
    #[error("unknown permission code in scope")]
    UnknownPermission,
}

/// Issuer and audience a token must name. Both configurable, as in Hypha.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub issuer: String,
    pub audience: String,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
        }
    }
}

/// Who a verified token speaks for and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    /// `(workspace or "*", permission)` in token order.
    pub grants: Vec<(String, Permission)>,
}

impl Identity {
    /// The strongest permission the token grants on `workspace`, counting `ws:*` grants.
    pub fn permission_for(&self, workspace: &str) -> Option<Permission> {
        self.grants
            .iter()
            .filter(|(ws, _)| ws == workspace || ws == "*")
            .map(|(_, p)| *p)
            .max()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<f64>,
    #[serde(default)]
    scope: Option<OneOrMany>,
}

/// Hypha writes `scope` as one space-separated string; other issuers use arrays. `aud` may
/// be a string or an array per RFC 7519.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn entries(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => s.split_whitespace().collect(),
            OneOrMany::Many(v) => v.iter().flat_map(|s| s.split_whitespace()).collect(),
        }
    }
}

/// A token for `subject` with `grants`, valid for `ttl` from now, with Hypha's issuer and
/// audience.
pub fn mint(
    secret: &[u8],
    subject: &str,
    grants: &[(String, Permission)],
    ttl: Duration,
) -> String {
    let now = unix_now();
    mint_at(
        secret,
        subject,
        grants,
        now,
        now + ttl.as_secs(),
        &Validation::default(),
    )
}

/// [`mint`] with explicit times and issuer/audience (tests, expired tokens).
pub fn mint_at(
    secret: &[u8],
    subject: &str,
    grants: &[(String, Permission)],
    issued_at: u64,
    expires_at: u64,
    validation: &Validation,
) -> String {
    let scope = grants
        .iter()
        .map(|(ws, p)| format!("ws:{ws}#{}", p.as_code()))
        .collect::<Vec<_>>()
        .join(" ");
    let claims = Claims {
        iss: Some(validation.issuer.clone()),
        aud: Some(OneOrMany::One(validation.audience.clone())),
        sub: Some(subject.to_owned()),
        // JWT times are whole seconds; f64 holds every realistic value exactly.
        iat: Some(issued_at as f64),
        exp: Some(expires_at as f64),
        nbf: None,
        scope: Some(OneOrMany::One(scope)),
    };
    // An empty key is refused by jsonwebtoken: a token signed with it would prove nothing.
    // No caller has one: the server makes up a random secret when HYPHA_JWT_SECRET is unset,
    // and `git hypha token` refuses an empty one.
    let key = EncodingKey::from_secret(secret).expect("the signing secret is not empty");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .expect("HS256 with an HMAC key and plain claims always encodes")
}

/// Verify `token` against `secret` with Hypha's issuer and audience.
pub fn verify(secret: &[u8], token: &str, now_unix: u64) -> Result<Identity, Error> {
    verify_with(secret, token, now_unix, &Validation::default())
}

/// Verify algorithm, signature, expiry, issuer and audience, then read the grants.
pub fn verify_with(
    secret: &[u8],
    token: &str,
    now_unix: u64,
    validation: &Validation,
) -> Result<Identity, Error> {
    let token = token.trim();
    // Read before the signature, only to name the refusal: `none` and asymmetric algorithms
    // are never tried with a shared secret (jsonwebtoken accepts only the listed HS256).
    let alg = header_alg(token)?;
    if alg != "HS256" {
        return Err(Error::UnsupportedAlgorithm);
    }
    let key = DecodingKey::from_secret(secret).map_err(|_| Error::BadSignature)?;
    let mut rules = jsonwebtoken::Validation::new(Algorithm::HS256);
    // The expiry is checked below against `now_unix` (the caller's clock, and a token without
    // one is refused by name); jsonwebtoken would read the system clock with a leeway.
    rules.validate_exp = false;
    rules.required_spec_claims = ["iss", "aud"].map(str::to_owned).into();
    rules.set_issuer(&[&validation.issuer]);
    rules.set_audience(&[&validation.audience]);
    let claims: Claims = jsonwebtoken::decode(token, &key, &rules)
        .map_err(|e| refusal(e.kind()))?
        .claims;
    let exp = claims.exp.ok_or(Error::NoExpiry)?;
    if exp <= now_unix as f64 {
        return Err(Error::Expired);
    }
    // `nbf` and `iat` bound the token's life from below, as `exp` does from above. Both
    // are optional (Hypha writes `iat`, not `nbf`); both get [`CLOCK_SKEW`] so that an
    // issuer whose clock runs a little ahead does not lock its fresh tokens out.
    let latest_start = now_unix as f64 + CLOCK_SKEW.as_secs_f64();
    if claims.nbf.is_some_and(|nbf| nbf > latest_start) {
        return Err(Error::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| iat > latest_start) {
        return Err(Error::IssuedInFuture);
    }
    let grants = match &claims.scope {
        Some(scope) => parse_scope(&scope.entries())?,
        None => Vec::new(),
    };
    Ok(Identity {
        subject: claims.sub.unwrap_or_default(),
        grants,
    })
}

/// Keep the `ws:<workspace>#<code>` entries; Hypha also writes other kinds (`wid:`, `cid:`)
/// that say nothing about workspace permissions. A code this server does not know grants
/// nothing rather than refusing the token: Hypha may grow codes (`c`, `rd+`) that must not
/// lock out a token's other grants.
fn parse_scope(entries: &[&str]) -> Result<Vec<(String, Permission)>, Error> {
    let mut grants = Vec::new();
    for entry in entries {
        let Some(rest) = entry.strip_prefix("ws:") else {
            continue;
        };
        let (ws, code) = match rest.rsplit_once('#') {
            Some((ws, code)) => (ws, code),
            // Hypha reads a bare `ws:<name>` as read access.
            None => (rest, "r"),
        };
        if ws.is_empty() {
            return Err(Error::Malformed);
        }
        if let Ok(permission) = code.parse() {
            grants.push((ws.to_owned(), permission));
        }
    }
    Ok(grants)
}

/// The `alg` a three-part token's header names.
fn header_alg(token: &str) -> Result<String, Error> {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Error::Malformed)?;
    let header: AlgOnly = serde_json::from_slice(&bytes).map_err(|_| Error::Malformed)?;
    Ok(header.alg)
}

/// The `exp` claim of `token`, read WITHOUT verifying anything: only to tell a user that the
/// token they hold has expired (and when), never to decide access. `None` when the token is
/// not a three-part JWT or has no numeric `exp`.
pub fn unverified_expiry(token: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct ExpOnly {
        exp: Option<f64>,
    }
    let exp = jsonwebtoken::dangerous::insecure_decode_claims::<ExpOnly>(token.trim())
        .ok()?
        .exp?;
    (exp.is_finite() && exp >= 0.0).then_some(exp as u64)
}

/// `secs` since the epoch as `2026-12-05 10:00:00 UTC`, for messages about token expiry.
pub fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`,
/// restricted to dates after the epoch: token times are never before it).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// jsonwebtoken's refusal in this module's words (which never carry the token).
fn refusal(kind: &ErrorKind) -> Error {
    match kind {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => Error::UnsupportedAlgorithm,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "iss" => Error::WrongIssuer,
                "aud" => Error::WrongAudience,
                _ => Error::Malformed,
            }
        }
        _ => Error::Malformed,
    }
}

/// Seconds since the epoch; a clock before 1970 reads as 0, which only makes tokens expire.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    type HmacSha256 = Hmac<Sha256>;

    const SECRET: &[u8] = b"test-secret";

    fn sign_raw(header: &str, claims: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn round_trip() {
        let grants = vec![
            ("ws-a".to_owned(), Permission::Read),
            ("ws-b".to_owned(), Permission::ReadWrite),
        ];
        let token = mint(SECRET, "alice", &grants, Duration::from_secs(60));
        let id = verify(SECRET, &token, unix_now()).unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.grants, grants);
        assert_eq!(id.permission_for("ws-a"), Some(Permission::Read));
        assert_eq!(id.permission_for("ws-b"), Some(Permission::ReadWrite));
        assert_eq!(id.permission_for("ws-c"), None);
    }

    #[test]
    fn admin_everywhere() {
        let token = mint(
            SECRET,
            "root",
            &[("*".to_owned(), Permission::Admin)],
            Duration::from_secs(60),
        );
        let id = verify(SECRET, &token, unix_now()).unwrap();
        assert_eq!(id.permission_for("anything"), Some(Permission::Admin));
    }

    #[test]
    fn tampered_signature_and_payload() {
        let token = mint(SECRET, "alice", &[], Duration::from_secs(60));
        assert_eq!(
            verify(b"other-secret", &token, unix_now()),
            Err(Error::BadSignature)
        );
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let mut sig = sig.to_owned();
        // The last base64url character of a 32-byte MAC carries 4 bits: 'A' and 'Q' differ in them
        // and both decode strictly, so the change reaches the signature check.
        let last = if sig.ends_with('A') { "Q" } else { "A" };
        sig.replace_range(sig.len() - 1.., last);
        assert_eq!(
            verify(SECRET, &format!("{rest}.{sig}"), unix_now()),
            Err(Error::BadSignature)
        );
        // A payload granting more, with the original signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = mint(
            b"attacker",
            "alice",
            &[("*".to_owned(), Permission::Admin)],
            Duration::from_secs(60),
        );
        parts[1] = forged.split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            verify(SECRET, &parts.join("."), unix_now()),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn expired() {
        let token = mint_at(SECRET, "a", &[], 1000, 2000, &Validation::default());
        assert!(verify(SECRET, &token, 1999).is_ok());
        assert_eq!(verify(SECRET, &token, 2000), Err(Error::Expired));
        let no_exp = sign_raw(
            r#"{"alg":"HS256"}"#,
            r#"{"iss":"https://amun.ai/","aud":"https://amun-ai.eu.auth0.com/api/v2/"}"#,
            SECRET,
        );
        assert_eq!(verify(SECRET, &no_exp, 0), Err(Error::NoExpiry));
    }

    #[test]
    fn not_before_and_issued_at_in_the_future() {
        let signed = |claims: &str| {
            let claims = format!(
                r#"{{"iss":"https://amun.ai/","aud":"https://amun-ai.eu.auth0.com/api/v2/","exp":9999999999,{claims}}}"#
            );
            sign_raw(r#"{"alg":"HS256"}"#, &claims, SECRET)
        };
        let now = 1_000_000;
        let skew = CLOCK_SKEW.as_secs();
        // nbf: refused while in the future beyond the skew, accepted from then on.
        let token = signed(&format!(r#""nbf":{}"#, now + 3600));
        assert_eq!(verify(SECRET, &token, now), Err(Error::NotYetValid));
        let message = verify(SECRET, &token, now).unwrap_err().to_string();
        assert!(message.contains("not valid yet"), "{message}");
        assert!(verify(SECRET, &token, now + 3600).is_ok());
        let token = signed(&format!(r#""nbf":{}"#, now + skew));
        assert!(verify(SECRET, &token, now).is_ok(), "within the skew");
        let token = signed(&format!(r#""nbf":{}"#, now + skew + 1));
        assert_eq!(verify(SECRET, &token, now), Err(Error::NotYetValid));
        // iat: a little ahead is clock skew, far ahead is refused.
        let token = mint_at(
            SECRET,
            "a",
            &[],
            now + skew,
            now + 7200,
            &Validation::default(),
        );
        assert!(verify(SECRET, &token, now).is_ok(), "within the skew");
        let token = mint_at(
            SECRET,
            "a",
            &[],
            now + 600,
            now + 7200,
            &Validation::default(),
        );
        assert_eq!(verify(SECRET, &token, now), Err(Error::IssuedInFuture));
        assert!(verify(SECRET, &token, now + 600).is_ok());
        // Not numbers: malformed, never ignored.
        let token = signed(r#""nbf":"later""#);
        assert_eq!(verify(SECRET, &token, now), Err(Error::Malformed));
    }

    #[test]
    fn wrong_audience_and_issuer() {
        let other = Validation {
            issuer: DEFAULT_ISSUER.into(),
            audience: "https://elsewhere/".into(),
        };
        let token = mint_at(SECRET, "a", &[], 0, u64::MAX / 2, &other);
        assert_eq!(verify(SECRET, &token, 10), Err(Error::WrongAudience));
        assert!(verify_with(SECRET, &token, 10, &other).is_ok());
        let other = Validation {
            issuer: "https://evil/".into(),
            audience: DEFAULT_AUDIENCE.into(),
        };
        let token = mint_at(SECRET, "a", &[], 0, u64::MAX / 2, &other);
        assert_eq!(verify(SECRET, &token, 10), Err(Error::WrongIssuer));
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        let none = sign_raw(r#"{"alg":"none"}"#, r#"{"exp":9999999999}"#, SECRET);
        assert_eq!(verify(SECRET, &none, 0), Err(Error::UnsupportedAlgorithm));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(verify(SECRET, bad, 0), Err(Error::Malformed), "{bad}");
        }
    }

    #[test]
    fn scope_as_string_or_array() {
        let claims = r#"{"iss":"https://amun.ai/","aud":["x","https://amun-ai.eu.auth0.com/api/v2/"],
            "sub":"u","exp":9999999999,
            "scope":"ws:ws-user-u#a ws:public#r wid:ws-user-u/client cid:abc ws:team#rw+"}"#;
        let id = verify(SECRET, &sign_raw(r#"{"alg":"HS256"}"#, claims, SECRET), 0).unwrap();
        assert_eq!(id.permission_for("ws-user-u"), Some(Permission::Admin));
        assert_eq!(id.permission_for("public"), Some(Permission::Read));
        assert_eq!(id.permission_for("team"), Some(Permission::ReadWrite));
        assert_eq!(id.permission_for("ws-user-u/client"), None);

        let claims = r#"{"iss":"https://amun.ai/","aud":"https://amun-ai.eu.auth0.com/api/v2/",
            "exp":9999999999,"scope":["ws:a#r","ws:a#rw"]}"#;
        let id = verify(SECRET, &sign_raw(r#"{"alg":"HS256"}"#, claims, SECRET), 0).unwrap();
        assert_eq!(id.permission_for("a"), Some(Permission::ReadWrite));

        let claims = r#"{"iss":"https://amun.ai/","aud":"https://amun-ai.eu.auth0.com/api/v2/",
            "exp":9999999999,"scope":"ws:a#zz ws:b#r"}"#;
        let id = verify(SECRET, &sign_raw(r#"{"alg":"HS256"}"#, claims, SECRET), 0).unwrap();
        assert_eq!(id.permission_for("a"), None);
        assert_eq!(id.permission_for("b"), Some(Permission::Read));
    }

    #[test]
    fn permission_codes() {
        for (code, p) in [
            ("r", Permission::Read),
            ("read", Permission::Read),
            ("rw", Permission::ReadWrite),
            ("read_write", Permission::ReadWrite),
            ("a", Permission::Admin),
            ("admin", Permission::Admin),
        ] {
            assert_eq!(code.parse::<Permission>(), Ok(p));
        }
        assert!("x".parse::<Permission>().is_err());
        assert!(Permission::ReadWrite.can_write() && !Permission::Read.can_write());
    }

    #[test]
    fn expiry_read_without_verifying() {
        let token = mint_at(
            SECRET,
            "a",
            &[],
            1000,
            1_796_464_800,
            &Validation::default(),
        );
        assert_eq!(unverified_expiry(&token), Some(1_796_464_800));
        // Any signature: the claim is only read, for a message.
        let foreign = mint_at(b"other", "a", &[], 0, 2000, &Validation::default());
        assert_eq!(unverified_expiry(&foreign), Some(2000));
        let no_exp = sign_raw(r#"{"alg":"HS256"}"#, r#"{"sub":"x"}"#, SECRET);
        assert_eq!(unverified_expiry(&no_exp), None);
        let text_exp = sign_raw(r#"{"alg":"HS256"}"#, r#"{"exp":"soon"}"#, SECRET);
        assert_eq!(unverified_expiry(&text_exp), None);
        for bad in ["", "not-a-jwt", "a.b", "a.!!.c", "a.b.c.d"] {
            assert_eq!(unverified_expiry(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_796_464_800), "2026-12-05 10:00:00 UTC");
        // A leap day, and the last second of a leap year.
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_735_689_599), "2024-12-31 23:59:59 UTC");
    }

    #[test]
    fn errors_never_echo_the_token() {
        let token = mint(SECRET, "alice", &[], Duration::from_secs(60));
        let err = verify(b"x", &token, 0).unwrap_err();
        let text = format!("{err} {err:?}");
        for part in token.split('.') {
            assert!(!text.contains(part));
        }
    }
}
