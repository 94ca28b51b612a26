//! `git hypha gc`: merge a repository's packs client-side ([`hypha_git::gc`]) and report what
//! was merged, kept and retired; after a full merge, have the server prune the LFS objects no
//! ref reaches and report that too.

use hypha_git::api::LfsPruneResponse;
use hypha_git::client::{Api, Client};
use hypha_git::config;
use hypha_git::gc;
use hypha_git::progress::Progress;
use std::collections::HashMap;

/// `git hypha gc`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
    url: String,
    /// Merge only the small packs: each pack left must be at least twice the size of all
    /// smaller packs together (what the server's automatic compaction does).
    #[arg(long)]
    geometric: bool,
    /// Compact only if the server's automatic compaction would now (more than 20 live
    /// packs, or 4 MiB of small packs to merge), and then geometrically; otherwise
    /// change nothing. The Hypha plugin runs this after pushes.
    #[arg(long, conflicts_with = "geometric")]
    auto: bool,
}

/// Compact the repository, with progress on a terminal and one summary line on stderr.
pub fn run(args: Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let Args {
        url,
        geometric,
        auto,
    } = args;
    let remote = config::resolve(&url, env, None)?;
    let name = remote.display_name();
    let client = Client::new(remote, config::env_token(env))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let progress = Progress::terminal(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let mode = match (auto, geometric) {
        (true, _) => gc::Mode::Auto,
        (false, true) => gc::Mode::Geometric,
        (false, false) => gc::Mode::All,
    };
    // A stock Hypha (no plugin) answers gc's requests with a bare 405: say what it is.
    if runtime.block_on(client.probe())? == Api::Absent {
        anyhow::bail!(
            "git hypha gc needs remote API v1, which the server of '{name}' does not \
             serve (a Hypha without the git-remote-hypha plugin)"
        );
    }
    match runtime.block_on(gc::run(&client, &gc::Options { mode }, progress))? {
        gc::Outcome::NothingToDo { packs, purged } => eprintln!(
            "{name}: {packs} pack(s), nothing to compact; deleted {purged} retired earlier"
        ),
        gc::Outcome::Compacted {
            merged,
            kept,
            pack,
            pack_size,
            retired,
        } => eprintln!(
            "{name}: merged {merged} packs into {pack} ({pack_size} bytes), kept {kept}; \
             retired {}, deleted {} retired earlier (grace {} s)",
            retired.retired.len(),
            retired.deleted.len(),
            retired.grace_secs
        ),
    }
    // Only after a full compaction: the server copies and walks every pack, which `--auto`
    // and `--geometric` are meant to spare.
    if mode == gc::Mode::All {
        report_lfs(&name, runtime.block_on(gc::prune_lfs(&client))?);
    }
    Ok(())
}

/// One line on what the server's LFS prune did; nothing for a repository without LFS objects.
fn report_lfs(name: &str, done: Option<LfsPruneResponse>) {
    let Some(done) = done else {
        eprintln!("{name}: the server does not prune LFS objects (an older server)");
        return;
    };
    if let Some(why) = done.skipped {
        eprintln!("{name}: LFS objects not pruned this time: {why}");
    } else if done.objects > 0 {
        eprintln!(
            "{name}: LFS: {} object(s), {} reachable; deleted {} ({} bytes); {} unreachable \
             kept for a later gc (grace {} s)",
            done.objects,
            done.reachable,
            done.deleted.len(),
            done.deleted_bytes,
            done.waiting,
            done.grace_secs
        );
    }
}
