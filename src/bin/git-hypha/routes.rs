//! `git hypha routes` (hidden): remote API v1's route table as JSON, for the Hypha plugin,
//! which asks Hypha the question each route needs and holds its lease around the leased ones,
//! and the bounds of the bodies it reads before forwarding them. The table is the server's own
//! ([`Route::access`], [`Route::leased`], the LFS routes' bounds): the plugin keeps no copy
//! of it.

use hypha_git::api::{Access, Route};
use hypha_git::server;
use std::collections::BTreeMap;

/// What the plugin reads: `{"routes": {"info": "read", ...}, "leased": ["update", ...],
/// "bodies": {"lfs": 1048576, ...}}`.
#[derive(serde::Serialize)]
struct Table {
    routes: BTreeMap<&'static str, Access>,
    leased: Vec<&'static str>,
    /// The largest body the child takes on the routes the plugin reads in whole first: the
    /// LFS locks (`locks`), the LFS object routes (`lfs`) and their `.../delta` (`lfs_delta`).
    bodies: BTreeMap<&'static str, usize>,
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
        bodies: BTreeMap::from([
            ("locks", server::MAX_LOCK_BODY),
            ("lfs", server::MAX_LFS_BODY),
            ("lfs_delta", server::MAX_LFS_DELTA_BODY),
        ]),
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string(&table)?);
    }
    Ok(())
}
