//! Service binaries run as processes, as an operator runs them: for what only a process
//! shows — its JSON log lines on stdout, its answer to SIGTERM.
//!
//! The binaries are those of `target/<profile>/` beside the test executable. `cargo test`
//! builds a package's binaries only for that package's own tests, so the first use here runs
//! `cargo build --bins` for the service packages (a no-op when they are current): a test never
//! runs a stale binary.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The packages whose binaries tests run.
const PACKAGES: [&str; 5] = [
    "command-service",
    "query-service",
    "projector",
    "realtime",
    "meetings",
];

/// The path of the workspace binary `name`, built and current.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test knows its executable");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target/<profile>");
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "--bins", "--quiet", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // What cargo set for this test, not for a build: a build script that watches one of
        // these (ring watches CARGO_MANIFEST_DIR) would otherwise see it change and rebuild
        // everything above it, here and again in the next plain `cargo` run.
        for (key, _) in std::env::vars() {
            if key == "CARGO_MANIFEST_DIR"
                || key == "CARGO_MANIFEST_PATH"
                || key == "CARGO_CRATE_NAME"
                || key == "CARGO_PRIMARY_PACKAGE"
                || key == "CARGO_TARGET_TMPDIR"
                || key == "CARGO_RUSTC_CURRENT_DIR"
                || key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
            {
                build.env_remove(key);
            }
        }
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        for package in PACKAGES {
            build.args(["-p", package]);
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the service binaries failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running service binary whose stdout (its JSON logs) is collected line by line. Killed
/// when dropped, if still running.
pub struct ServiceProcess {
    pub name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// `http://<address>` from the service's "listening" line.
    pub base: String,
}

impl ServiceProcess {
    /// Starts `name` with `env` (plus JSON logs and port 0) and waits for it to listen.
    pub fn start(name: &'static str, env: &[(&str, &str)]) -> Self {
        Self::start_with(name, &[], env)
    }

    /// [`Self::start`] with command-line arguments (`meetings serve`).
    pub fn start_with(name: &'static str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary(name));
        command.args(args);
        // None of the developer's own settings may leak in.
        for (key, _) in std::env::vars() {
            if key.starts_with("MEETINGS_") {
                command.env_remove(key);
            }
        }
        command
            .env("MEETINGS_LOG_FORMAT", "json")
            .env("MEETINGS_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the service binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut process = Self {
            name,
            child,
            lines,
            base: String::new(),
        };
        let listening = process.wait_for_line(Duration::from_secs(60), |line| {
            line.contains("listening") && line.contains("\"address\"")
        });
        let record: serde_json::Value =
            serde_json::from_str(&listening).expect("log lines are JSON");
        let address = record["fields"]["address"]
            .as_str()
            .expect("the listening line names its address");
        process.base = format!("http://{address}");
        process
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the first line matching `found`, failing the test after `within`.
    pub fn wait_for_line(&mut self, within: Duration, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| found(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging the expected line; it logged:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log the expected line within {within:?}; it logged:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL, `kill -9`): no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().expect("the child can be killed");
        self.child.wait().ok();
    }

    /// Sends SIGTERM, as an orchestrator stopping it does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM to {} was delivered", self.name);
    }

    /// Waits for the process to exit after [`Self::terminate`]; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Deletes a stream that the processes created (their relay does), however the test ends.
pub struct DeletesStream(pub String, pub platform::bus::StreamName);

impl Drop for DeletesStream {
    fn drop(&mut self) {
        platform::testing::ScratchStream::delete_detached(&self.0, &self.1);
    }
}
