//! `git hypha routes` (hidden): the server's route tables as JSON, for the Hypha plugin, which
//! asks Hypha the question each route needs, holds its lease around the leased ones and reads
//! no body past a route's bound before forwarding it. The tables are the server's own
//! ([`Route::access`], [`Route::leased`], [`LfsRoute::access`], [`server::body_limit`]): the
//! plugin keeps no copy of them, and registers its LFS routes from the same table.

use hypha_git::api::lfs_routes::{LfsAccess, LfsRoute};
use hypha_git::api::{Access, ErrorCode, Route};
use hypha_git::server;
use std::collections::BTreeMap;

/// What the plugin reads: `{"routes": {"info": "read", ...}, "leased": ["update", ...],
/// "lfs": {"POST /objects/batch": {"access": {"download": "read", "upload": "write"},
/// "body": 1048576}, "GET /locks": {"access": "read", "body": 65536}, ...},
/// "errors": {"not_found": 404, ...}}`.
#[derive(serde::Serialize)]
struct Table {
    routes: BTreeMap<&'static str, Access>,
    leased: Vec<&'static str>,
    /// The routes below a repository's LFS endpoint, by `"{method} {path}"` (the path with
    /// its parameter, `{oid}` or `{id}`).
    lfs: BTreeMap<String, LfsRule>,
    /// The HTTP status of each error code ([`ErrorCode::http_status`]), for the errors the
    /// plugin answers itself (Hypha refused, no such artifact) in the server's words.
    errors: BTreeMap<String, u16>,
}

#[derive(serde::Serialize)]
struct LfsRule {
    /// What Hypha must grant the caller: a level, or, for the batch, one per `operation`.
    access: LfsAccess,
    /// The largest body the child takes on the route.
    body: usize,
}

/// Print the table on stdout, one line.
pub fn run() -> anyhow::Result<()> {
    let table = Table {
        routes: Route::ALL.map(|r| (r.as_str(), r.access())).into(),
        leased: Route::ALL
            .into_iter()
            .filter(|r| r.leased())
            .map(Route::as_str)
            .collect(),
        lfs: LfsRoute::ALL
            .into_iter()
            .map(|r| {
                let rule = LfsRule {
                    access: r.access(),
                    body: server::body_limit(r),
                };
                (r.key(), rule)
            })
            .collect(),
        errors: ErrorCode::SENT
            .into_iter()
            .map(|code| Ok((code_name(code)?, code.http_status())))
            .collect::<anyhow::Result<_>>()?,
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string(&table)?);
    }
    Ok(())
}

/// The code as the wire writes it (`"not_found"`).
fn code_name(code: ErrorCode) -> anyhow::Result<String> {
    match serde_json::to_value(code)? {
        serde_json::Value::String(name) => Ok(name),
        other => anyhow::bail!("error code {code:?} serialized as {other}"),
    }
}
