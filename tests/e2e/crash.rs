//! docs/scenarios.md H38-H40: processes dying at the worst moment.
//!
//! The helper is SIGKILLed while the fault proxy holds one of its requests, which makes the
//! moment exact: before the upload (`uploads` held), during it (half of the pack body
//! received), between the upload and the ref update (`update` held, then dropped), and after
//! the server applied the update but before the helper heard of it. Ctrl-C (SIGINT to the
//! whole process group, as a terminal sends it) arrives during a clone and a fetch while one
//! pack is complete on disk and another is still downloading. `git hypha serve` is SIGKILLed
//! in the middle of an atomic update of many refs, and restarted on the same store (local disk
//! or, with the suite on S3, the same key prefix). A pack orphaned by a helper killed before
//! its update is not offered to readers and is removed by `git hypha gc`.
//!
//! Afterwards: the remote's refs are either unchanged or fully at the new value, every stored
//! pack is complete and a fresh clone is `fsck`-clean, the local repository has no `.pack`
//! without its `.idx` and no stale `.keep`, and a retried command succeeds.

use crate::faults::{
    assert_remote_consistent, figures, git_dir, remote_refs, skip_without_proxied_transfers,
    transfers_proxied, unsafe_pack_files, Faulty, LocalState,
};
use crate::harness::proxy::{Fault, Gate, HoldAt, Proxy};
use crate::harness::{noise, Out, TestEnv, WS};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A git command running in the background (so the test can kill things while it runs),
/// with the harness's hermetic environment. Its output lands in files of its own directory.
pub(crate) struct Job {
    dir: PathBuf,
    desc: String,
    cwd: PathBuf,
}

impl Job {
    pub(crate) fn start(env: &TestEnv, cwd: &Path, name: &str, args: &[&str]) -> Job {
        let dir = env.mkdir(&format!("jobs/{name}"));
        let quoted: Vec<String> = args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let d = dir.display();
        // The subshell outlives this bash: its stdio goes to files so `Cmd::run` returns.
        let script = format!(
            "(git {} >'{d}/out' 2>'{d}/err' </dev/null; echo $? >'{d}/rc') \
             >/dev/null 2>&1 </dev/null &",
            quoted.join(" ")
        );
        env.cmd(cwd, &["-c", &script]).program("bash").ok();
        Job {
            dir,
            desc: format!("git {}", args.join(" ")),
            cwd: cwd.to_path_buf(),
        }
    }

    /// Waits for the command to end; its output passes the harness's secret scan.
    pub(crate) fn wait(&self, env: &TestEnv) -> Out {
        let deadline = Instant::now() + WAIT;
        let rc = loop {
            if let Ok(rc) = std::fs::read_to_string(self.dir.join("rc")) {
                if rc.ends_with('\n') {
                    break rc;
                }
            }
            assert!(Instant::now() < deadline, "{} did not end", self.desc);
            thread::sleep(Duration::from_millis(20));
        };
        // Through the harness, so that the captured output is scanned for secrets.
        let scanned = env
            .cmd(&self.dir, &["-c", "cat out; cat err >&2"])
            .program("sh")
            .ok();
        Out {
            desc: self.desc.clone(),
            dir: self.cwd.clone(),
            code: rc.trim().parse().ok(),
            stdout: scanned.stdout,
            stderr: scanned.stderr,
        }
    }
}

/// Processes whose command line contains every needle (arguments joined by spaces).
fn pids_matching(needles: &[&str]) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().all(|n| cmdline.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

/// The one helper process talking to `url` (each test's proxy has its own port).
fn helper_pid(url: &str) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let pids = pids_matching(&["git-remote-hypha", url]);
        match pids.as_slice() {
            [pid] => return *pid,
            [] if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => panic!("expected one helper for {url}, found {pids:?}"),
        }
    }
}

/// The process group of `pid` (field 5 of `/proc/PID/stat`).
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = &stat[stat.rfind(')').expect("comm ends with )") + 2..];
    after
        .split(' ')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("pgrp field")
}

fn kill(signal: &str, target: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {target}");
}

/// A commit with a 256 KiB incompressible file, so an upload has a middle to die in.
fn big_commit(env: &TestEnv, repo: &Path, name: &str, seed: u64) -> String {
    std::fs::write(repo.join(format!("{name}.bin")), noise(256 * 1024, seed)).expect("write");
    env.commit(repo, name)
}

/// The helper is SIGKILLed at four moments of a push. Before the update reached the server,
/// the remote is unchanged; after, it holds the new value although git never heard `ok`.
/// Either way the remote is consistent and the next push or fetch does the right thing.
#[test]
fn helper_killed_during_push_leaves_remote_consistent() {
    let f = Faulty::new();
    let (url, src) = f.pushed("killed");
    let env = &f.env;
    let moments: [(&str, &str, &str, HoldAt, bool); 4] = [
        (
            "before-upload",
            "POST",
            "/uploads",
            HoldAt::BeforeForward,
            false,
        ),
        ("mid-upload", "PUT", ".pack", HoldAt::MidBody, false),
        (
            "before-update",
            "POST",
            "/update",
            HoldAt::BeforeForward,
            false,
        ),
        (
            "after-update",
            "POST",
            "/update",
            HoldAt::AfterResponse,
            true,
        ),
    ];
    let mut kills = 0;
    // On S3 the pack upload does not pass the proxy: no "mid-upload" moment there.
    let moments = moments
        .into_iter()
        .filter(|(_, method, ..)| *method == "POST" || transfers_proxied());
    for (i, (moment, method, path, at, lands)) in moments.enumerate() {
        let head = big_commit(env, &src, moment, i as u64 + 1);
        let remote = remote_refs(env, "killed");
        let local = LocalState::of(env, &src);
        let gate = Gate::new(at);
        f.proxy
            .inject(method, path, Some(1), Fault::Hold(gate.clone()));
        let job = Job::start(env, &src, moment, &["push", "origin", "main"]);
        assert!(
            gate.wait_arrival(WAIT),
            "{moment}: the request reached the proxy"
        );
        kill("KILL", &helper_pid(&f.proxy.url()).to_string());
        kills += 1;
        let out = job.wait(env);
        // The held request's sender is dead: forward nothing more of it.
        gate.abandon();
        assert_ne!(out.code, Some(0), "{moment}: git saw its helper die\n{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");

        let now = remote_refs(env, "killed");
        if lands {
            assert_eq!(
                now.get("refs/heads/main").map(|s| s.trim()),
                Some(head.as_str()),
                "{moment}: the update was applied before the kill\n{out}"
            );
        } else {
            assert_eq!(now, remote, "{moment}: remote refs unchanged\n{out}");
        }
        assert_remote_consistent(env, "killed", &url);
        assert_eq!(
            LocalState::of(env, &src).refs,
            local.refs,
            "{moment}: local refs unchanged"
        );
        env.fsck(&src);

        // The retry: a push that lands, or nothing to do because it already landed.
        let again = env.git(&src, &["push", "origin", "main"]);
        if lands {
            assert!(again.stderr.contains("Everything up-to-date"), "{again}");
            env.git(&src, &["fetch", "-q", "origin"]);
        }
        assert_eq!(
            env.rev(&src, "origin/main"),
            head,
            "{moment}: retried\n{again}"
        );
        assert_eq!(
            remote_refs(env, "killed")
                .get("refs/heads/main")
                .map(|s| s.trim().to_owned()),
            Some(head)
        );
    }
    // SIGKILL cannot be handled: the staging directory (a whole pack) of a killed push stays
    // in .git, and a later push removes those older than an hour.
    let leftover = LocalState::of(env, &src).staging;
    assert!(
        !leftover.is_empty(),
        "killed pushes leave their staging directory"
    );
    let git = git_dir(env, &src);
    for dir in &leftover {
        let status = Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(git.join(dir))
            .status()
            .expect("run touch");
        assert!(status.success());
    }
    big_commit(env, &src, "sweep", 99);
    env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(
        LocalState::of(env, &src).staging,
        Vec::<String>::new(),
        "the next push swept the stale staging directories"
    );
    assert_remote_consistent(env, "killed", &url);
    figures(
        "helper_kills",
        &[("kills", kills), ("faults", f.proxy.injected())],
    );
}

/// Pack names the `packs` route lists for `alias`.
fn listed_packs(env: &TestEnv, alias: &str) -> Vec<String> {
    crate::autogc::listed_packs(env, alias)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The helper is SIGKILLed after uploading its pack, before `update`: the orphaned pack is
/// in storage (where Hypha's own reader may see it, harmlessly) but not listed to readers of
/// the API, a retried push and clones work, and `git hypha gc` after the grace period (0 s
/// here) deletes it, and nothing a ref needs.
#[test]
fn orphaned_upload_is_invisible_and_removed_by_gc() {
    let proxy = Proxy::start();
    let mut args = proxy.serve_args();
    args.extend(["--gc-grace-secs".to_owned(), "0".to_owned()]);
    // An upload, not a pack inline in its update.
    args.extend(["--inline-max".to_owned(), "0".to_owned()]);
    let env = TestEnv::with_serve_args(&args);
    proxy.set_upstream(env.server.url());
    env.create("orphan");
    let url = format!("hypha::{}/{WS}/orphan", proxy.url());
    let src = env.init("orphan-src");
    env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "-u", "origin", "main"]);
    let stored_before = env.remote_packs("orphan");
    let listed_before = listed_packs(&env, "orphan");
    assert_eq!(listed_before.len(), 1);

    let head = big_commit(&env, &src, "orphan", 7);
    let gate = Gate::new(HoldAt::BeforeForward);
    proxy.inject("POST", "/update", Some(1), Fault::Hold(gate.clone()));
    let job = Job::start(&env, &src, "orphan", &["push", "origin", "main"]);
    assert!(gate.wait_arrival(WAIT), "the update reached the proxy");
    kill("KILL", &helper_pid(&proxy.url()).to_string());
    let out = job.wait(&env);
    gate.abandon();
    assert_ne!(out.code, Some(0), "git saw its helper die\n{out}");

    let orphans: Vec<String> = env
        .remote_packs("orphan")
        .into_keys()
        .filter(|p| !stored_before.contains_key(p))
        .collect();
    assert_eq!(orphans.len(), 1, "the orphan is stored: {orphans:?}");
    let idx = orphans[0].replace(".pack", ".idx");
    assert!(
        env.stored_repo("orphan")
            .join("objects/pack")
            .join(&idx)
            .exists(),
        "with its idx"
    );
    assert_eq!(
        listed_packs(&env, "orphan"),
        listed_before,
        "readers are not offered the orphaned pack"
    );
    let fresh = env.path("fresh");
    env.clone(&url, &fresh);
    assert_eq!(
        env.local_packs(&fresh).len(),
        1,
        "a clone downloads no orphan"
    );

    // The retry uploads the same pack again, and this time names it in its update.
    env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(listed_packs(&env, "orphan").len(), 2);
    assert_eq!(env.rev(&src, "origin/main"), head);

    // A push that dies again leaves a new orphan, which gc removes (grace 0) while merging
    // the live packs.
    let gone = big_commit(&env, &src, "orphan-2", 8);
    let gate = Gate::new(HoldAt::BeforeForward);
    proxy.inject("POST", "/update", Some(1), Fault::Hold(gate.clone()));
    let stored_live = env.remote_packs("orphan");
    let job = Job::start(&env, &src, "orphan-2", &["push", "origin", "main"]);
    assert!(gate.wait_arrival(WAIT), "the update reached the proxy");
    kill("KILL", &helper_pid(&proxy.url()).to_string());
    job.wait(&env);
    gate.abandon();
    let orphan: Vec<String> = env
        .remote_packs("orphan")
        .into_keys()
        .filter(|p| !stored_live.contains_key(p))
        .collect();
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    let gc = env.git_hypha(&["gc", &url]).ok();
    assert!(gc.stderr.contains("merged 2 packs"), "{gc}");
    let after: Vec<String> = env.remote_packs("orphan").into_keys().collect();
    assert!(
        !after.contains(&orphan[0]),
        "the orphan is deleted: {after:?}"
    );
    assert_eq!(listed_packs(&env, "orphan").len(), 1, "the merged pack");
    // The packs it merged are retired now and deleted by the next gc (grace 0).
    env.git_hypha(&["gc", &url]).ok();
    let after: Vec<String> = env.remote_packs("orphan").into_keys().collect();
    for name in stored_live.keys() {
        assert!(!after.contains(name), "{name} deleted by gc: {after:?}");
    }
    assert_eq!(after.len(), 1, "only the merged pack: {after:?}");
    let files: Vec<String> =
        crate::faults::files_under(&env.stored_repo("orphan").join("objects/pack"))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
    assert_eq!(
        files.len(),
        3,
        "the merged pack, its idx, .gitkeep: {files:?}"
    );
    assert_eq!(listed_packs(&env, "orphan").len(), 1);
    assert_remote_consistent(&env, "orphan", &url);
    let check = env.path("check");
    env.clone(&url, &check);
    assert_eq!(env.rev(&check, "origin/main"), head);
    env.fsck(&check);
    // The commit of the dead push is still the helper's to push: nothing of it was lost.
    env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(env.rev(&src, "origin/main"), gone);
    figures("orphaned_upload", &[("kills", 2), ("orphans_removed", 1)]);
}

/// Two new packs to fetch; the download of one is held while the other is complete on disk
/// (with the `.keep` that guards it until git writes refs), then the terminal's Ctrl-C.
fn interrupt_while_one_pack_is_in(f: &Faulty, pack_dir: &Path, job: &Job) -> Out {
    let deadline = Instant::now() + WAIT;
    let complete = || {
        let names: Vec<String> = std::fs::read_dir(pack_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.iter().any(|n| {
            n.strip_suffix(".keep")
                .is_some_and(|stem| names.contains(&format!("{stem}.idx")))
        })
    };
    while !complete() {
        assert!(Instant::now() < deadline, "one pack arrived");
        thread::sleep(Duration::from_millis(5));
    }
    // gix writes .keep, .pack, .idx in that order and the helper then takes the .keep into
    // its care; it is waiting for the held pack long before this pause ends. (The few
    // microseconds between gix writing the .keep and the helper guarding it are the one
    // window where Ctrl-C can still leave a .keep; a test cannot hit them on purpose.)
    thread::sleep(Duration::from_millis(200));
    let helper = helper_pid(&f.proxy.url());
    kill("INT", &format!("-{}", process_group(helper)));
    job.wait(&f.env)
}

/// A repository with three packs and a clone `old` holding only the first.
fn three_packs(f: &Faulty, alias: &str) -> (String, PathBuf, PathBuf, Vec<String>) {
    let (url, src) = f.pushed(alias);
    let old = f.env.path(&format!("{alias}-old"));
    f.env.clone(&url, &old);
    let first: Vec<String> = f.env.remote_packs(alias).into_keys().collect();
    for i in 0..2 {
        big_commit(&f.env, &src, &format!("more-{i}"), 10 + i);
        f.env.git(&src, &["push", "-q", "origin", "main"]);
    }
    let new: Vec<String> = f
        .env
        .remote_packs(alias)
        .into_keys()
        .filter(|p| !first.contains(p))
        .collect();
    assert_eq!(new.len(), 2);
    (url, src, old, new)
}

/// Ctrl-C during `git fetch`: no `.pack` without `.idx`, no stale `.keep`, refs untouched, and
/// the next fetch works.
#[test]
fn ctrl_c_during_fetch_leaves_no_partial_pack_or_keep() {
    if skip_without_proxied_transfers("ctrl_c_during_fetch") {
        return;
    }
    let f = Faulty::new();
    let (url, src, old, new) = three_packs(&f, "intr");
    let before = LocalState::of(&f.env, &old);
    let gate = Gate::new(HoldAt::BeforeForward);
    f.proxy
        .inject("GET", &new[1], Some(1), Fault::Hold(gate.clone()));
    let job = Job::start(&f.env, &old, "fetch", &["fetch", "origin"]);
    let pack_dir = git_dir(&f.env, &old).join("objects/pack");
    let out = interrupt_while_one_pack_is_in(&f, &pack_dir, &job);
    gate.abandon();
    assert_ne!(out.code, Some(0), "{out}");
    // Give a helper that outlived git a moment to finish whatever it still does.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        unsafe_pack_files(&git_dir(&f.env, &old)),
        Vec::<String>::new(),
        "no lone pack, no .keep, no temporary file\n{out}"
    );
    assert_eq!(
        LocalState::of(&f.env, &old).refs,
        before.refs,
        "refs untouched"
    );
    f.env.fsck(&old);
    f.env.git(&old, &["fetch", "-q", "origin"]);
    assert_eq!(f.env.rev(&old, "origin/main"), f.env.rev(&src, "main"));
    assert!(unsafe_pack_files(&git_dir(&f.env, &old)).is_empty());
    assert_remote_consistent(&f.env, "intr", &url);
    figures("ctrl_c_fetch", &[("kills", 1)]);
}

/// Ctrl-C during `git clone`: git removes the half-made clone, and the next clone works.
#[test]
fn ctrl_c_during_clone_leaves_nothing() {
    if skip_without_proxied_transfers("ctrl_c_during_clone") {
        return;
    }
    let f = Faulty::new();
    let (url, src, _old, new) = three_packs(&f, "cintr");
    let gate = Gate::new(HoldAt::BeforeForward);
    f.proxy
        .inject("GET", &new[1], Some(1), Fault::Hold(gate.clone()));
    let parent = f.env.mkdir("clones");
    let job = Job::start(&f.env, &parent, "clone", &["clone", &url, "c"]);
    let out = interrupt_while_one_pack_is_in(&f, &parent.join("c/.git/objects/pack"), &job);
    gate.abandon();
    assert_ne!(out.code, Some(0), "{out}");
    thread::sleep(Duration::from_millis(300));
    assert!(
        !parent.join("c").exists(),
        "an interrupted clone leaves no directory: {:?}\n{out}",
        crate::faults::files_under(&parent.join("c"))
    );
    let c = parent.join("c");
    f.env.clone(&url, &c);
    assert_eq!(f.env.rev(&c, "HEAD"), f.env.rev(&src, "main"));
    figures("ctrl_c_clone", &[("kills", 1)]);
}

/// What an atomic push of [`BRANCHES`] new branches left behind after `git hypha serve` was
/// SIGKILLed in the middle of its `update` and restarted on the same directory.
struct AfterServerKill {
    /// Branch objects of the push in storage right after the kill.
    stored_at_kill: usize,
    /// Branches of the push that exist after the restart (as `ls-remote` lists them).
    branches: usize,
    /// Branch objects of the push in storage after that listing: what Hypha's own reader,
    /// which reads the ref objects, sees.
    stored_after_listing: usize,
    /// Files under the stored `.git/refs/` that are not refs (docs/design.md §3 rule 3: Hypha
    /// advertises every file there as a ref).
    strays: Vec<String>,
}

const BRANCHES: usize = 400;

/// The server is killed as soon as the first ref file of the update appears on disk: the
/// update is then certainly under way (it writes one file per ref) and certainly not done.
/// The branches point at a new commit, so a pack upload precedes the update.
fn kill_server_mid_atomic_update(env: &mut TestEnv) -> AfterServerKill {
    let url = env.create("atomic");
    let src = env.init("src");
    env.commit(&src, "base");
    env.git(&src, &["push", "-q", &url, "main"]);
    let head = env.commit(&src, "for the branches");
    let mut refs = String::new();
    for i in 0..BRANCHES {
        refs.push_str(&format!("create refs/heads/b{i:04} {head}\n"));
    }
    env.cmd(&src, &["update-ref", "--stdin"]).stdin(refs).ok();
    let stored = env.stored_repo("atomic");
    // The harness starts every server with `--root <scratch>/server`.
    let root_arg = env.path("server");
    let server_pid = *pids_matching(&["git-hypha", "serve", &root_arg.to_string_lossy()])
        .first()
        .expect("server process");

    let job = Job::start(
        env,
        &src,
        "atomic",
        &["push", "--atomic", &url, "refs/heads/b*:refs/heads/b*"],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let n = std::fs::read_dir(stored.join("refs/heads"))
            .map(|d| d.count())
            .unwrap_or(0);
        if n > 1 {
            kill("KILL", &server_pid.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "the update started");
        thread::sleep(Duration::from_micros(200));
    }
    let out = job.wait(env);
    assert_ne!(out.code, Some(0), "the push saw its server die\n{out}");
    let stored_branches = || {
        crate::faults::files_under(&stored.join("refs/heads"))
            .into_iter()
            .filter(|(n, _)| n.starts_with('b') && !n.contains('/'))
            .count()
    };
    let stored_at_kill = stored_branches();
    let strays: Vec<String> = crate::faults::files_under(&stored.join("refs"))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.split('/').any(|part| part.starts_with('.')))
        .collect();

    // Restart on the same directory (a new secret: mint a token for it).
    let vars: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), env.home().into()),
    ];
    // Same `--root` and, with the suite on S3, the same key prefix.
    env.server = env.server.start_again(&root_arg, &vars);
    let token = env.mint(WS, "rw");
    let url = env.url("atomic");
    let count = |env: &TestEnv| {
        env.cmd(&src, &["ls-remote", &url])
            .token(&token)
            .ok()
            .stdout
            .lines()
            .filter(|l| l.contains("refs/heads/b"))
            .count()
    };
    let branches = count(env);
    let stored_after_listing = stored_branches();
    // Whatever is there points at complete objects.
    env.cmd(&env.path(""), &["clone", &url, "check"])
        .token(&token)
        .ok();
    env.fsck(&env.path("check"));
    // The retry completes the push.
    env.cmd(
        &src,
        &["push", "--atomic", &url, "refs/heads/b*:refs/heads/b*"],
    )
    .token(&token)
    .ok();
    assert_eq!(count(env), BRANCHES, "the retried push completes");
    AfterServerKill {
        stored_at_kill,
        branches,
        stored_after_listing,
        strays,
    }
}

/// `git hypha serve` SIGKILLed while it writes the refs of an atomic push: after a restart
/// every ref points at complete objects and the retried push succeeds.
#[test]
fn server_killed_mid_update_leaves_refs_pointing_at_complete_objects() {
    let mut env = TestEnv::new();
    let after = kill_server_mid_atomic_update(&mut env);
    eprintln!(
        "server killed mid-update: {} of {BRANCHES} branches after restart, strays {:?}",
        after.branches, after.strays
    );
    figures(
        "server_kill",
        &[("kills", 1), ("refs_at_kill", after.branches)],
    );
}

/// The stronger promise: an atomic push is all-or-nothing even when the server dies in the
/// middle of writing its refs (the commit record makes it so: a restarted server lists every
/// ref of the push, and finishes writing them at its next update), and a dead server leaves
/// no temporary files under `.git/refs/` (the local store stages writes outside every
/// repository).
#[test]
fn server_killed_mid_atomic_update_changes_all_refs_or_none() {
    let mut torn = 0;
    for _ in 0..3 {
        let mut env = TestEnv::new();
        let after = kill_server_mid_atomic_update(&mut env);
        assert!(
            after.branches == 0 || after.branches == BRANCHES,
            "{} of {BRANCHES} branches of an atomic push exist",
            after.branches
        );
        assert_eq!(
            after.stored_after_listing, after.branches,
            "once listed, the stored ref objects (Hypha's view) agree"
        );
        assert!(
            after.strays.is_empty(),
            "stray files under refs/: {:?}",
            after.strays
        );
        if after.stored_at_kill < BRANCHES {
            torn += 1;
        }
        eprintln!(
            "atomic push killed with {} of {BRANCHES} ref objects written; {} listed after \
             restart",
            after.stored_at_kill, after.branches
        );
    }
    // The kill comes as soon as the second ref object appears: the server can hardly have
    // written all 400 by then. If it did every time, this test proved nothing.
    assert!(torn > 0, "no kill landed in the middle of the ref writes");
    figures(
        "server_kill_atomic",
        &[("kills", 3), ("torn_at_kill", torn)],
    );
}

/// `git hypha serve` SIGKILLed while it completes a thin push: killed as soon as the pending
/// marker of the completed pack appears (the completion is writing it; no update has named
/// it). Nothing new is visible and the refs are unchanged; the pushed commit is still the
/// helper's to push; after a restart the retried push succeeds, and `git hypha gc` (grace 0)
/// removes the leftovers: the thin upload and the unnamed pack. Every stored pack stays
/// self-contained throughout.
#[test]
fn server_killed_mid_thin_completion_leaves_nothing_visible() {
    // `fix-thin` on a thin upload (an inline thin pack is stored nowhere before completion).
    let mut env = TestEnv::with_serve_args(&["--inline-max".to_owned(), "0".to_owned()]);
    let url = env.create("thin");
    let src = env.init("src");
    // About 0.7 MB: its base takes the completion some milliseconds to copy and store.
    let text = crate::thin::csv(20_000);
    std::fs::write(src.join("data.csv"), &text).expect("write");
    env.git(&src, &["add", "data.csv"]);
    env.git(&src, &["commit", "-q", "-m", "data"]);
    env.git(&src, &["push", "-q", &url, "main"]);
    let old = env.rev(&src, "main");
    std::fs::write(
        src.join("data.csv"),
        text.replacen("\n77,", "\n77,edited", 1),
    )
    .expect("edit");
    env.git(&src, &["commit", "-q", "-am", "edit"]);
    let new = env.rev(&src, "main");
    let stored = env.stored_repo("thin");
    let root_arg = env.path("server");
    let server_pid = *pids_matching(&["git-hypha", "serve", &root_arg.to_string_lossy()])
        .first()
        .expect("server process");

    let job = Job::start(&env, &src, "thin-push", &["push", &url, "main"]);
    let markers = stored.join("hypha-remote/uploads");
    let deadline = Instant::now() + WAIT;
    loop {
        let n = std::fs::read_dir(&markers).map(|d| d.count()).unwrap_or(0);
        if n > 0 {
            kill("KILL", &server_pid.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "the completion started");
        thread::sleep(Duration::from_micros(200));
    }
    let out = job.wait(&env);
    assert_ne!(out.code, Some(0), "the push saw its server die\n{out}");
    let thin_left = crate::faults::files_under(&stored.join("hypha-remote/thin"));
    assert!(
        !thin_left.is_empty(),
        "killed before the thin upload was deleted: mid-completion"
    );

    // Restart on the same store; gc's grace 0 lets it remove the leftovers now.
    let vars: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), env.home().into()),
        ("HYPHA_GC_GRACE_SECS".into(), "0".into()),
    ];
    env.server = env.server.start_again(&root_arg, &vars);
    let token = env.mint(WS, "rw");
    let url = env.url("thin");
    let listed = |env: &TestEnv| {
        env.cmd(&src, &["ls-remote", &url, "refs/heads/main"])
            .token(&token)
            .ok()
            .stdout
    };
    assert!(listed(&env).starts_with(&old), "refs unchanged");
    let check = env.path("check");
    env.cmd(&env.path(""), &["clone", "-q", &url, "check"])
        .token(&token)
        .ok();
    assert_eq!(env.rev(&check, "HEAD"), old);
    env.fsck(&check);
    assert!(crate::thin::assert_packs_self_contained(&env, "thin") >= 1);

    env.cmd(&src, &["push", &url, "main"]).token(&token).ok();
    assert!(listed(&env).starts_with(&new), "the retried push lands");
    env.cmd(&src, &["hypha", "gc", &url]).token(&token).ok();
    let thin_left = crate::faults::files_under(&stored.join("hypha-remote/thin"));
    assert!(
        thin_left.is_empty(),
        "gc removed the thin upload: {thin_left:?}"
    );
    let pending = crate::faults::files_under(&markers);
    assert!(
        pending.is_empty(),
        "gc removed the unnamed pack: {pending:?}"
    );
    crate::thin::assert_packs_self_contained(&env, "thin");
    let again = env.path("again");
    env.cmd(&env.path(""), &["clone", "-q", &url, "again"])
        .token(&token)
        .ok();
    assert_eq!(env.rev(&again, "HEAD"), new);
    env.fsck(&again);
    figures("thin_server_kill", &[("kills", 1)]);
}
