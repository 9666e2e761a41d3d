//! Where `sb` finds the services and the key: flags, then `SB_*` variables
//! (clap reads both), then the config file, then the native stack's
//! defaults. The file is TOML in the user's config folder
//! (`~/.config/second-brain/config.toml` on Linux), written by `sb login`
//! with mode 600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::args::Global;
use crate::error::CliError;

pub const DEFAULT_COMMAND_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_QUERY_URL: &str = "http://127.0.0.1:8081";

/// The config file as stored; every field optional.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// What a run uses, and where each part came from (for `sb config`).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: PathBuf,
    pub command_url: String,
    pub query_url: String,
    pub api_key: Option<String>,
    pub api_key_from: &'static str,
}

/// The config file's path: `--config`/`SB_CONFIG`, else the user's config
/// folder.
pub fn path(global: &Global) -> Result<PathBuf, CliError> {
    if let Some(path) = &global.config {
        return Ok(path.clone());
    }
    directories::ProjectDirs::from("", "", "second-brain")
        .map(|dirs| dirs.config_dir().join("config.toml"))
        .ok_or_else(|| {
            CliError::Usage("no home folder to keep the config in; pass --config".into())
        })
}

pub fn read(path: &Path) -> Result<File, CliError> {
    match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CliError::Usage(format!("{}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(CliError::io(format!("reading {}", path.display()), e)),
    }
}

pub fn resolve(global: &Global) -> Result<Resolved, CliError> {
    let path = path(global)?;
    let file = read(&path)?;
    // Flags, then variables, then the file; at each level a service's own
    // URL before the one origin that stands for both.
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let command_url = global
        .command_url
        .clone()
        .or_else(|| global.url.clone())
        .or_else(|| var("SB_COMMAND_URL"))
        .or_else(|| var("SB_URL"))
        .or_else(|| file.command_url.clone())
        .or_else(|| file.url.clone())
        .unwrap_or_else(|| DEFAULT_COMMAND_URL.to_owned());
    let query_url = global
        .query_url
        .clone()
        .or_else(|| global.url.clone())
        .or_else(|| var("SB_QUERY_URL"))
        .or_else(|| var("SB_URL"))
        .or(file.query_url)
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_QUERY_URL.to_owned());
    let (api_key, api_key_from) = match (&global.api_key, file.api_key) {
        (Some(key), _) => (Some(key.clone()), "--api-key or SB_API_KEY"),
        (None, Some(key)) => (Some(key), "the config file"),
        (None, None) => (None, "nowhere (run `sb login`)"),
    };
    Ok(Resolved {
        path,
        command_url,
        query_url,
        api_key,
        api_key_from,
    })
}

/// Writes `file` to `path` readable by its owner only: a new file beside it
/// created with mode 600, then renamed over the old one, so the key is never
/// readable by others, not even for a moment, and a crash leaves the old
/// file whole.
pub fn write_private(path: &Path, file: &File) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let text = toml::to_string(file).map_err(|e| CliError::Unexpected(e.to_string()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".config.toml.");
    // Elsewhere the user's profile folder is private already.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| CliError::io(format!("creating a file in {}", dir.display()), e))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e))?;
    temp.persist(path)
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))
}
