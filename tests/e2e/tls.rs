//! git's own HTTP settings (docs/design.md §5, `src/client/git_http.rs`): a server behind TLS
//! signed by an internal CA, one that asks for client certificates, and one reached only
//! through a forward proxy, with the settings users give git (`http.sslCAInfo`,
//! `GIT_SSL_CAINFO`, the URL-matched `http.<url>.*` form, `http.sslVerify=false`,
//! `GIT_SSL_NO_VERIFY`, `http.sslCert`/`http.sslKey`, `http.proxy`, `remote.<name>.proxy`).
//!
//! The TLS front and the proxy are `relay.py` (Python's ssl module, a real TLS stack); the
//! server's `--public-url` points at them, so presigned transfers take the same way as API
//! calls. Certificates come from the `openssl` command.

use crate::harness::{Out, TestEnv, WS};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `relay.py` running; killed on drop.
struct Relay {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Relay {
    /// Starts `relay.py <args>` and tells it the upstream, `host:port` of `upstream_url`.
    fn start(args: &[&str], log: PathBuf) -> Relay {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/relay.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .env("RELAY_LOG", &log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start relay.py");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("relay port");
        let port = line.trim().parse().expect("a port");
        Relay { child, port, log }
    }

    fn connect_to(&mut self, upstream_url: &str) {
        let hostport = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{hostport}").expect("tell the relay its upstream");
        stdin.flush().expect("flush");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA, and a certificate it signed for `name` (`server`: for IP 127.0.0.1; `client`:
/// for client authentication), as `<name>.pem` and `<name>.key` in `dir`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Hypha Test CA",
            ],
        ]
        .concat(),
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let extfile = format!("{name}.ext");
        std::fs::write(dir.join(&extfile), ext).expect("write ext");
        openssl(
            dir,
            &[
                &["req"][..],
                &ec[..],
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

/// A server whose only way in is `relay` (its public URL), with a repository `alias` created.
fn behind(
    relay_args: impl Fn(&Path) -> Vec<String>,
    public: impl Fn(u16) -> String,
) -> (TestEnv, Relay, PathBuf) {
    let certs = tempfile::tempdir().expect("tmp").keep();
    certificates(&certs);
    let args = relay_args(&certs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut relay = Relay::start(&args, certs.join("relay.log"));
    // Packs go through presigned transfers (not inline in `update`), so that the settings
    // are seen to apply to them too.
    let env = TestEnv::with_serve_args(&[
        "--public-url".to_owned(),
        public(relay.port),
        "--inline-max".to_owned(),
        "0".to_owned(),
    ]);
    relay.connect_to(env.server.url());
    (env, relay, certs)
}

fn tls_args(certs: &Path, client_ca: bool) -> Vec<String> {
    let mut args = vec![
        "tls".to_owned(),
        certs.join("server.pem").display().to_string(),
        certs.join("server.key").display().to_string(),
    ];
    if client_ca {
        args.push(certs.join("ca.pem").display().to_string());
    }
    args
}

fn fatal_lines(out: &Out) -> usize {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("fatal:"))
        .count()
}

#[test]
fn an_internal_ca_from_git_settings() {
    let (env, _relay, certs) = behind(
        |c| tls_args(c, false),
        |port| format!("https://127.0.0.1:{port}"),
    );
    env.create("tls");
    let base = format!("https://127.0.0.1:{}", _relay.port);
    let url = format!("hypha::{base}/{WS}/tls");
    let ca = certs.join("ca.pem").display().to_string();
    let work = env.init("work");
    env.commit(&work, "c1");

    // Without a setting the certificate is refused, in one line that says so.
    let out = env.cmd(&work, &["ls-remote", &url]).fails();
    assert!(out.stderr.contains("certificate"), "{out}");
    assert_eq!(fatal_lines(&out), 1, "{out}");

    // `git -c http.sslCAInfo`: API calls and the presigned pack upload both pass the TLS front.
    let out = env
        .cmd(
            &work,
            &["-c", &format!("http.sslCAInfo={ca}"), "push", &url, "main"],
        )
        .ok();
    assert!(out.stderr.contains("main -> main"), "{out}");

    // GIT_SSL_CAINFO: a clone (presigned downloads) with the same result.
    let clone = env.path("clone");
    let out = env
        .cmd(
            &env.path(""),
            &["clone", &url, clone.to_str().expect("utf-8")],
        )
        .env("GIT_SSL_CAINFO", &ca)
        .ok();
    assert!(out.success(), "{out}");
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&work, "HEAD"));
    env.fsck(&clone);

    // The URL-matched form applies to its URL only, as in git.
    let home_config = env.home().join(".gitconfig");
    let global = std::fs::read_to_string(&home_config).expect("global config");
    std::fs::write(
        &home_config,
        format!("{global}[http \"https://elsewhere.example\"]\n\tsslCAInfo = {ca}\n"),
    )
    .expect("write");
    let out = env.cmd(&work, &["ls-remote", &url]).fails();
    assert!(out.stderr.contains("certificate"), "{out}");
    std::fs::write(
        &home_config,
        format!("{global}[http \"{base}/{WS}\"]\n\tsslCAInfo = {ca}\n"),
    )
    .expect("write");
    let out = env.cmd(&work, &["ls-remote", &url]).ok();
    assert!(out.stdout.contains("refs/heads/main"), "{out}");
    std::fs::write(&home_config, &global).expect("write");

    // http.sslVerify=false and GIT_SSL_NO_VERIFY: accepted, with a warning.
    let out = env
        .cmd(&work, &["-c", "http.sslVerify=false", "ls-remote", &url])
        .ok();
    assert!(out.stdout.contains("refs/heads/main"), "{out}");
    assert!(out.stderr.contains("not checked"), "{out}");
    let out = env
        .cmd(&work, &["fetch", &url])
        .env("GIT_SSL_NO_VERIFY", "1")
        .ok();
    assert!(out.stderr.contains("not checked"), "{out}");

    // A CA file that does not exist: one line naming the setting and the file.
    let out = env
        .cmd(
            &work,
            &[
                "-c",
                "http.sslCAInfo=/nonexistent/ca.pem",
                "ls-remote",
                &url,
            ],
        )
        .fails();
    assert!(
        out.stderr.contains("http.sslCAInfo") && out.stderr.contains("/nonexistent/ca.pem"),
        "{out}"
    );
    assert_eq!(fatal_lines(&out), 1, "{out}");
}

#[test]
fn a_client_certificate_from_git_settings() {
    let (env, _relay, certs) = behind(
        |c| tls_args(c, true),
        |port| format!("https://127.0.0.1:{port}"),
    );
    env.create("mtls");
    let url = format!("hypha::https://127.0.0.1:{}/{WS}/mtls", _relay.port);
    let path = |f: &str| certs.join(f).display().to_string();
    let work = env.init("work");
    env.commit(&work, "c1");
    let ca = format!("http.sslCAInfo={}", path("ca.pem"));

    let out = env.cmd(&work, &["-c", &ca, "push", &url, "main"]).fails();
    assert_eq!(fatal_lines(&out), 1, "{out}");

    let cert = format!("http.sslCert={}", path("client.pem"));
    let key = format!("http.sslKey={}", path("client.key"));
    env.cmd(
        &work,
        &["-c", &ca, "-c", &cert, "-c", &key, "push", &url, "main"],
    )
    .ok();
    let clone = env.path("clone");
    env.cmd(
        &env.path(""),
        &["clone", &url, clone.to_str().expect("utf-8")],
    )
    .env("GIT_SSL_CAINFO", path("ca.pem"))
    .env("GIT_SSL_CERT", path("client.pem"))
    .env("GIT_SSL_KEY", path("client.key"))
    .ok();
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&work, "HEAD"));
}

#[test]
fn a_proxy_from_git_settings() {
    // The server's URL names a port nothing listens on: only the proxy reaches the server.
    let unreachable = "http://127.0.0.1:9";
    let (env, relay, _) = behind(
        |_| {
            vec![
                "proxy".to_owned(),
                "127.0.0.1:9".to_owned(),
                "alice:s3cret".to_owned(),
            ]
        },
        |_| unreachable.to_owned(),
    );
    env.create("proxied");
    let url = format!("hypha::{unreachable}/{WS}/proxied");
    let proxy = format!("http://alice:s3cret@127.0.0.1:{}", relay.port);
    let work = env.init("work");
    env.commit(&work, "c1");

    let out = env.cmd(&work, &["push", &url, "main"]).fails();
    assert_eq!(fatal_lines(&out), 1, "{out}");

    env.cmd(
        &work,
        &["-c", &format!("http.proxy={proxy}"), "push", &url, "main"],
    )
    .ok();
    assert!(
        relay.log().contains("POST http://127.0.0.1:9"),
        "{}",
        relay.log()
    );
    assert!(
        // The presigned upload too: to the server's store, or to S3's address on S3.
        relay.log().contains("PUT http://"),
        "presigned upload: {}",
        relay.log()
    );

    // remote.<name>.proxy wins over http.proxy, as in git.
    env.git(&work, &["remote", "add", "origin", &url]);
    env.git(&work, &["config", "http.proxy", "http://127.0.0.1:9"]);
    env.git(&work, &["config", "remote.origin.proxy", &proxy]);
    let out = env.cmd(&work, &["ls-remote", "origin"]).ok();
    assert!(out.stdout.contains("refs/heads/main"), "{out}");

    // Wrong proxy credentials: refused in one line.
    let bad = format!("http://alice:wrong@127.0.0.1:{}", relay.port);
    env.git(&work, &["config", "remote.origin.proxy", &bad]);
    let out = env.cmd(&work, &["ls-remote", "origin"]).fails();
    assert_eq!(fatal_lines(&out), 1, "{out}");
    assert!(relay.log().contains("refused"), "{}", relay.log());
}
