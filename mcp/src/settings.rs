//! The `mcp-service` settings, read once from the environment and checked
//! at start. Built [`Settings::from_vars`] so tests never touch the process
//! environment. The server holds no secret: each request brings its token.

use std::net::SocketAddr;

/// Variables read, for documentation and for `from_vars` callers.
pub const VARIABLES: &[&str] = &[
    "SB_MCP_BIND",
    "SB_COMMAND_URL",
    "SB_QUERY_URL",
    "SB_MCP_ALLOWED_HOSTS",
    "SB_MCP_ALLOWED_ORIGINS",
    "SB_LOG_FORMAT",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// `SB_MCP_BIND`, default `127.0.0.1:8083` (port 0 picks a free one).
    pub bind: SocketAddr,
    /// `SB_COMMAND_URL`, default `http://127.0.0.1:8080`.
    pub command_url: String,
    /// `SB_QUERY_URL`, default `http://127.0.0.1:8081`.
    pub query_url: String,
    /// `SB_MCP_ALLOWED_HOSTS`: the `Host` values `/mcp` answers.
    pub allowed_hosts: AllowedHosts,
    /// `SB_MCP_ALLOWED_ORIGINS`, a comma list of `scheme://host[:port|:*]`:
    /// a request with an `Origin` header must match one. Empty (the
    /// default): the `Origin` header is not checked, as agents are not
    /// browsers and the `Host` check already stops DNS rebinding.
    pub allowed_origins: Vec<String>,
    /// `SB_LOG_FORMAT`: `json` (default) or `pretty`.
    pub log_format: LogFormat,
}

/// Which `Host` headers `/mcp` answers; any other is 403, so a web page
/// cannot reach a local server through DNS rebinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// `*`: any. Only behind a proxy that checks the host itself (Caddy's
    /// site address does).
    Any,
    /// A comma list of hosts or `host:port`s; the default is loopback
    /// (`localhost,127.0.0.1,::1`).
    Only(Vec<String>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(std::env::vars())
    }

    /// From these variables only; empty values count as unset.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(name, value)| VARIABLES.contains(&name.as_str()) && !value.trim().is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(|value| value.trim().to_owned());
        let bind = match get("SB_MCP_BIND") {
            Some(value) => value.parse().map_err(|e| invalid("SB_MCP_BIND", e))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8083)),
        };
        let allowed_hosts = match get("SB_MCP_ALLOWED_HOSTS").as_deref() {
            Some("*") => AllowedHosts::Any,
            // rmcp reads an empty list as "any host": only `*` may say that.
            Some(list) => match comma_list(list) {
                hosts if hosts.is_empty() => {
                    return Err(invalid(
                        "SB_MCP_ALLOWED_HOSTS",
                        "names no host; list them, or `*` to allow any",
                    ));
                }
                hosts => AllowedHosts::Only(hosts),
            },
            None => AllowedHosts::Only(
                ["localhost", "127.0.0.1", "::1"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        };
        let allowed_origins = get("SB_MCP_ALLOWED_ORIGINS")
            .map(|list| comma_list(&list))
            .unwrap_or_default();
        if let Some(origin) = allowed_origins
            .iter()
            .find(|o| !o.contains("://") && *o != "null")
        {
            return Err(invalid(
                "SB_MCP_ALLOWED_ORIGINS",
                format!("{origin:?} has no scheme (e.g. https://app.example.com:443)"),
            ));
        }
        let log_format = match get("SB_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(invalid(
                    "SB_LOG_FORMAT",
                    format!("{other:?} is not json or pretty"),
                ));
            }
        };
        Ok(Self {
            bind,
            command_url: get("SB_COMMAND_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into()),
            query_url: get("SB_QUERY_URL").unwrap_or_else(|| "http://127.0.0.1:8081".into()),
            allowed_hosts,
            allowed_origins,
            log_format,
        })
    }
}

fn comma_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn invalid(name: &'static str, reason: impl ToString) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unset_means_loopback_everywhere() {
        let settings = Settings::from_vars(vars(&[("SB_OTHER", "x")])).unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8083");
        assert_eq!(settings.command_url, "http://127.0.0.1:8080");
        assert_eq!(
            settings.allowed_hosts,
            AllowedHosts::Only(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
        );
        assert!(settings.allowed_origins.is_empty());
    }

    #[test]
    fn hosts_are_a_comma_list_or_a_star() {
        let settings = Settings::from_vars(vars(&[(
            "SB_MCP_ALLOWED_HOSTS",
            " brain.example.org , mcp:8083,",
        )]))
        .unwrap();
        assert_eq!(
            settings.allowed_hosts,
            AllowedHosts::Only(vec!["brain.example.org".into(), "mcp:8083".into()])
        );
        let settings = Settings::from_vars(vars(&[("SB_MCP_ALLOWED_HOSTS", "*")])).unwrap();
        assert_eq!(settings.allowed_hosts, AllowedHosts::Any);
    }

    #[test]
    fn a_bad_address_origin_or_log_format_stops_the_start() {
        for pair in [
            ("SB_MCP_BIND", "localhost"),
            ("SB_MCP_ALLOWED_ORIGINS", "app.example.com"),
            ("SB_LOG_FORMAT", "xml"),
            // Empty to rmcp means any host: refused, `*` says that.
            ("SB_MCP_ALLOWED_HOSTS", ","),
        ] {
            assert!(Settings::from_vars(vars(&[pair])).is_err(), "{pair:?}");
        }
    }
}
