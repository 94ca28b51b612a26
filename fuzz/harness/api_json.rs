//! `api_json`: `serde_json::from_slice` into the remote API v1 and Git LFS batch wire types,
//! what the server parses from clients and the helper parses from servers.
//!
//! Input: a selector byte (which type), then the JSON body. Checks: never a panic; a value
//! that parses serializes and parses back to an equal value (the types that have `PartialEq`),
//! or to the same JSON (the others); the name checks the server applies to what it parsed
//! (pack names, ref names, object ids) never panic on it.

use hypha_git::api::{self, lfs};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 26 {
        0 => {
            eq::<api::RefsRequest>(body);
        }
        1 => {
            if let Some(r) = eq::<api::RefsResponse>(body) {
                for (name, id) in &r.refs {
                    names(name, id);
                }
                if let Some(path) = &r.lfs_endpoint {
                    lfs_endpoint(path);
                }
            }
        }
        2 => eq_named::<api::PacksRequest>(body, |r| r.known.clone()),
        3 => eq_named::<api::PacksResponse>(body, |r| {
            // Packs a listing carries: what the helper decodes before it indexes them.
            let max = hypha_git::fetch_packs::INLINE_MAX;
            if hypha_git::fetch_packs::inline_within(&r.packs, max) {
                for p in &r.packs {
                    if let Some(bytes) = hypha_git::fetch_packs::inline_bytes(p, max) {
                        assert_eq!(bytes.len() as u64, p.pack_size);
                    }
                }
            }
            r.packs.iter().map(|p| p.name.clone()).collect()
        }),
        4 => eq_named::<api::UploadsRequest>(body, |r| {
            r.packs.iter().map(|p| p.name.clone()).collect()
        }),
        5 => {
            if let Some(r) = eq::<api::UploadsResponse>(body) {
                for mp in r.uploads.iter().filter_map(|u| u.multipart.as_ref()) {
                    resumed_parts(mp);
                }
            }
        }
        6 => {
            if let Some(r) = eq::<api::UpdateRequest>(body) {
                for u in &r.updates {
                    names(&u.name, u.old.as_deref().unwrap_or(""));
                    names(&u.name, u.new.as_deref().unwrap_or(""));
                }
                for p in &r.packs {
                    let _ = api::is_valid_pack_name(p);
                }
                for p in &r.inline {
                    use base64::Engine as _;
                    let _ = api::is_valid_pack_name(&p.name);
                    let _ = base64::engine::general_purpose::STANDARD.decode(&p.pack);
                }
            }
        }
        7 => {
            eq::<api::UpdateResponse>(body);
        }
        8 => {
            eq::<api::InfoResponse>(body);
        }
        9 => {
            if let Some(h) = eq::<api::HeadRequest>(body) {
                names(&h.symref, "");
            }
        }
        10 => {
            eq::<api::CreateRequest>(body);
        }
        11 => eq_named::<api::CompactRequest>(body, |r| {
            let mut v = r.retire.clone();
            v.push(r.pack.clone());
            v
        }),
        12 => {
            eq::<api::CompactResponse>(body);
        }
        13 => {
            eq::<api::ErrorBody>(body);
        }
        14 => eq_named::<api::CompleteRequest>(body, |r| vec![r.name.clone()]),
        15 => eq_named::<api::AbortRequest>(body, |r| vec![r.name.clone()]),
        16 => {
            eq::<api::MultipartDone>(body);
        }
        17 => eq_named::<api::FixThinRequest>(body, |r| vec![r.name.clone()]),
        18 => {
            eq::<api::FixThinResponse>(body);
        }
        19 => {
            if let Some(r) = eq::<api::HooksRequest>(body) {
                // The secret never reaches Debug output.
                if let api::HooksRequest::Add { url, secret } = &r {
                    let without = api::HooksRequest::Add {
                        url: url.clone(),
                        secret: String::new(),
                    };
                    if secret.len() >= 8 && !format!("{without:?}").contains(secret.as_str()) {
                        assert!(
                            !format!("{r:?}").contains(secret.as_str()),
                            "secret in Debug"
                        );
                    }
                }
            }
        }
        20 => {
            eq::<api::HooksResponse>(body);
        }
        21 => {
            if let Some(r) = same_json::<lfs::BatchRequest>(body) {
                for o in &r.objects {
                    let _ = hypha_git::names::is_lfs_oid(&o.oid);
                }
            }
        }
        22 => {
            same_json::<lfs::BatchResponse>(body);
        }
        23 => {
            if let Some(v) = eq::<lfs::ObjectSpec>(body) {
                let _ = hypha_git::names::is_lfs_oid(&v.oid);
            }
        }
        24 => {
            same_json::<lfs::ErrorBody>(body);
        }
        _ => {
            eq::<api::Upload>(body);
        }
    }
}

/// Parse; if it parses, it must round-trip to an equal value.
/// A resumed upload's part numbers (issue 22), for the totals a client could compute: when
/// accepted, exactly one number per presigned part, ascending, in range, none stored.
fn resumed_parts(mp: &api::MultipartUpload) {
    let counted = mp.stored.len() as u64 + mp.parts.len() as u64;
    for total in [counted, counted.saturating_sub(1), counted + 1, u64::MAX] {
        let Some(numbers) = mp.part_numbers(total) else {
            continue;
        };
        assert_eq!(numbers.len(), mp.parts.len());
        assert!(numbers.windows(2).all(|w| w[0] < w[1]));
        assert!(numbers
            .iter()
            .all(|n| *n >= 1 && u64::from(*n) <= total && !mp.stored.contains(n)));
    }
}

fn eq<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_vec(&v).expect("a parsed value serializes");
    let back: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "serialized value does not parse back: {e}: {}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(back, v, "JSON round trip changed the value");
    Some(v)
}

fn eq_named<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    body: &[u8],
    packs: impl Fn(&T) -> Vec<String>,
) {
    if let Some(v) = eq::<T>(body) {
        for name in packs(&v) {
            let _ = api::is_valid_pack_name(&name);
        }
    }
}

/// For types without `PartialEq`: the JSON of the round-tripped value is the same.
fn same_json<T: DeserializeOwned + Serialize>(body: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_value(&v).expect("a parsed value serializes");
    let back: T = serde_json::from_value(text.clone())
        .unwrap_or_else(|e| panic!("serialized value does not parse back: {e}: {text}"));
    assert_eq!(serde_json::to_value(&back).expect("serializes"), text);
    Some(v)
}

fn names(name: &str, id: &str) {
    let _ = api::refname::check(name);
    let _ = api::is_object_id(id);
}

/// The LFS endpoint a server names in `refs`: the helper records it for git-lfs only if it
/// stays on the remote's server, in the remote's workspace; anything else is the default.
fn lfs_endpoint(path: &str) {
    let remote = hypha_git::config::resolve(
        "hypha::http://127.0.0.1:9/base/ws/repo",
        &Default::default(),
        None,
    )
    .expect("a valid remote");
    let default = hypha_git::helper::lfs::endpoint(&remote);
    let got = hypha_git::helper::lfs::endpoint_for(&remote, Some(path));
    if got != default {
        let url = url::Url::parse(&got).expect("an endpoint the helper records parses");
        assert_eq!(url.host_str(), Some("127.0.0.1"), "{got}");
        assert_eq!(url.port(), Some(9), "{got}");
        assert!(url.path().starts_with("/base/ws/git/"), "{got}");
        assert!(url.query().is_none() && url.fragment().is_none(), "{got}");
        assert_eq!(
            url.as_str(),
            got,
            "no normalisation: no dot segments, no escapes"
        );
    }
}
