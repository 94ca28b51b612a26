//! `names`: the name rules both sides apply to names from the other side (`names::refname::
//! check`, `is_valid_pack_name`, `is_object_id`, `is_lfs_oid`, `is_valid_repo_segment`,
//! `repository(workspace, alias)`, `default_branch_ref`) and the `hypha::` URL forms
//! (`config::resolve(address, env, configured)`).
//!
//! Input: a selector byte, then text (split at NUL into address, HYPHA_SERVER_URL and the
//! configured server for `resolve`). Checks: never a panic; an accepted ref name is one git
//! accepts too (`gix::validate::reference::name`) and is safe as a storage key (no `..`, no
//! empty, dot or dash component, no control character, at most 512 bytes); accepted pack
//! names, ids and segments have their exact shapes; `repository` accepts only valid segments
//! and returns an alias that is one (the given alias less at most one `.git`);
//! `default_branch_ref` gives an accepted ref under `refs/heads/`; refusals are one line; a
//! resolved remote has valid segments, an
//! http(s) server ending in `/` without credentials, API URLs that stay below the server, and
//! its `url()` resolves back to the same remote.

use hypha_git::api::{self, refname};
use hypha_git::config::{self, Remote};
use hypha_git::names;
use std::collections::HashMap;

pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // The repository a `workspace/alias` names and a new repository's default branch, on the
    // input split as `resolve` takes it (the alias is the second part, else the first).
    {
        let parts: Vec<&str> = text.splitn(3, '\0').collect();
        let alias = parts.get(1).copied().unwrap_or(parts[0]);
        repository(parts[0], alias);
        for part in &parts {
            default_branch(part);
        }
    }
    match sel % 4 {
        0 | 1 => {
            ref_name(&text);
            ids(&text);
            // As the server sees it after `refs/heads/` from a short branch name.
            ref_name(&format!("refs/heads/{text}"));
        }
        _ => {
            let parts: Vec<&str> = text.splitn(3, '\0').collect();
            let address = parts[0];
            let mut env = HashMap::new();
            if let Some(server) = parts.get(1).filter(|s| !s.is_empty()) {
                env.insert("HYPHA_SERVER_URL".to_string(), server.to_string());
            }
            let configured = parts.get(2).copied();
            if let Ok(remote) = config::resolve(address, &env, configured) {
                check_remote(&remote);
            }
            if sel % 4 == 3 {
                ids(address);
            }
        }
    }
}

fn ref_name(name: &str) {
    if refname::check(name).is_err() {
        return;
    }
    assert!(refname::is_valid(name));
    assert!(name.len() <= refname::MAX_REF_NAME_LEN);
    assert!(name.starts_with("refs/"));
    assert!(!name.contains(".."), "{name:?}");
    assert!(!name.chars().any(char::is_control), "{name:?}");
    assert!(!name.contains('\\'), "{name:?}");
    for component in name.split('/') {
        assert!(!component.is_empty(), "{name:?}");
        assert!(!component.starts_with('.'), "{name:?}");
        assert!(!component.starts_with('-'), "{name:?}");
    }
    assert!(
        gix::validate::reference::name(name.as_bytes().into()).is_ok(),
        "refname::check accepts {name:?}, which git refuses"
    );
}

/// `names::repository`: a refusal is one line; an accepted alias is the given one less at most
/// one `.git`, and it and the workspace are valid segments.
fn repository(workspace: &str, given: &str) {
    match names::repository(workspace, given) {
        Ok(alias) => {
            assert!(
                names::is_valid_repo_segment(&alias),
                "repository({workspace:?}, {given:?}) gives alias {alias:?}, not a valid segment"
            );
            segment(&alias);
            assert!(names::is_valid_repo_segment(workspace), "{workspace:?}");
            assert!(
                alias == given || format!("{alias}.git") == given,
                "{given:?} -> {alias:?}"
            );
        }
        Err(why) => {
            assert!(why.starts_with("invalid repository name"), "{why}");
            assert!(!why.contains('\n'), "{why:?}");
            assert!(why.len() < 300, "{why:?}");
        }
    }
}

/// `names::default_branch_ref`: an accepted branch is a full ref name under `refs/heads/` that
/// the ref rules accept; a refusal is one line.
fn default_branch(branch: &str) {
    match names::default_branch_ref(branch) {
        Ok(full) => {
            assert!(full.starts_with("refs/heads/"), "{full:?}");
            let short = branch.strip_prefix("refs/heads/").unwrap_or(branch);
            assert_eq!(full, format!("refs/heads/{short}"));
            ref_name(&full);
            assert!(refname::check(&full).is_ok(), "{full:?}");
        }
        Err(why) => {
            assert!(why.starts_with("invalid ref \"refs/heads/"), "{why}");
            assert!(!why.contains('\n'), "{why:?}");
        }
    }
}

fn ids(s: &str) {
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if names::is_valid_pack_name(s) {
        assert!(
            s.len() == 45 && s.starts_with("pack-") && lower_hex(&s[5..]),
            "{s:?}"
        );
    }
    if names::is_object_id(s) {
        assert!(s.len() == 40 && lower_hex(s), "{s:?}");
    }
    if names::is_lfs_oid(s) {
        assert!(s.len() == 64 && lower_hex(s), "{s:?}");
    }
    if names::is_valid_repo_segment(s) {
        segment(s);
    }
}

fn segment(s: &str) {
    assert!(!s.is_empty() && s.len() <= 128, "{s:?}");
    assert!(
        s != "." && s != ".." && !s.contains('/') && !s.contains('\\'),
        "{s:?}"
    );
    assert!(!s.contains('%') && !s.contains(':') && !s.contains('?') && !s.contains('#'));
}

fn check_remote(remote: &Remote) {
    segment(&remote.workspace);
    segment(&remote.alias);
    let server = &remote.server;
    assert!(matches!(server.scheme(), "http" | "https"), "{server}");
    assert!(server.path().ends_with('/'), "{server}");
    assert!(
        server.username().is_empty() && server.password().is_none(),
        "{server}"
    );
    // Every API and LFS URL stays below the server root (a short-form server may keep a query
    // or fragment, which joining drops: compare without them).
    let mut base = server.clone();
    base.set_query(None);
    base.set_fragment(None);
    for route in [api::Route::Refs, api::Route::Update, api::Route::FixThin] {
        let path = api::route_path(&remote.workspace, &remote.alias, route);
        let url = server.join(&path).expect("route joins");
        assert!(
            url.as_str().starts_with(base.as_str()),
            "{url} escapes {base}"
        );
    }
    let lfs = server
        .join(&api::lfs::endpoint_path(&remote.workspace, &remote.alias))
        .expect("lfs joins");
    assert!(
        lfs.as_str().starts_with(server.as_str()),
        "{lfs} escapes {server}"
    );
    // `git hypha url` prints url(): it must name the same repository. (F4, fixed: an alias
    // ending in `.git.git` named another repository once written back; it is refused now.)
    if server.query().is_none() && server.fragment().is_none() {
        let again = config::resolve(&remote.url(), &HashMap::new(), None)
            .unwrap_or_else(|e| panic!("url() {} does not resolve: {e}", remote.url()));
        assert_eq!(
            &again,
            remote,
            "url() {} resolves to another remote",
            remote.url()
        );
    }
}
