//! The `healthcheck` subcommand every binary has: one HTTP GET of the
//! service's own health endpoint, exit 0 on a 2xx and non-zero otherwise.
//! Container health checks run it, so images need no curl or shell.
//!
//! Hand-written HTTP/1.1 over a TCP stream on purpose: the probe talks to its
//! own process on loopback, needs no TLS, redirects or pooling, and must not
//! drag an HTTP client's start-up into a check that runs every few seconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `healthcheck` subcommand's arguments, the same in every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The endpoint to probe: readiness by default (dependencies up), or
    /// `/health/live` for the process alone.
    #[arg(long, default_value = "/health/ready")]
    pub path: String,
    /// Probe this address instead of the one the service listens on.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: u64,
}

/// Runs the subcommand for a service configured to listen on `listen`.
pub async fn run(args: &HealthcheckArgs, listen: SocketAddr) -> Result<(), HealthcheckError> {
    let addr = args.addr.unwrap_or_else(|| probe_address(listen));
    check(addr, &args.path, Duration::from_secs(args.timeout_seconds)).await
}

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    #[error("{addr}{path} answered {status_line:?}")]
    Unhealthy {
        addr: SocketAddr,
        path: String,
        status_line: String,
    },
}

/// Where to probe a service listening on `listen`: an unspecified address
/// (`0.0.0.0`, `::`) is reached on loopback.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        let loopback = match listen.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, listen.port())
    } else {
        listen
    }
}

/// GETs `path` on `addr`; `Ok` only for a 2xx status.
pub async fn check(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(), HealthcheckError> {
    tokio::time::timeout(timeout, probe(addr, path))
        .await
        .map_err(|_| HealthcheckError::Timeout(addr))?
}

async fn probe(addr: SocketAddr, path: &str) -> Result<(), HealthcheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthcheckError::Connect { addr, source })?;
    let io = |source| HealthcheckError::Io { addr, source };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: second-brain-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // The status line is all that matters; read until it is complete.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    let healthy = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'));
    if healthy {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy {
            addr,
            path: path.to_owned(),
            status_line,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(probe_address(any), "127.0.0.1:8080".parse().unwrap());
        let any6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(probe_address(any6), "[::1]:8080".parse().unwrap());
        let given: SocketAddr = "10.0.0.5:81".parse().unwrap();
        assert_eq!(probe_address(given), given);
    }

    async fn serve_once(response: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_2xx_is_healthy_and_anything_else_is_not() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        check(ok, "/health/live", Duration::from_secs(5))
            .await
            .unwrap();
        let down =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let error = check(down, "/health/ready", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(error, HealthcheckError::Unhealthy { .. }),
            "{error}"
        );
        let garbage = serve_once("nonsense").await;
        assert!(check(garbage, "/", Duration::from_secs(5)).await.is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let error = check(addr, "/health/live", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, HealthcheckError::Connect { .. }), "{error}");
    }
}
