//! Owns the real `redis-server` that tests run against: started on a free port with no
//! persistence, stopped (process group killed) on drop. Never a mock.

use std::process::Command;
use std::time::Duration;

use crate::process::ChildProcess;

pub struct RedisServer {
    port: u16,
    /// Added to the command line (replication, cluster mode, a working folder).
    extra_args: Vec<String>,
    process: Option<ChildProcess>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(|_| Vec::new())
    }

    /// [`RedisServer::start`] with more arguments, made from the port it gets (e.g.
    /// `--replicaof`, `--cluster-enabled yes`, `--dir`).
    pub fn start_with(extra_args: impl Fn(u16) -> Vec<String>) -> RedisServer {
        for _ in 0..5 {
            let port = crate::free_port();
            let mut server = RedisServer {
                port,
                extra_args: extra_args(port),
                process: None,
            };
            if server.try_start() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port after 5 tries");
    }

    fn try_start(&mut self) -> bool {
        let mut command = Command::new(redis_server_path());
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]);
        command.args(&self.extra_args);
        let process = ChildProcess::spawn("redis-server", command);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if ping(self.port) {
                self.process = Some(process);
                return true;
            }
            if process
                .stderr_lines()
                .iter()
                .chain(process.stdout_lines().iter())
                .any(|l| l.contains("Address already in use"))
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Pid of the running server (none while stopped).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) to simulate an outage; [`RedisServer::restart`] brings
    /// it back on the same port.
    pub fn stop(&mut self) {
        self.process = None;
        crate::wait_until("redis to stop answering", Duration::from_secs(5), || {
            (!ping(self.port)).then_some(())
        });
    }

    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

pub(crate) fn redis_server_path() -> String {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let candidate = std::path::Path::new(dir).join("redis-server");
        if candidate.exists() {
            return candidate.display().to_string();
        }
    }
    panic!("redis-server not found: `make test` installs it (apt-get install redis-server)");
}

/// A raw RESP `PING` so the test kit needs no Redis client of its own.
pub(crate) fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
