//! Real servers for adapter tests: a program started on a free loopback
//! port with its own data directory and log, killed on drop. A program that
//! is not on `PATH` is skipped with a printed reason, unless the variable
//! named by the caller (set by `.ci/run`) makes that a failure.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free loopback port for a server, below the kernel's ephemeral range
/// and never the same one twice in this process.
///
/// A port the kernel hands out for `bind(0)` is one it also gives outgoing
/// connections. While a server is down between [`ServerProcess::kill`] and
/// [`ServerProcess::restart`], any client connection of the test process
/// could take its port as a source port; one reconnecting to that very port
/// can even connect a socket to itself. The restarted server then cannot
/// bind, and a restart of Cassandra in CI waited out its window that way.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const FLOOR: u32 = 10_000;
    let ceiling = ephemeral_floor().max(FLOOR + 1_000);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32)
        | 1;
    for _ in 0..10_000 {
        // xorshift64: spread over the range, so that two processes started
        // together rarely try the same ports.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = (FLOOR + (x % u64::from(ceiling - FLOOR)) as u32) as u16;
        if !given.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {FLOOR}..{ceiling}")
}

/// The lowest port the kernel gives outgoing connections (32768 when it
/// does not say).
fn ephemeral_floor() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A running server process.
pub struct ServerProcess {
    /// The loopback address it listens on (127.0.0.1 unless launched with
    /// [`ServerProcess::launch_on`]).
    pub host: Ipv4Addr,
    pub port: u16,
    program: String,
    args: Vec<String>,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
    listen_within: Duration,
}

fn spawn(program: &str, args: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("log: {e}"));
    // A piped stdin that stays open while the test process lives: some
    // servers exit when it closes. A process group of its own: launchers
    // (noida-db's Python script) run the real server as a child, which must
    // die with it. And a watchdog shell leading that group: when stdin
    // closes, because the test process ended without dropping the server
    // (one held in a `static` never is), it kills the whole group, so no
    // server outlives its tests.
    Command::new("sh")
        .args([
            "-c",
            r#"exec 3<&0; "$@" 0<&3 3<&- & exec 3<&-; cat >/dev/null; kill -TERM 0"#,
            "sh",
            program,
        ])
        .args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"))
}

impl ServerProcess {
    /// Starts `program` with the arguments `args` gives for (port, data
    /// directory) and waits until it listens; `None` (having said why) when
    /// it is not installed and `require_var` is unset.
    pub fn start(
        program: &str,
        require_var: &str,
        args: impl FnOnce(u16, &Path) -> Vec<String>,
    ) -> Option<ServerProcess> {
        if !installed(program) {
            assert!(
                std::env::var_os(require_var).is_none(),
                "{require_var} is set but `{program}` is not on PATH"
            );
            eprintln!("skipped: `{program}` is not on PATH (see .ci/run)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let args = args(port, &dir.path().join("data"));
        Some(Self::launch(
            dir,
            port,
            program,
            args,
            Duration::from_secs(30),
        ))
    }

    /// Starts `program args` in `dir` (its log goes to `server.log` there)
    /// and waits up to `listen_within` until it listens on `port`. For
    /// servers whose configuration the caller writes into `dir` first.
    pub fn launch(
        dir: tempfile::TempDir,
        port: u16,
        program: &str,
        args: Vec<String>,
        listen_within: Duration,
    ) -> ServerProcess {
        Self::launch_on(dir, Ipv4Addr::LOCALHOST, port, program, args, listen_within)
    }

    /// [`ServerProcess::launch`] for a server listening on another loopback
    /// address (127.0.0.2, ...: the nodes of a cluster on one machine share
    /// their ports, each on an address of its own, as ccm runs them).
    pub fn launch_on(
        dir: tempfile::TempDir,
        host: Ipv4Addr,
        port: u16,
        program: &str,
        args: Vec<String>,
        listen_within: Duration,
    ) -> ServerProcess {
        assert!(host.is_loopback(), "{host} is not a loopback address");
        let log = dir.path().join("server.log");
        let child = spawn(program, &args, &log);
        let server = ServerProcess {
            host,
            port,
            program: program.to_owned(),
            args,
            child,
            log,
            dir,
            listen_within,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + self.listen_within;
        while TcpStream::connect((self.host, self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {}:{}:\n{}",
                self.program,
                self.host,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and every process it started (SIGKILL to its
    /// process group); its data directory stays.
    pub fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            // Already reaped: its pid may belong to someone else by now.
            return;
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Until the port is free, a restart could not bind it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((self.host, self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again, on the same port over the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.program, &self.args, &self.log);
        self.wait_until_listening();
    }

    /// The process id of the server's process group leader (the watchdog
    /// shell; the server runs below it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's own directory (its data lives in `data/` below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
