//! A PostgreSQL server owned by one test (its own data directory and port), so that the test
//! can stop it and start it again while the services keep running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use uuid::Uuid;

use crate::own_nats::free_port;

/// A PostgreSQL cluster in a temporary directory, started with `pg_ctl`.
pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// The directory of `initdb` and `pg_ctl`: `MEETINGS_TEST_PG_BIN`, else the newest Debian
/// installation, else whatever `PATH` has.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MEETINGS_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_default()
}

/// PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
fn as_server_user(bin: &Path, tool: &str) -> Command {
    let path = bin.join(tool);
    // The effective user by `id -u`: no libc dependency for one check.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

impl OwnPostgres {
    /// A new cluster (trust authentication, user `postgres`), started.
    pub async fn start() -> Self {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!("meetings-pg-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // The server's user must own its directory.
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .ok();
        let status = as_server_user(&bin, "initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap_or_else(|e| panic!("cannot run initdb from {} ({e})", bin.display()));
        assert!(status.success(), "initdb failed");
        let postgres = Self {
            port: free_port(),
            dir,
            bin,
        };
        postgres.start_again().await;
        postgres
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port and data, and waits until it
    /// accepts connections.
    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = as_server_user(&self.bin, "pg_ctl")
            .args(["start", "-w", "-t", "30", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "PostgreSQL did not start");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sqlx::PgPool::connect(&self.url()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "PostgreSQL accepts no connections"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (`fast`: connections are cut, as in a crash of the network path).
    pub fn stop(&self) {
        let status = as_server_user(&self.bin, "pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "PostgreSQL did not stop");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        as_server_user(&self.bin, "pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
