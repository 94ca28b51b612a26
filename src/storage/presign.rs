//! Presigned URLs for the local-disk store, in the spirit of S3's: a URL names one key, one
//! method, an expiry and (for `PUT`) the exact size, and carries an HMAC over all four.
//!
//! Format: `{public_base_url}/_store/{key, each segment percent-encoded}?method=GET|PUT
//! &expires=<unix seconds>[&size=<bytes, PUT only>]&sig=<hex HMAC-SHA256>`.
//!
//! Owns signing and checking only; the HTTP handlers that honour these URLs live in
//! `server::store`, and the store's secret comes from whoever builds [`LocalDisk`](crate::storage::LocalDisk).

use super::PresignMethod;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

type HmacSha256 = Hmac<Sha256>;

/// Path segment under which the server answers presigned URLs.
pub const STORE_PATH: &str = "_store";

/// Why a presigned request is refused. All of them mean 403: the URL grants nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("presigned url lacks {0}")]
    Missing(&'static str),
    #[error("presigned url was signed for another method")]
    WrongMethod,
    #[error("presigned url has expired")]
    Expired,
    #[error("presigned url signature does not verify")]
    BadSignature,
}

/// The query string of a presigned URL, as the server receives it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    pub method: Option<String>,
    pub expires: Option<u64>,
    pub size: Option<u64>,
    pub sig: Option<String>,
}

/// Signs and checks URLs for one public base URL with one secret.
#[derive(Clone)]
pub struct Presigner {
    base: Url,
    secret: Vec<u8>,
}

// The secret must never reach a log.
impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Presigner {
    /// `public_base_url` is where clients reach the server, e.g. `http://127.0.0.1:8080`
    /// (a path prefix is kept).
    pub fn new(public_base_url: &str, secret: &[u8]) -> Result<Presigner, url::ParseError> {
        let mut base = Url::parse(public_base_url)?;
        base.set_query(None);
        base.set_fragment(None);
        Ok(Presigner {
            base,
            secret: secret.to_vec(),
        })
    }

    /// The URL granting `method` on `key` until `expires_at`; `size` is required for `PUT`
    /// and ignored for `GET`.
    pub fn sign(
        &self,
        method: PresignMethod,
        key: &str,
        expires_at: u64,
        size: Option<u64>,
    ) -> String {
        let size = if method.is_put() { size } else { None };
        let sig = hex::encode(self.mac(method, key, expires_at, size));
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .expect("an http(s) base url has a path");
            segments.pop_if_empty().push(STORE_PATH);
            for segment in key.split('/') {
                segments.push(segment);
            }
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("method", method.as_str());
            query.append_pair("expires", &expires_at.to_string());
            if let Some(size) = size {
                query.append_pair("size", &size.to_string());
            }
            query.append_pair("sig", &sig);
        }
        url.into()
    }

    /// Check that `query` grants `method` on `key` at `now`; returns the signed size for a
    /// `PUT`. The comparison is constant-time.
    pub fn verify(
        &self,
        method: PresignMethod,
        key: &str,
        query: &Query,
        now: u64,
    ) -> Result<Option<u64>, Error> {
        let signed_method = query.method.as_deref().ok_or(Error::Missing("method"))?;
        let expires = query.expires.ok_or(Error::Missing("expires"))?;
        let sig = query.sig.as_deref().ok_or(Error::Missing("sig"))?;
        if signed_method != method.as_str() {
            return Err(Error::WrongMethod);
        }
        let size = if method.is_put() {
            Some(query.size.ok_or(Error::Missing("size"))?)
        } else {
            None
        };
        let sig = hex::decode(sig).map_err(|_| Error::BadSignature)?;
        let mac = self.mac_state(method, key, expires, size);
        // Checked before expiry so that a forged URL never learns whether its time was right.
        mac.verify_slice(&sig).map_err(|_| Error::BadSignature)?;
        if expires <= now {
            return Err(Error::Expired);
        }
        Ok(size)
    }

    fn mac(&self, method: PresignMethod, key: &str, expires: u64, size: Option<u64>) -> Vec<u8> {
        self.mac_state(method, key, expires, size)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// The signed string is line-separated, and no field can contain a newline (keys refuse
    /// control characters), so no two requests share a signature.
    fn mac_state(
        &self,
        method: PresignMethod,
        key: &str,
        expires: u64,
        size: Option<u64>,
    ) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        let size = size.map(|s| s.to_string()).unwrap_or_default();
        mac.update(
            format!(
                "hypha-git-store-v1\n{}\n{key}\n{expires}\n{size}",
                method.as_str()
            )
            .as_bytes(),
        );
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(url: &str) -> (String, Query) {
        let url = Url::parse(url).unwrap();
        let mut q = Query::default();
        for (k, v) in url.query_pairs() {
            match &*k {
                "method" => q.method = Some(v.into_owned()),
                "expires" => q.expires = Some(v.parse().unwrap()),
                "size" => q.size = Some(v.parse().unwrap()),
                "sig" => q.sig = Some(v.into_owned()),
                _ => panic!("unexpected {k}"),
            }
        }
        (url.path().to_owned(), q)
    }

    #[test]
    fn round_trip_and_tampering() {
        let p = Presigner::new("http://127.0.0.1:9/base/", b"s").unwrap();
        let url = p.sign(PresignMethod::Put, "ws/a b/x", 100, Some(7));
        let (path, q) = query_of(&url);
        assert_eq!(path, "/base/_store/ws/a%20b/x");
        assert_eq!(
            p.verify(PresignMethod::Put, "ws/a b/x", &q, 99),
            Ok(Some(7))
        );
        assert_eq!(
            p.verify(PresignMethod::Put, "ws/a b/x", &q, 100),
            Err(Error::Expired)
        );
        assert_eq!(
            p.verify(PresignMethod::Get, "ws/a b/x", &q, 99),
            Err(Error::WrongMethod)
        );
        assert_eq!(
            p.verify(PresignMethod::Put, "ws/a b/y", &q, 99),
            Err(Error::BadSignature)
        );
        let bigger = Query {
            size: Some(8),
            ..q.clone()
        };
        assert_eq!(
            p.verify(PresignMethod::Put, "ws/a b/x", &bigger, 99),
            Err(Error::BadSignature)
        );
        let later = Query {
            expires: Some(1000),
            ..q.clone()
        };
        assert_eq!(
            p.verify(PresignMethod::Put, "ws/a b/x", &later, 99),
            Err(Error::BadSignature)
        );
        let other = Presigner::new("http://127.0.0.1:9/base/", b"t").unwrap();
        assert_eq!(
            other.verify(PresignMethod::Put, "ws/a b/x", &q, 99),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn get_urls_carry_no_size() {
        let p = Presigner::new("http://h", b"s").unwrap();
        let url = p.sign(PresignMethod::Get, "k", 100, Some(5));
        let (path, q) = query_of(&url);
        assert_eq!(path, "/_store/k");
        assert_eq!(q.size, None);
        assert_eq!(p.verify(PresignMethod::Get, "k", &q, 1), Ok(None));
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Presigner::new("http://h", b"topsecret").unwrap();
        assert!(!format!("{p:?}").contains("topsecret"));
    }
}
