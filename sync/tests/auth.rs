//! Redis AUTH and TLS, against a real redis-server: the publisher (the
//! writer's side) and the subscriber (every reader's sync thread) work with a
//! password, with least-privilege ACL users, and over TLS (`rediss://`); a
//! wrong or missing password fails clearly, is retried, and never shows up
//! in the logs.
//!
//! The harness's readiness probe PINGs without credentials, so each server
//! is started open and then locked (`ACL SETUSER`, `CONFIG SET requirepass`)
//! over the harness's own connection before anything else connects.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use heavyread_sync::testing::{free_port, RedisServer};
use heavyread_sync::{Publisher, Store, Subscriber, SyncConfig};

const PASSWORD: &str = "default-Pa55word";
const WRITER_PW: &str = "writer-Pa55word";
const READER_PW: &str = "reader-Pa55word";

/// Everything the tests' tracing output says, to check messages and that no
/// password is ever written.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let _ = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
        logs
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Two ACL users, then a password on the default user. After this the
/// harness's own connections are refused (NOAUTH).
fn lock_down(redis: &RedisServer) {
    let mut c = redis.connection();
    // The writer: its keys and channel, the function library, no admin commands.
    let writer: &[&str] = &[
        "hr-writer",
        "reset",
        "on",
        &format!(">{WRITER_PW}"),
        "~{hr}:*",
        "&{hr}:changes",
        "+@read",
        "+@write",
        "+@scripting",
        "+@connection",
        "+@transaction",
        "+time",
        "+publish",
        "-@dangerous",
        "-function|flush",
        "-function|delete",
        "-function|restore",
    ];
    // A reader: read its keys, subscribe to its channel, nothing else.
    let reader: &[&str] = &[
        "hr-reader",
        "reset",
        "on",
        &format!(">{READER_PW}"),
        "~{hr}:*",
        "&{hr}:changes",
        "+@read",
        "+@connection",
        "+@transaction",
        "+subscribe",
        "+unsubscribe",
        "-@dangerous",
    ];
    for user in [writer, reader] {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .query(&mut c)
            .expect("ACL SETUSER");
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query(&mut c)
        .expect("CONFIG SET requirepass");
    assert!(
        redis::cmd("PING").query::<String>(&mut c).is_ok(),
        "an authenticated connection stays authenticated"
    );
    let err = redis::cmd("PING")
        .query::<String>(&mut redis.connection())
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

/// An ACL refusal, as redis-rs words it (`NoPerm: this user has no permissions ...`).
fn noperm(message: &str) -> bool {
    message.to_ascii_lowercase().contains("noperm")
}

/// `redis://user:password@127.0.0.1:port` (scheme and port given).
fn url(scheme: &str, user: &str, password: &str, port: u16, fragment: &str) -> String {
    format!("{scheme}://{user}:{password}@127.0.0.1:{port}/{fragment}")
}

fn sync_config(url: &str) -> SyncConfig {
    let mut c = SyncConfig::new(url);
    c.ping_interval = Duration::from_millis(200);
    c.ping_timeout = Duration::from_millis(1000);
    c.command_timeout = Duration::from_secs(2);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

fn publisher(rt: &tokio::runtime::Runtime, url: &str) -> Publisher {
    let _enter = rt.enter();
    Publisher::new(url, "hr", 10_000, Duration::from_secs(2)).expect("publisher")
}

/// Waits until the subscriber's store holds `id` at `version`.
fn wait_for(sub: &Subscriber, id: &str, version: u64) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let store = sub.store();
        let g = store.guard();
        let now = store.get(id, &g).map(|e| e.version());
        if now == Some(version) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{id} at {now:?}, wanted {version}; status {:?}",
            sub.status().snapshot()
        );
        drop(g);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes through `publisher` and checks the subscriber bootstraps, then
/// follows live changes, then catches up after its connections are killed.
fn publish_and_follow(
    rt: &tokio::runtime::Runtime,
    p: &Publisher,
    sync_url: &str,
    admin_url: &str,
) {
    rt.block_on(p.load_library()).expect("load the library");
    let first = rt.block_on(p.put("a", br#"{"n":1}"#)).expect("put a");
    let (store, writer) = Store::new();
    let sub = Subscriber::spawn(sync_config(sync_url), writer).expect("spawn subscriber");
    wait_for(&sub, "a", first.version);
    // The bootstrap marks itself done just after it filled the store.
    let end = Instant::now() + Duration::from_secs(10);
    while !sub.status().snapshot().bootstrapped {
        assert!(Instant::now() < end, "bootstrapped never set");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Live.
    for i in 0..20 {
        let w = rt
            .block_on(p.put("b", format!("{{\"n\":{i}}}").as_bytes()))
            .expect("put b");
        wait_for(&sub, "b", w.version);
    }
    // Reconnect with the same credentials: kill every connection of the sync
    // thread (as an admin), write meanwhile, and see it catch up.
    let mut admin = redis::Client::open(admin_url)
        .expect("admin url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("admin connection");
    let reconnects = sub
        .status()
        .counters
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed);
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("SKIPME")
        .arg("yes")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut admin)
        .expect("CLIENT KILL");
    assert!(killed >= 1, "no subscription to kill");
    let w = rt.block_on(p.put("c", b"{}")).expect("put c");
    wait_for(&sub, "c", w.version);
    let end = Instant::now() + Duration::from_secs(10);
    while sub
        .status()
        .counters
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed)
        == reconnects
    {
        assert!(Instant::now() < end, "the sync thread never reconnected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let w = rt
        .block_on(p.put("d", b"{}"))
        .expect("put d after the reconnect");
    wait_for(&sub, "d", w.version);
    assert!(rt.block_on(p.delete("a")).expect("delete a").is_some());
    let end = Instant::now() + Duration::from_secs(10);
    while {
        let g = store.guard();
        store.get("a", &g).is_some()
    } {
        assert!(Instant::now() < end, "delete not applied");
        std::thread::sleep(Duration::from_millis(5));
    }
    sub.shutdown();
}

#[test]
fn password_auth_works_for_the_publisher_and_the_subscriber() {
    let _ = logs();
    let redis = RedisServer::start();
    lock_down(&redis);
    let rt = runtime();
    let url = url("redis", "", PASSWORD, redis.port(), "");
    let p = publisher(&rt, &url);
    publish_and_follow(&rt, &p, &url, &url);
    assert!(!logged().contains(PASSWORD), "a password was logged");
}

#[test]
fn least_privilege_acl_users_work_and_stay_in_their_lane() {
    let _ = logs();
    let redis = RedisServer::start();
    lock_down(&redis);
    let rt = runtime();
    let admin = url("redis", "default", PASSWORD, redis.port(), "");
    let writer_url = url("redis", "hr-writer", WRITER_PW, redis.port(), "");
    let reader_url = url("redis", "hr-reader", READER_PW, redis.port(), "");
    let p = publisher(&rt, &writer_url);
    publish_and_follow(&rt, &p, &reader_url, &admin);

    // The reader's user can read and subscribe, but not write or call the library.
    let mut reader = redis::Client::open(reader_url.as_str())
        .unwrap()
        .get_connection()
        .expect("reader connection");
    let n: usize = redis::cmd("HLEN")
        .arg("{hr}:posts")
        .query(&mut reader)
        .unwrap();
    assert!(n >= 3);
    for cmd in [
        redis::cmd("HSET")
            .arg("{hr}:posts")
            .arg("x")
            .arg("y")
            .clone(),
        redis::cmd("DEL").arg("{hr}:posts").clone(),
        redis::cmd("PUBLISH")
            .arg("{hr}:changes")
            .arg("forged")
            .clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("CONFIG").arg("GET").arg("requirepass").clone(),
    ] {
        let err = cmd.query::<redis::Value>(&mut reader).unwrap_err();
        assert!(noperm(&err.to_string()), "reader: {err}");
    }
    let reader_publisher = publisher(&rt, &reader_url);
    let err = rt.block_on(reader_publisher.put("x", b"{}")).unwrap_err();
    assert!(noperm(&err.to_string()), "reader publishing: {err}");
    // The writer's user stays on its keys and away from admin commands.
    let mut writer = redis::Client::open(writer_url.as_str())
        .unwrap()
        .get_connection()
        .expect("writer connection");
    for cmd in [
        redis::cmd("GET").arg("other:key").clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("x")
            .clone(),
        redis::cmd("ACL").arg("LIST").clone(),
        redis::cmd("FUNCTION").arg("FLUSH").clone(),
    ] {
        let err = cmd.query::<redis::Value>(&mut writer).unwrap_err();
        assert!(noperm(&err.to_string()), "writer: {err}");
    }
    let log = logged();
    for secret in [PASSWORD, WRITER_PW, READER_PW] {
        assert!(!log.contains(secret), "a password was logged");
    }
}

#[test]
fn wrong_or_missing_credentials_fail_clearly_and_are_retried() {
    let _ = logs();
    let redis = RedisServer::start();
    lock_down(&redis);
    let rt = runtime();
    let port = redis.port();
    let wrong = "Wr0ng-passw0rd";
    for (what, bad_url) in [
        ("wrong password", url("redis", "", wrong, port, "")),
        (
            "wrong password of an ACL user",
            url("redis", "hr-writer", wrong, port, ""),
        ),
        ("unknown user", url("redis", "nobody", wrong, port, "")),
        ("no password", format!("redis://127.0.0.1:{port}")),
    ] {
        // The publisher: its first command fails, saying why.
        let p = publisher(&rt, &bad_url);
        let err = rt.block_on(p.load_library()).unwrap_err();
        let msg = err.to_string();
        assert!(
            ["WRONGPASS", "NOAUTH", "uthentication"]
                .iter()
                .any(|m| msg.contains(m)),
            "{what}: publisher error {msg:?}"
        );
        assert!(!msg.contains(wrong), "{what}: the password is in the error");
        let err = rt.block_on(p.put("x", b"{}")).unwrap_err();
        assert!(!err.to_string().is_empty());

        // The subscriber: never connected or ready, keeps retrying, and logs why.
        let (_store, writer) = Store::new();
        let sub = Subscriber::spawn(sync_config(&bad_url), writer).expect("spawn");
        wait_retries(&sub, 3, what);
        let s = sub.status().snapshot();
        assert!(!s.connected && !s.bootstrapped, "{what}: {s:?}");
        assert!(!sub.status().is_ready(Duration::from_secs(60)));
        sub.shutdown();
    }
    let log = logged();
    assert!(
        log.contains("redis sync session ended")
            && (log.contains("WRONGPASS") || log.contains("uthentication")),
        "the sync thread's log does not say why:\n{log}"
    );
    assert!(!log.contains(wrong), "the wrong password was logged");
    assert!(!log.contains(PASSWORD), "the password was logged");
    // Nothing was written with bad credentials.
    let good = url("redis", "", PASSWORD, port, "");
    let p = publisher(&rt, &good);
    assert_eq!(rt.block_on(p.version()).unwrap(), 0);
}

/// Waits until `sub` has retried `n` times; panics if its thread died.
fn wait_retries(sub: &Subscriber, n: u64, what: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while sub
        .status()
        .counters
        .reconnects
        .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        assert!(Instant::now() < end, "{what}: no retries");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression: redis-rs 1.8's `PubSub::subscribe` ignores an error reply, and
/// a MULTI refused with NOAUTH made redis-rs underflow an index and panic,
/// which killed the sync thread for good. The sync thread now checks the
/// SUBSCRIBE confirmation itself, reads its state without MULTI, and survives
/// a panicking session.
#[test]
fn a_subscriber_without_a_password_retries_instead_of_panicking() {
    let _ = logs();
    let redis = RedisServer::start();
    lock_down(&redis);
    let (_store, writer) = Store::new();
    let sub = Subscriber::spawn(
        sync_config(&format!("redis://127.0.0.1:{}", redis.port())),
        writer,
    )
    .expect("spawn");
    wait_retries(&sub, 3, "no password");
    let s = sub.status().snapshot();
    assert!(!s.connected && !s.bootstrapped, "{s:?}");
    let log = logged();
    assert!(
        log.contains("NOAUTH"),
        "the sync thread's log does not say why:\n{log}"
    );
    sub.shutdown();
}

/// Regression: a reader whose ACL user may read the keys but not subscribe
/// to the channel. redis-rs 1.8's `PubSub::subscribe` returns Ok on the
/// NOPERM reply, so the sync thread used to bootstrap and report ready while
/// no change ever reached it.
#[test]
fn a_reader_user_without_the_channel_permission_is_never_ready() {
    let _ = logs();
    let redis = RedisServer::start();
    {
        let mut c = redis.connection();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&[
                "hr-nochannel",
                "reset",
                "on",
                ">nochannel-pw",
                "~{hr}:*",
                "resetchannels",
                "+@read",
                "+@connection",
                "+@transaction",
                "+subscribe",
            ])
            .query(&mut c)
            .expect("ACL SETUSER");
    }
    let rt = runtime();
    let p = publisher(&rt, &redis.url());
    rt.block_on(p.load_library()).unwrap();
    rt.block_on(p.put("a", b"{}")).unwrap();
    let (_store, writer) = Store::new();
    let sub = Subscriber::spawn(
        sync_config(&url(
            "redis",
            "hr-nochannel",
            "nochannel-pw",
            redis.port(),
            "",
        )),
        writer,
    )
    .expect("spawn");
    // The subscription is refused, and refused again on each retry; the
    // reader is not ready at any point meanwhile.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            !sub.status().is_ready(Duration::from_secs(5)),
            "ready without a subscription: {:?}",
            sub.status().snapshot()
        );
        let reconnects = sub.status().counters.reconnects.load(Ordering::Relaxed);
        if reconnects >= 2 && logged().contains("NoPerm") {
            break;
        }
        assert!(
            Instant::now() < end,
            "{reconnects} reconnects in 20 s; log:\n{}",
            logged()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rt.block_on(p.put("a", b"{\"v\":2}")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sub.status().is_ready(Duration::from_secs(5)));
    sub.shutdown();
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| e.to_string())?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=heavyread test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ])?;
    Ok(())
}

#[test]
#[allow(clippy::print_stderr)] // Says why the TLS half is skipped, where it is.
fn tls_with_a_password_works_when_redis_server_has_tls() {
    let _ = logs();
    let skip =
        |why: &str| eprintln!("SKIPPED tls_with_a_password_works_when_redis_server_has_tls: {why}");
    // redis-rs refuses rediss:// URLs when built without a TLS feature.
    if let Err(e) = redis::Client::open("rediss://127.0.0.1:1/#insecure") {
        panic!("redis-rs is built without TLS ({e}): the workspace enables tls-rustls");
    }
    let certs = tempfile::tempdir().expect("temp dir");
    if let Err(e) = make_certs(certs.path()) {
        return skip(&format!(
            "cannot make certificates with the openssl CLI: {e}"
        ));
    }
    let tls_port = free_port();
    let path = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let (crt, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let tls_port_s = tls_port.to_string();
    let args = [
        "--tls-port",
        tls_port_s.as_str(),
        "--tls-cert-file",
        crt.as_str(),
        "--tls-key-file",
        key.as_str(),
        "--tls-ca-cert-file",
        ca.as_str(),
        "--tls-auth-clients",
        "no",
    ];
    // A redis-server built without TLS exits at start on these flags.
    let started = std::panic::catch_unwind(|| RedisServer::start_with(true, &args));
    let Ok(redis) = started else {
        return skip("this redis-server does not accept --tls-port (built without TLS)");
    };
    lock_down(&redis);
    let rt = runtime();
    // Verified against our CA? redis-rs takes roots from the system store
    // (rustls-native-certs); `#insecure` skips verification, for test
    // certificates only.
    let tls = url("rediss", "", PASSWORD, tls_port, "#insecure");
    let p = publisher(&rt, &tls);
    publish_and_follow(&rt, &p, &tls, &tls);

    // Verification is on by default: an unknown CA is refused.
    let verified = url("rediss", "", PASSWORD, tls_port, "");
    let strict = publisher(&rt, &verified);
    let err = rt.block_on(strict.ping()).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "an unknown CA must be refused: {err}"
    );
    // Plain text to the TLS port gets nowhere.
    let plain = url("redis", "", PASSWORD, tls_port, "");
    let p = publisher(&rt, &plain);
    assert!(rt.block_on(p.ping()).is_err());
    assert!(!logged().contains(PASSWORD), "a password was logged");
}
