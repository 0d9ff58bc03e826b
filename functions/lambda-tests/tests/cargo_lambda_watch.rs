//! Each Lambda binary under `cargo lambda watch` (the Lambda runtime API
//! emulator), invoked with the committed fixtures in its `fixtures/` folder:
//! the function URL requests of command and query, real MSK batches for
//! domain, projector and payment, and the payment function's schedule.
//!
//! All five share one embedded data directory, so the query function reads
//! what the projector wrote. Needs `cargo lambda` on PATH: `.ci/run`
//! installs it and sets `REQUIRE_CARGO_LAMBDA=1`, which turns a
//! missing tool into a failure; elsewhere the test says why it skips.

use serde_json::{json, Value};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Generous: the function is already built (see `build`), but CI machines are shared.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(180);

/// From the package directory `cargo test` names when it runs the test:
/// the one compiled in goes stale when a shared target directory is reused
/// from another checkout (cargo does not rebuild an unchanged test for it).
fn functions_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("functions/")
        .to_path_buf()
}

/// Every test here runs `cargo build` and `cargo run` on the one target
/// directory, and each function builds with its own features: run side by
/// side, one test's builds hold cargo's artifact lock while the other's
/// `cargo lambda watch` waits on it past `INVOKE_TIMEOUT`. Taken first
/// thing by each test, so they run one after another.
fn one_cargo_at_a_time() -> MutexGuard<'static, ()> {
    static CARGO: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one still needs it.
    CARGO
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cargo_lambda_available() -> bool {
    Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `cargo lambda watch` for one function, in its own process group so the
/// whole tree (watch, cargo run, the function) goes on drop.
struct Watch {
    child: Child,
    port: u16,
    function: &'static str,
    log: PathBuf,
}

impl Watch {
    fn start(function: &'static str, data_dir: &Path, logs: &Path) -> Watch {
        Watch::start_with(function, data_dir, logs, &[])
    }

    /// With `SALESTRACK_*` settings besides the data directory.
    fn start_with(
        function: &'static str,
        data_dir: &Path,
        logs: &Path,
        env: &[(&str, &str)],
    ) -> Watch {
        use std::os::unix::process::CommandExt;
        build(function);
        let port = free_port();
        let log = logs.join(format!("{function}-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new("cargo")
            .current_dir(functions_dir().join(function))
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .arg("--env-var")
            .arg(format!("SALESTRACK_DATA_DIR={}", data_dir.display()))
            .args(
                env.iter()
                    .flat_map(|(k, v)| ["--env-var".to_owned(), format!("{k}={v}")]),
            )
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch");
        let watch = Watch {
            child,
            port,
            function,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{}",
                watch.failure("never listened")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        watch
    }

    fn failure(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "salestrack-{}: {what}\n--- cargo lambda watch log ---\n{log}",
            self.function
        )
    }

    /// `cargo lambda invoke --data-file` with one of the function's fixtures.
    fn invoke(&self, fixture: &str) -> Value {
        let file = functions_dir()
            .join(self.function)
            .join("fixtures")
            .join(fixture);
        let mut child = Command::new("cargo")
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .arg("--invoke-port")
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&file)
            .arg(format!("salestrack-{}", self.function))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo lambda invoke");
        // Bounded: a hung emulator fails the test with its log instead of blocking CI.
        let deadline = Instant::now() + INVOKE_TIMEOUT;
        while child.try_wait().expect("invoke status").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{}",
                    self.failure(&format!("invoke {fixture} took over {INVOKE_TIMEOUT:?}"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("invoke output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            self.failure(&format!(
                "invoke {fixture} failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{}", self.failure(&format!("{e}: {stdout}"))))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Builds the function the way the emulator's `cargo run` will (from its
/// directory, so with the same features), so invoking it does not wait for
/// a compile and a build failure shows as one.
fn build(function: &str) {
    let status = Command::new("cargo")
        .current_dir(functions_dir().join(function))
        .args(["build", "--quiet", "--bin"])
        .arg(format!("salestrack-{function}"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "salestrack-{function} does not build");
}

/// One start of a function with `cargo run` (from its directory, so with
/// its own features, as the emulator runs it) in `data_dir`, with no Lambda
/// runtime to poll: it initialises, logs so, and exits.
fn run_without_runtime(function: &str, data_dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("cargo")
        .current_dir(functions_dir().join(function))
        .args(["run", "--quiet", "--bin"])
        .arg(format!("salestrack-{function}"))
        .env("SALESTRACK_DATA_DIR", data_dir)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .envs(env.iter().copied())
        .output()
        .expect("cargo run")
}

/// Everything a run printed, standard output then standard error.
fn printed(run: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

/// The records of the dead-letter topic in an embedded bus file, each as
/// the text of its headers (read with Python's sqlite3, none of the bus's
/// own code).
fn dead_letters(bus: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             for (h,) in db.execute(\"SELECT headers FROM records WHERE topic = 'sales.dead-letter'\"):\n\
             \x20   print(bytes(h).decode('utf-8', 'replace').replace('\\n', ' '))",
        ])
        .arg(bus)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Everything `function` wrote to its logs so far.
fn logged(logs: &Path, function: &str) -> String {
    std::fs::read_dir(logs)
        .expect("log dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{function}-"))
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// A function URL response's status and JSON body.
fn http(response: &Value) -> (u64, Value) {
    let status = response["statusCode"].as_u64().expect("statusCode");
    let body = response["body"].as_str().expect("body");
    (status, serde_json::from_str(body).expect("JSON body"))
}

/// Each function, started on embedded defaults in a data directory of its
/// own, opens the stores of the ports it uses and no other (docs/deployment.md's table
/// of ports): a store opened for nothing costs init time and, on Lambda,
/// a session to an engine.
#[test]
fn each_function_opens_only_the_stores_of_its_ports() {
    let _cargo = one_cargo_at_a_time();
    let expected: [(&str, &[&str]); 5] = [
        // The data keys seal what enters; an erasure reads the user's carts.
        ("command", &["bus", "keys", "read"]),
        ("domain", &["bus", "events"]),
        ("projector", &["bus", "events", "read"]),
        ("query", &["events", "keys", "read"]),
        ("payment", &["bus", "keys", "payments", "read"]),
    ];
    for (function, stores) in expected {
        let data = tempfile::tempdir().expect("data dir");
        // The template's setting: the projector publishes no notices.
        let run = run_without_runtime(
            function,
            data.path(),
            &[("SALESTRACK_PROJECTIONS_TOPIC", "")],
        );
        let said = printed(&run);
        assert!(said.contains("initialised"), "{function}: {said}");
        let mut opened: Vec<String> = std::fs::read_dir(data.path())
            .expect("data dir")
            .filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".sqlite").map(str::to_owned)
            })
            .collect();
        opened.sort();
        assert_eq!(opened, stores, "the stores {function} opened");
    }
}

#[test]
fn every_lambda_binary_answers_its_fixtures_under_cargo_lambda_watch() {
    let _cargo = one_cargo_at_a_time();
    if !cargo_lambda_available() {
        assert!(
            std::env::var_os("REQUIRE_CARGO_LAMBDA").is_none(),
            "REQUIRE_CARGO_LAMBDA is set but `cargo lambda` is not installed"
        );
        eprintln!("skipped: `cargo lambda` is not installed (pip install cargo-lambda)");
        return;
    }
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");

    let command = Watch::start("command", data.path(), logs.path());
    let (status, accepted) = http(&command.invoke("post-order.json"));
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["cart_id"], "6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c",
        "{accepted}"
    );
    let (status, refused) = http(&command.invoke("post-order-wrong-content-type.json"));
    assert_eq!(
        (status, refused["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, ready) = http(&command.invoke("get-health-ready.json"));
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready["bus"]["status"], "ok",
        "the command function checks its bus: {ready}"
    );
    drop(command);

    let domain = Watch::start("domain", data.path(), logs.path());
    assert_eq!(
        domain.invoke("batch-with-one-poison.json"),
        json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "sales.commands-0", "offset": 202}}
        ]}),
        "the function dead-lettered the poison at 201 itself, and names the \
         record after it: the event source mapping (unlimited retries) moves on"
    );
    drop(domain);
    // The letter is on the dead-letter topic of the function's bus, and the
    // invocation logged its embedded metric.
    let letters = dead_letters(&data.path().join("bus.sqlite"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].contains("salestrack-dlq-source-offset") && letters[0].contains("201"),
        "{letters:?}"
    );
    let logged = logged(logs.path(), "domain");
    assert!(
        logged.contains("\"DeadLettered\":1") && logged.contains("RecordWaitSeconds"),
        "no embedded metric line in the domain's log: {logged}"
    );

    let projector = Watch::start("projector", data.path(), logs.path());
    assert_eq!(
        projector.invoke("placed-and-outcome.json"),
        json!({"batchItemFailures": []})
    );
    drop(projector);

    let payment = Watch::start("payment", data.path(), logs.path());
    assert_eq!(
        payment.invoke("charge.json"),
        json!({"batchItemFailures": []}),
        "the mock gateway charges the fixture's checkout"
    );
    assert_eq!(
        payment.invoke("schedule.json"),
        json!({"expired": 0}),
        "the schedule runs the saga's timer: no checkout is past its deadline"
    );
    drop(payment);

    let query = Watch::start("query", data.path(), logs.path());
    let (status, command_status) = http(&query.invoke("get-command-status.json"));
    assert_eq!(status, 200, "{command_status}");
    assert_eq!(command_status["status"], "applied", "{command_status}");
    let (status, summary) = http(&query.invoke("get-cart-summary.json"));
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["subtotal"], "389.98", "{summary}");
    let (status, ready) = http(&query.invoke("get-health-ready.json"));
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready["read_store"]["status"], "ok",
        "the query function checks its read store: {ready}"
    );
    drop(query);

    // Response streaming on the function URL: the live stream sends the
    // cart, then ends at its lifetime, before the function's timeout.
    let streaming = Watch::start_with(
        "query",
        data.path(),
        logs.path(),
        &[
            ("SALESTRACK_LAMBDA_STREAMING", "true"),
            ("SALESTRACK_LIVE_MAX_LIFETIME_S", "2"),
        ],
    );
    let started = Instant::now();
    let stream = streaming.function_url("/carts/6f1c1f2e-3c7d-4a8e-9b3a-2d5e6f7a8b9c/live");
    assert!(
        stream.starts_with("HTTP/1.1 200"),
        "{}",
        streaming.failure(&stream)
    );
    assert!(
        stream.contains("content-type: text/event-stream"),
        "{stream}"
    );
    assert!(
        stream.contains("lambda-runtime-function-response-mode: streaming"),
        "the answer streams: {stream}"
    );
    let cart = stream.find("event: cart").expect("a cart event");
    let end = stream.find("event: end").expect("an end event");
    assert!(cart < end, "{stream}");
    assert!(
        stream.contains(r#"data: {"reason":"lifetime"}"#),
        "{stream}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the stream lasted its lifetime"
    );
}

impl Watch {
    /// `GET path` on the emulated function URL, with the whole answer as
    /// text (the connection closes when the function is done). Bounded.
    fn function_url(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut socket =
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect to the emulator");
        socket
            .set_read_timeout(Some(INVOKE_TIMEOUT))
            .expect("timeout");
        write!(
            socket,
            "GET /lambda-url/salestrack-{}{path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
            self.function
        )
        .expect("request");
        let mut answer = Vec::new();
        socket
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{}", self.failure(&format!("reading the answer: {e}"))));
        String::from_utf8_lossy(&answer).into_owned()
    }
}
