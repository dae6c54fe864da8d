//! A nats-server process owned by one test, so that the test can kill and restart it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use uuid::Uuid;

/// A nats-server process owned by one test, so the test can restart it.
pub struct OwnNats {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
    /// A configuration file and the environment it reads (passwords), if any.
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl OwnNats {
    pub async fn start() -> Self {
        let port = free_port();
        let store = std::env::temp_dir().join(format!("meetings-nats-{}", Uuid::new_v4()));
        let mut nats = Self {
            port,
            store,
            child: None,
            config: None,
        };
        nats.spawn().await;
        nats
    }

    /// A server reading `config` (the repository's `nats.conf`, say) with `env` set, on its
    /// own port, monitoring port and store.
    pub async fn with_config(config: PathBuf, env: &[(&str, &str)]) -> Self {
        let mut nats = Self {
            port: free_port(),
            store: std::env::temp_dir().join(format!("meetings-nats-{}", Uuid::new_v4())),
            child: None,
            config: Some((
                config,
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
        };
        nats.spawn().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let binary = std::env::var("MEETINGS_TEST_NATS_SERVER").unwrap_or_else(|_| {
            if std::path::Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let mut command = Command::new(&binary);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        match &self.config {
            Some((config, env)) => {
                // The file's own store directory, pointed at this server's.
                let text = std::fs::read_to_string(config).expect("the NATS configuration");
                let text = text.replace(
                    "store_dir: /data/jetstream",
                    &format!("store_dir: \"{}\"", self.store.display()),
                );
                std::fs::create_dir_all(&self.store).unwrap();
                let copy = self.store.join("nats.conf");
                std::fs::write(&copy, text).unwrap();
                command
                    .arg("-c")
                    .arg(copy)
                    .args(["-m", &free_port().to_string()])
                    .envs(env.iter().map(|(k, v)| (k, v)));
            }
            None => {
                command.arg("-js").arg("-sd").arg(&self.store);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (install nats-server): {e}"));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Kills the server (SIGKILL): it is down until [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the stopped server again on the same port and store.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn().await;
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        std::fs::remove_dir_all(&self.store).ok();
    }
}

/// A port nothing listens on now (the OS picks it; shared by the servers tests own).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
