//! `git hypha routes` (hidden): remote API v1's route table as JSON, for the Hypha plugin,
//! which asks Hypha the question each route needs and holds its lease around the leased ones.
//! The table is the server's own ([`Route::access`], [`Route::leased`]): the plugin keeps no
//! copy of it.

use hypha_git::api::{Access, Route};
use std::collections::BTreeMap;

/// What the plugin reads: `{"routes": {"info": "read", ...}, "leased": ["update", ...]}`.
#[derive(serde::Serialize)]
struct Table {
    routes: BTreeMap<&'static str, Access>,
    leased: Vec<&'static str>,
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
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string(&table)?);
    }
    Ok(())
}
