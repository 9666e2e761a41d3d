//! Talking to the services as a client does: tokens, whole responses,
//! problem assertions, and raw requests a client library refuses to send.

use chrono::{Duration, Utc};
use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use service_kit::auth::{UserId, issue_jwt};
use uuid::Uuid;

/// The JWT secret every service of a test stack shares.
pub const JWT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// Settings that turn both rate limits off: every request of a test comes
/// from 127.0.0.1, most from one user, so the tests that are not about rate
/// limits turn them off, and those that are set their own.
pub const RATE_LIMITS_OFF: [(&str, &str); 2] = [
    ("SB_RATE_LIMIT_USER_PER_SECOND", "0"),
    ("SB_RATE_LIMIT_IP_PER_SECOND", "0"),
];

/// `(name, value)` pairs as the owned settings `from_vars` reads.
pub fn owned_vars<K: AsRef<str>, V: AsRef<str>>(vars: &[(K, V)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect()
}

/// A token for `user`, valid for an hour.
pub fn token_for(user: &str) -> String {
    token_expiring(user, Utc::now() + Duration::hours(1))
}

/// A token for `user` that expired ten minutes ago.
pub fn expired_token_for(user: &str) -> String {
    token_expiring(user, Utc::now() - Duration::minutes(10))
}

fn token_expiring(user: &str, expiry: chrono::DateTime<Utc>) -> String {
    let secret = SecretString::from(JWT_SECRET);
    let user = UserId::parse(user).expect("valid user id");
    issue_jwt(&secret, &user, expiry).expect("token")
}

/// A response read whole: status, headers and JSON body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn read(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn id(&self) -> Uuid {
        self.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("an id in the body")
    }

    pub fn version(&self) -> u64 {
        self.body["version"]
            .as_u64()
            .expect("a version in the body")
    }

    /// Asserts a problem document with the given status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of {:?}",
            self.body
        );
        assert_eq!(self.body["code"], code, "code of {:?}", self.body);
        assert_eq!(self.body["status"], status);
    }
}

/// Status and JSON body of a response (Null when it has none).
pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends `request` as bytes to `address` (`host:port`) and returns the whole
/// response as text. Blocking I/O off the runtime: for requests a client
/// library would refuse to send, such as a header with a NUL byte.
pub async fn send_raw(address: &str, request: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let target = address.to_owned();
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(target).unwrap();
        stream.write_all(&request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// The ids of a list or search answer's `items` or `hits`.
pub fn ids(body: &Value, field: &str) -> Vec<Uuid> {
    body[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Percent-encodes `text` for a query string (reqwest's own encoder would
/// need a typed query struct; this keeps the request visible as a string).
pub fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
