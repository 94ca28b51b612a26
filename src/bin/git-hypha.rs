//! `git hypha <command>`: serve the remote API, create repositories, mint tokens.
//!
//! Parses arguments with clap, calls the library, and turns an error into `error: ...` lines
//! and a non-zero exit code. Nothing else, except the manual pages, which are generated from
//! this clap definition (hidden `git hypha manpage DIR`; committed in `man/`, checked by a test).

#[path = "shared/logging.rs"]
mod logging;
#[path = "shared/report.rs"]
mod report;

use clap::{Parser, Subcommand};
use hypha_git::api::{CreateRequest, HooksRequest, HooksResponse, Route};
use hypha_git::auth::{self, Permission};
use hypha_git::client::{self, Api, Client};
use hypha_git::config;
use hypha_git::gc;
use hypha_git::login;
use hypha_git::progress::Progress;
use hypha_git::repo::upload::MultipartPolicy;
use hypha_git::server::{self, ServeOptions};
use hypha_git::storage::s3;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Keep git repositories in Hypha's object storage.
#[derive(Parser)]
#[command(name = "git hypha", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run remote API v1 over a local directory or an S3 bucket, in Hypha's storage layout.
    // A later flag wins over an earlier one, so that a wrapper (or a test suite) can put
    // defaults first and let its caller override them.
    #[command(args_override_self = true)]
    // Boxed: the server's options outweigh every other command's.
    Serve(Box<ServeArgs>),
    /// Manage a repository's webhooks (admin rights on the workspace): after every push the
    /// server POSTs a signed push event (GitHub's shape, X-Hub-Signature-256) to each.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Create an empty repository (HEAD points at main). On a Hypha without the plugin, through
    /// its artifact manager (`config.storage = "git"`).
    Create {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
        /// Allow anonymous reads.
        #[arg(long)]
        public: bool,
        /// Default branch.
        #[arg(long, default_value = "main")]
        default_branch: String,
    },
    /// Merge a repository's packs into one, so clones and fetches stay fast after many
    /// pushes. Old packs are deleted by the server after its grace period.
    Gc {
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
    },
    /// Log in through the server's login service (a browser) and keep the token for this
    /// server under the user's configuration directory; the helper uses it last.
    Login {
        /// Server URL; default HYPHA_SERVER_URL, then `git config hypha.server`.
        server: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Forget the token `git hypha login` stored for a server.
    Logout {
        /// Server URL; default HYPHA_SERVER_URL, then `git config hypha.server`.
        server: Option<String>,
    },
    /// Print the clone URLs of a repository: the helper's and Hypha's smart HTTP.
    Url {
        /// workspace/alias (server from HYPHA_SERVER_URL or `git config hypha.server`), or a
        /// full hypha::https://host/workspace/alias.
        repo: String,
    },
    /// Git credential helper for git-lfs (the helper records it for a hypha:: remote's host):
    /// `get` answers with HYPHA_TOKEN, then the token of `git hypha login`; nothing is stored.
    #[command(hide = true)]
    Credential {
        /// The hypha server the recorded helper line is for.
        #[arg(long)]
        server: String,
        /// get, store or erase (git's credential helper actions).
        action: String,
    },
    /// Print a token signed with HYPHA_JWT_SECRET (for tests and CI).
    Token {
        /// Workspace the token grants access to ("*" for all).
        #[arg(long)]
        workspace: String,
        /// r (read), rw (read and write) or a (admin).
        #[arg(long, default_value = "rw")]
        permission: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// Subject (user id) written into the token.
        #[arg(long, default_value = "git-hypha")]
        subject: String,
    },
    /// Write the manual pages (git-hypha.1, one per subcommand, git-remote-hypha.1) into DIR;
    /// `git hypha --help` shows git-hypha(1) once they are where `man` looks.
    #[command(hide = true)]
    Manpage {
        /// Directory to write the pages into.
        #[arg(default_value = "man")]
        dir: PathBuf,
    },
}

/// `git hypha serve`'s options.
#[derive(clap::Args)]
struct ServeArgs {
    /// Directory holding the repositories ({workspace}/artifacts/{alias}/.git/).
    #[arg(long, env = "HYPHA_GIT_ROOT", default_value = "hypha-data")]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "HYPHA_GIT_LISTEN", default_value = "127.0.0.1:9527")]
    listen: SocketAddr,
    /// URL clients reach this server at (for presigned URLs); default http://<listen>.
    #[arg(long, env = "HYPHA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Store repositories in this S3 bucket instead of --root (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "HYPHA_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// S3 endpoint URL (MinIO and other S3-compatible stores); default AWS_ENDPOINT_URL_S3,
    /// then AWS_ENDPOINT_URL, then AWS itself.
    #[arg(long, env = "HYPHA_S3_ENDPOINT", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// Key prefix in the bucket, so that several servers share one bucket.
    #[arg(long, env = "HYPHA_S3_PREFIX", requires = "s3_bucket")]
    s3_prefix: Option<String>,
    /// S3 region; default AWS_REGION, then us-east-1.
    #[arg(long, env = "HYPHA_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style S3 URLs (http://host/bucket/key), as most S3-compatible stores need.
    #[arg(long, env = "HYPHA_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// Seconds packs retired by `git hypha gc` stay readable before deletion
    /// (default: presigned-URL lifetime + 10 minutes).
    #[arg(long, env = "HYPHA_GC_GRACE_SECS")]
    gc_grace_secs: Option<u64>,
    /// Lifetime of presigned URLs in seconds (default 3600). Clients whose URL expired
    /// ask for a fresh one.
    #[arg(long, env = "HYPHA_URL_TTL_SECS", value_parser = clap::value_parser!(u64).range(1..=604800))]
    url_ttl_secs: Option<u64>,
    /// Packs larger than this many bytes go up to S3 in parts (default 64 MiB).
    #[arg(long, env = "HYPHA_MULTIPART_THRESHOLD", default_value_t = MultipartPolicy::default().threshold)]
    multipart_threshold: u64,
    /// Size of each part of a multipart upload in bytes (default 16 MiB; at least 5 MiB).
    #[arg(long, env = "HYPHA_MULTIPART_PART_SIZE", default_value_t = MultipartPolicy::default().part_size)]
    multipart_part_size: u64,
    /// Abort multipart uploads older than this many seconds (default: a day, or twice the
    /// URL lifetime if longer); checked at start and hourly.
    #[arg(long, env = "HYPHA_MULTIPART_STALE_SECS")]
    multipart_stale_secs: Option<u64>,
    /// After a push leaves a repository with more than this many packs, merge its small
    /// packs in the background (needs git on PATH); 0 turns this off.
    #[arg(long, env = "HYPHA_AUTO_GC_PACKS", default_value_t = server::autogc::DEFAULT_AUTO_GC_PACKS)]
    auto_gc_packs: usize,
    /// Also merge them once the packs a geometric merge would take hold this many bytes,
    /// so that edit-pushes of large files do not keep a whole copy each (default 4 MiB);
    /// 0 counts packs only.
    #[arg(long, env = "HYPHA_AUTO_GC_BYTES", default_value_t = server::autogc::DEFAULT_AUTO_GC_BYTES)]
    auto_gc_bytes: u64,
    /// Used by the Hypha plugin: serve only requests carrying the key in
    /// HYPHA_GIT_PLUGIN_KEY, with the permission and location Hypha decided; exit when
    /// standard input closes.
    #[arg(long, hide = true, requires = "s3_bucket")]
    plugin: bool,
    /// Webhook hosts that may be called although they resolve to private, loopback or
    /// other non-public addresses (comma-separated host names or IP addresses).
    #[arg(long, env = "HYPHA_WEBHOOK_ALLOW", value_delimiter = ',')]
    webhook_allow: Vec<String>,
    /// Do not complete thin pushes: clients then upload self-contained packs, as to a
    /// server from before thin pushes.
    #[arg(long)]
    no_thin_packs: bool,
    /// Largest push (pack plus idx, in bytes) taken inline in the `update` request, which
    /// saves a small push three round trips; at most 8 MiB; 0 makes clients upload every
    /// pack through presigned URLs, as to a server from before inline packs.
    #[arg(long, env = "HYPHA_INLINE_MAX", default_value_t = hypha_git::server::inline::DEFAULT_INLINE_MAX)]
    inline_max: u64,
}

#[derive(Subcommand)]
enum HookCommand {
    /// Add a webhook (or replace its secret); the signing secret is read from
    /// HYPHA_HOOK_SECRET, never from the command line, and is never shown again.
    Add {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
        /// The http(s) URL the server POSTs push events to.
        target: String,
    },
    /// List the webhooks (without their secrets) and the last deliveries.
    List {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
    },
    /// Remove a webhook.
    Remove {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
        /// The target URL given to `hook add`.
        target: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's access log and notes, gc's and create's notes: all at info.
    logging::install(tracing_subscriber::filter::LevelFilter::INFO);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::print("error", e.as_ref());
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    match command {
        Command::Serve(args) => {
            let ServeArgs {
                root,
                listen,
                public_url,
                gc_grace_secs,
                s3_bucket,
                s3_endpoint,
                s3_prefix,
                s3_region,
                s3_path_style,
                url_ttl_secs,
                multipart_threshold,
                multipart_part_size,
                multipart_stale_secs,
                auto_gc_packs,
                auto_gc_bytes,
                plugin,
                webhook_allow,
                no_thin_packs,
                inline_max,
            } = *args;
            // The key comes through the environment, never argv (which `ps` shows).
            let plugin_key = match plugin {
                true => Some(
                    env.get("HYPHA_GIT_PLUGIN_KEY")
                        .filter(|k| k.len() >= 32)
                        .cloned()
                        .ok_or_else(|| {
                            anyhow::anyhow!("--plugin needs HYPHA_GIT_PLUGIN_KEY (32+ characters)")
                        })?,
                ),
                false => None,
            };
            let s3 = match s3_bucket {
                Some(bucket) => Some(s3::Config {
                    endpoint: s3::endpoint_from(s3_endpoint, &env),
                    bucket,
                    prefix: s3_prefix,
                    region: s3::region_from(s3_region.as_deref(), &env),
                    path_style: s3_path_style,
                    credentials: s3::Credentials::from_env(&env)?,
                }),
                None => None,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(server::run(
                ServeOptions {
                    root,
                    listen,
                    jwt_secret: env
                        .get("HYPHA_JWT_SECRET")
                        .cloned()
                        .filter(|s| !s.is_empty()),
                    public_url,
                    gc_grace: gc_grace_secs.map(Duration::from_secs),
                    s3,
                    url_ttl: url_ttl_secs.map(Duration::from_secs),
                    multipart: MultipartPolicy {
                        threshold: multipart_threshold,
                        part_size: multipart_part_size,
                    },
                    stale_upload_age: multipart_stale_secs.map(Duration::from_secs),
                    auto_gc_packs,
                    auto_gc_bytes,
                    plugin_key,
                    webhook_allow,
                    thin_packs: !no_thin_packs,
                    inline_max,
                },
                announce,
            ))?;
        }
        Command::Create {
            url,
            public,
            default_branch,
        } => {
            let remote = config::resolve(&url, &env, None)?;
            let name = remote.display_name();
            let client = Client::new(remote, config::env_token(&env))?;
            let runtime = tokio::runtime::Runtime::new()?;
            if runtime.block_on(client.probe())? == Api::Absent {
                // A stock Hypha: its artifact manager makes the git repository itself.
                if !hypha_git::names::refname::is_valid(&format!("refs/heads/{default_branch}")) {
                    anyhow::bail!("invalid default branch '{default_branch}'");
                }
                let git_url =
                    runtime.block_on(client.create_in_artifact_manager(public, &default_branch))?;
                eprintln!("created {name} (no remote API v1 on this server: git uses {git_url})");
                return Ok(());
            }
            let _: serde_json::Value = runtime.block_on(client.call(
                Route::Create,
                &CreateRequest {
                    public,
                    default_branch: Some(default_branch),
                },
            ))?;
            eprintln!("created {name}");
        }
        Command::Hook(command) => hook(command, &env)?,
        Command::Gc {
            url,
            geometric,
            auto,
        } => {
            let remote = config::resolve(&url, &env, None)?;
            let name = remote.display_name();
            let client = Client::new(remote, config::env_token(&env))?;
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
            match runtime.block_on(gc::run(&client, mode, progress))? {
                gc::Outcome::NothingToDo { packs, purged } => eprintln!(
                    "{name}: {packs} pack(s), nothing to compact; deleted {purged} retired earlier"
                ),
                gc::Outcome::Compacted {
                    merged,
                    kept,
                    pack,
                    pack_size,
                    response,
                } => eprintln!(
                    "{name}: merged {merged} packs into {pack} ({pack_size} bytes), kept {kept}; \
                     retired {}, deleted {} retired earlier (grace {} s)",
                    response.retired.len(),
                    response.deleted.len(),
                    response.grace_secs
                ),
            }
        }
        Command::Login { server, timeout } => {
            let server =
                login::resolve_server(server.as_deref(), &env, config::git_config("hypha.server"))?;
            let path = login::logins_path().ok_or(login::Error::NoConfigDir)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let http = reqwest::Client::new();
            let started = runtime.block_on(login::start(&http, &server))?;
            eprintln!("Open this URL in a browser to log in to {server}:");
            eprintln!("  {}", started.login_url);
            eprintln!("Waiting for the login to complete...");
            let token = runtime.block_on(login::wait(
                &http,
                &server,
                &started.key,
                Duration::from_secs(timeout),
            ))?;
            login::store_token(&path, &server, &token)?;
            eprintln!("logged in to {server}; token kept in {}", path.display());
        }
        Command::Logout { server } => {
            let server =
                login::resolve_server(server.as_deref(), &env, config::git_config("hypha.server"))?;
            let path = login::logins_path().ok_or(login::Error::NoConfigDir)?;
            if login::remove_token(&path, &server)? {
                eprintln!("logged out of {server}");
            } else {
                eprintln!("no stored login for {server}");
            }
        }
        Command::Credential { server, action } => {
            let server = url::Url::parse(&server)?;
            let mut request = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut request)?;
            let answer =
                hypha_git::credential_helper::answer(&action, &request, &server, &env, |s| {
                    login::stored_token(&login::logins_path()?, s)
                });
            if let Some(answer) = answer {
                #[allow(clippy::print_stdout)]
                {
                    print!("{answer}");
                }
            }
        }
        Command::Url { repo } => {
            let remote =
                config::resolve(&repo, &env, config::git_config("hypha.server").as_deref())?;
            #[allow(clippy::print_stdout)]
            {
                println!("{}", remote.url());
                println!("{}{}/git/{}", remote.server, remote.workspace, remote.alias);
            }
        }
        Command::Token {
            workspace,
            permission,
            expires_in,
            subject,
        } => {
            let secret = env
                .get("HYPHA_JWT_SECRET")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| anyhow::anyhow!("HYPHA_JWT_SECRET is not set"))?;
            let permission: Permission = permission.parse()?;
            let token = auth::mint(
                secret.as_bytes(),
                &subject,
                &[(workspace, permission)],
                Duration::from_secs(expires_in),
            );
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
        }
        Command::Manpage { dir } => {
            std::fs::create_dir_all(&dir)?;
            write_manpages(&dir)?;
        }
    }
    Ok(())
}

/// `git hypha hook ...`: one `hooks` call, then the hooks and deliveries on stdout.
fn hook(command: HookCommand, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let (url, request, done) = match command {
        HookCommand::Add { url, target } => {
            let secret = env
                .get("HYPHA_HOOK_SECRET")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "HYPHA_HOOK_SECRET is not set: put the webhook's signing secret there \
                         (it is never taken from the command line)"
                    )
                })?
                .clone();
            let done = format!("added webhook {target}");
            (
                url,
                HooksRequest::Add {
                    url: target,
                    secret,
                },
                Some(done),
            )
        }
        HookCommand::List { url } => (url, HooksRequest::List, None),
        HookCommand::Remove { url, target } => {
            let done = format!("removed webhook {target}");
            (url, HooksRequest::Remove { url: target }, Some(done))
        }
    };
    let remote = config::resolve(&url, env, config::git_config("hypha.server").as_deref())?;
    let client = Client::new(remote, config::env_token(env))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer: HooksResponse = runtime
        .block_on(client.call(Route::Hooks, &request))
        .map_err(|e| match e {
            client::Error::Forbidden { repo } => anyhow::anyhow!(
                "permission denied for '{repo}': managing webhooks needs admin rights (a) on \
                 the workspace"
            ),
            e => e.into(),
        })?;
    if let Some(done) = done {
        eprintln!("{done}");
        return Ok(());
    }
    #[allow(clippy::print_stdout)]
    {
        if answer.hooks.is_empty() {
            println!("no webhooks");
        }
        for h in &answer.hooks {
            println!("{}  (added {})", h.url, auth::format_utc(h.added_at));
        }
        if !answer.deliveries.is_empty() {
            println!("last deliveries (oldest first):");
        }
        for d in &answer.deliveries {
            let status = d.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
            println!(
                "  {}  {}  status {status}  attempts {}  {}  {}  {}{}",
                auth::format_utc(d.at),
                if d.ok { "delivered" } else { "failed" },
                d.attempts,
                d.id,
                d.url,
                d.refs.join(","),
                d.error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Render every page into `dir`: `git-hypha.1` (git turns `git hypha --help` into
/// `man git-hypha`), `git-hypha-<command>.1`, and `git-remote-hypha.1`.
fn write_manpages(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    // Named `git-hypha` for the file and title, invoked as `git hypha` in the synopsis.
    let git_hypha = Cli::command().name("git-hypha").bin_name("git hypha");
    clap_mangen::generate_to(git_hypha, dir)?;
    clap_mangen::Man::new(remote_helper_command()).generate_to(dir)?;
    Ok(())
}

/// git-remote-hypha parses git's fixed argv by hand; this describes it for its manual page.
fn remote_helper_command() -> clap::Command {
    use clap::Arg;
    clap::Command::new("git-remote-hypha")
        .version(env!("CARGO_PKG_VERSION"))
        // It answers --version, but git's argv leaves no room for --help.
        .disable_help_flag(true)
        .about("The git remote helper for hypha:: URLs")
        .long_about(
            "git runs git-remote-hypha for every hypha:: URL (git clone \
             hypha::https://host/workspace/alias, git fetch, git push, git ls-remote); it is \
             not run by hand. It lists refs through the server's remote API, decides locally \
             what to send or download, and moves pack bytes straight to and from storage \
             through presigned URLs. Servers: `git hypha serve`, or Hypha with the \
             hypha_git_remote plugin; on a Hypha without the plugin it hands the session to \
             git's own smart HTTP at https://host/workspace/git/alias (-v says which).",
        )
        .arg(Arg::new("remote").required(true).help(
            "Name of the remote (or the address itself, when git has no remote of that name)",
        ))
        .arg(Arg::new("url").help(
            "hypha::https://host/workspace/alias, or hypha::workspace/alias with the server \
             from HYPHA_SERVER_URL or `git config hypha.server`",
        ))
        .after_long_help(
            "Token: HYPHA_TOKEN, then `git credential fill` for the server's host (user git), \
             then the token `git hypha login` stored for the server. Tokens and presigned URLs \
             are never printed. HYPHA_READ_TIMEOUT_SECS bounds a stalled read. See also \
             git-hypha(1), gitremote-helpers(7).",
        )
}

/// The startup lines the acceptance contract (docs/design.md §7) reads: stdout belongs to
/// whoever started the server, so they go there explicitly and are flushed at once.
fn announce(addr: std::net::SocketAddr, admin_token: Option<&str>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    if let Some(token) = admin_token {
        // Printing this token is the point: without a configured secret it is the only
        // way in. It goes to stdout only, never to the log.
        writeln!(out, "admin token: {token}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    /// The committed pages in `man/` are what the CLI generates today: a changed flag or help
    /// text fails here until `cargo run --bin git-hypha -- manpage man` is run and committed.
    #[test]
    fn committed_manpages_are_current() {
        let fresh = tempfile::tempdir().expect("tempdir");
        super::write_manpages(fresh.path()).expect("render the pages");
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let names = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let stale = "man/ is out of date with the CLI: run `cargo run --bin git-hypha -- manpage \
                     man` and commit the result";
        assert_eq!(names(fresh.path()), names(&committed), "{stale}");
        // The wheel's data directory (pyproject.toml) links each page into share/man/man1.
        let wheel = committed.join("../wheel/data/share/man/man1");
        for name in names(fresh.path()) {
            let want = std::fs::read_to_string(fresh.path().join(&name)).expect("fresh page");
            let have = std::fs::read_to_string(committed.join(&name)).expect("committed page");
            assert!(want == have, "{name}: {stale}");
            let link = wheel.join(&name);
            assert_eq!(
                link.canonicalize().ok(),
                committed.join(&name).canonicalize().ok(),
                "{} must be a symlink to ../../../../../man/{name}, so that pip installs it",
                link.display()
            );
        }
    }
}
