//! Typed configuration, read once from the environment.
//!
//! ```
//! use sluice_loader::Config;
//!
//! let env = [("DATABASE_URL", "postgres://sluice:hunter2@db.internal:5432/app"), ("MAX_REJECT_RATIO", "0.05")];
//! let cfg = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
//! assert_eq!(cfg.max_reject_ratio, 0.05);
//! assert!(!format!("{cfg:?}").contains("hunter2"));          // secrets never print
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_edge::layout::{Area, Layout};
use sluice_transform::Mapping;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The mapping for the built-in `hotmart-sales` source (`mappings/hotmart-sales.toml`).
pub const HOTMART_SALES_MAPPING: &str = include_str!("../../../mappings/hotmart-sales.toml");

pub use sluice_edge::Secret;

/// Every variable [`Config::from_env`] reads (the infra template's test checks its
/// `Environment` against this list; a unit test checks this list against the code).
pub const ENV_VARS: &[&str] = &[
    "COPY_BATCH_BYTES",
    "COPY_FORMAT",
    "DATABASE_ACQUIRE_TIMEOUT_SECS",
    "DATABASE_CA_BUNDLE",
    "DATABASE_HOST",
    "DATABASE_NAME",
    "DATABASE_PORT",
    "DATABASE_SECRET_ARN",
    "DATABASE_SSLMODE",
    "DATABASE_URL",
    "HELD_ROWS",
    "LEDGER_SCHEMA",
    "MAPPINGS",
    "MAX_REJECT_RATIO",
    "QUARANTINE_PREFIX",
    "RAW_PREFIX",
    "REDACT_SALT",
    "REDACT_SALT_SECRET_ARN",
];

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("set DATABASE_URL or DATABASE_SECRET_ARN")]
    NoDatabase,
    #[error("mapping {path}: {source}")]
    Mapping {
        path: String,
        source: sluice_transform::MappingError,
    },
}

fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.into(),
    }
}

/// Where the database credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// `DATABASE_URL`.
    Url(Secret),
    /// `DATABASE_SECRET_ARN`: a Secrets Manager secret in the RDS JSON format.
    SecretArn(String),
}

/// TLS settings on top of the URL or secret.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `DATABASE_SSLMODE`: disable, prefer, require, verify-ca, verify-full.
    pub mode: Option<PgSslMode>,
    /// `DATABASE_CA_BUNDLE`: a PEM file (the RDS global bundle); implies verify-full.
    pub ca_bundle: Option<PathBuf>,
}

/// Where the database is, when the environment says so (`DATABASE_HOST`, `DATABASE_PORT`,
/// `DATABASE_NAME`): the template sets them from the instance it creates, whose managed secret
/// holds only `username` and `password`. They win over the secret's own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
}

/// The loader's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseSource,
    /// With `DATABASE_SECRET_ARN`: where the database is, if not (only) in the secret.
    pub endpoint: Endpoint,
    pub tls: Tls,
    /// `RAW_PREFIX` (default `raw/`): objects are `<raw prefix><source>/…`;
    /// `QUARANTINE_PREFIX` (default `quarantine/`).
    pub layout: Layout,
    /// Mappings by source name: the built-in `hotmart-sales` plus `MAPPINGS` (a TOML file named
    /// `<source>.toml`, or a directory of them).
    pub mappings: BTreeMap<String, Mapping>,
    /// Where quarantine files go: `None` (the default, not read from the environment) for the
    /// object's own bucket; the CLI sets its `--quarantine` directory or bucket.
    pub quarantine_bucket: Option<String>,
    /// `MAX_REJECT_RATIO` (default 0.1): above it an object fails as a whole.
    pub max_reject_ratio: f64,
    /// `REDACT_SALT`: salt for `redact = "hash"` columns.
    pub redact_salt: Secret,
    /// `REDACT_SALT_SECRET_ARN`: a secret whose string is the salt (the template generates one);
    /// read at start by [`crate::connect::read_secrets`] unless `REDACT_SALT` is set.
    pub redact_salt_secret: Option<String>,
    /// `LEDGER_SCHEMA` (default `public`): where `sluice_loads` lives.
    pub ledger_schema: String,
    /// `COPY_BATCH_BYTES` (default 1 MiB): rows are sent to Postgres in batches of about this size.
    pub batch_bytes: usize,
    /// `COPY_FORMAT` (default `binary`): the format rows are sent to Postgres in.
    pub copy_format: SendFormat,
    /// `HELD_ROWS` (default `auto`): what becomes of staged rows the table holds unchanged.
    pub held_rows: HeldRowsMode,
    /// `DATABASE_ACQUIRE_TIMEOUT_SECS` (default 10): how long one attempt waits for a connection.
    pub acquire_timeout: std::time::Duration,
}

/// `COPY_FORMAT`: the format of the rows sent to Postgres. Both load the same values; the
/// binary format spares Postgres parsing them (README, Benchmarks).
///
/// ```
/// use sluice_loader::config::SendFormat;
///
/// assert_eq!("text".parse::<SendFormat>(), Ok(SendFormat::Text));
/// assert!("csv".parse::<SendFormat>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendFormat {
    /// `binary`: Postgres' binary format where every column's type allows it (sluice writes
    /// each value exactly as that type stores it), else text.
    #[default]
    Binary,
    /// `text`: always Postgres' text format.
    Text,
}

impl std::str::FromStr for SendFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binary" => Ok(Self::Binary),
            "text" => Ok(Self::Text),
            other => Err(format!("{other:?}: expected binary or text")),
        }
    }
}

/// `HELD_ROWS`: what becomes of staged rows the table already holds unchanged (a lookback
/// re-fetch). All load the same rows and counts.
///
/// ```
/// use sluice_loader::config::HeldRowsMode;
///
/// assert_eq!("read_back".parse::<HeldRowsMode>(), Ok(HeldRowsMode::ReadBack));
/// assert_eq!(HeldRowsMode::default(), HeldRowsMode::Auto);
/// assert!("skip".parse::<HeldRowsMode>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeldRowsMode {
    /// `auto`: `read_back` where the mapping has a `row_hash` column (only the key and the
    /// hash are read back), else `stage`.
    #[default]
    Auto,
    /// `stage`: every row is staged; the upsert leaves the unchanged ones out (an anti-join
    /// when most are).
    Stage,
    /// `read_back`: each staged batch is first read back from the table, and rows it holds
    /// with the same bytes (the same row hash, where there is one) are not sent. Without a
    /// row hash, no faster than `stage` (README, Benchmarks).
    ReadBack,
}

impl std::str::FromStr for HeldRowsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "stage" => Ok(Self::Stage),
            "read_back" => Ok(Self::ReadBack),
            other => Err(format!("{other:?}: expected auto, stage or read_back")),
        }
    }
}

/// The prefixes the loader reads and writes under: `raw/` and `quarantine/`.
pub const AREAS: [Area; 2] = [Area::Raw, Area::Quarantine];

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database = match (get("DATABASE_URL"), get("DATABASE_SECRET_ARN")) {
            (Some(url), _) => DatabaseSource::Url(Secret::new(url)),
            (None, Some(arn)) => DatabaseSource::SecretArn(arn),
            (None, None) => return Err(ConfigError::NoDatabase),
        };
        let mode = get("DATABASE_SSLMODE")
            .map(|m| {
                m.parse::<PgSslMode>()
                    .map_err(|e| invalid("DATABASE_SSLMODE", e.to_string()))
            })
            .transpose()?;
        let ca_bundle = get("DATABASE_CA_BUNDLE").map(PathBuf::from);
        let endpoint = Endpoint {
            host: get("DATABASE_HOST"),
            port: get("DATABASE_PORT")
                .map(|p| {
                    p.parse::<u16>()
                        .map_err(|_| invalid("DATABASE_PORT", format!("{p:?} is not a port")))
                })
                .transpose()?,
            name: get("DATABASE_NAME"),
        };
        let mappings = mappings(get("MAPPINGS"))?;
        let max_reject_ratio = number(&get, "MAX_REJECT_RATIO", 0.1, " is not in 0..=1", |r| {
            (0.0..=1.0).contains(r)
        })?;
        let batch_bytes = number(&get, "COPY_BATCH_BYTES", 1 << 20, ": need ≥ 1024", |n| {
            *n >= 1024
        })?;
        let acquire_timeout = acquire_timeout(get("DATABASE_ACQUIRE_TIMEOUT_SECS"))?;
        let copy_format = get("COPY_FORMAT")
            .map(|f| f.parse().map_err(|e: String| invalid("COPY_FORMAT", e)))
            .transpose()?
            .unwrap_or_default();
        let held_rows = get("HELD_ROWS")
            .map(|f| f.parse().map_err(|e: String| invalid("HELD_ROWS", e)))
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            acquire_timeout,
            database,
            endpoint,
            tls: Tls { mode, ca_bundle },
            layout: Layout::from_lookup(&AREAS, &get),
            mappings,
            quarantine_bucket: None,
            max_reject_ratio,
            redact_salt: Secret::new(get("REDACT_SALT").unwrap_or_default()),
            redact_salt_secret: get("REDACT_SALT_SECRET_ARN"),
            ledger_schema: get("LEDGER_SCHEMA").unwrap_or_else(|| "public".into()),
            batch_bytes,
            copy_format,
            held_rows,
        })
    }
}

/// The built-in `hotmart-sales` mapping plus those under `MAPPINGS` (which may replace it).
fn mappings(path: Option<String>) -> Result<BTreeMap<String, Mapping>, ConfigError> {
    let mut mappings = BTreeMap::new();
    mappings.insert(
        "hotmart-sales".to_owned(),
        Mapping::from_toml(HOTMART_SALES_MAPPING).map_err(|source| ConfigError::Mapping {
            path: "built-in hotmart-sales".into(),
            source,
        })?,
    );
    if let Some(path) = path {
        mappings.extend(read_mappings(Path::new(&path))?);
    }
    Ok(mappings)
}

/// A number from `var`: `default` when unset; an error (the value, then `why`) when it does not parse or
/// `ok` refuses it.
fn number<T: std::str::FromStr>(
    get: impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    why: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .parse::<T>()
            .ok()
            .filter(ok)
            .ok_or_else(|| invalid(var, format!("{v:?}{why}"))),
    }
}

/// `DATABASE_ACQUIRE_TIMEOUT_SECS` (default 10): a positive number of seconds.
fn acquire_timeout(v: Option<String>) -> Result<std::time::Duration, ConfigError> {
    let Some(v) = v else {
        return Ok(std::time::Duration::from_secs(10));
    };
    v.parse::<f64>()
        .ok()
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            invalid(
                "DATABASE_ACQUIRE_TIMEOUT_SECS",
                format!("{v:?} is not a positive number of seconds"),
            )
        })
}

/// A mapping file `<source>.toml`, or every `*.toml` in a directory.
pub fn read_mappings(path: &Path) -> Result<Vec<(String, Mapping)>, ConfigError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| invalid("MAPPINGS", format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| invalid("MAPPINGS", format!("{}: {e}", f.display())))?;
            let m = Mapping::from_toml(&text).map_err(|source| ConfigError::Mapping {
                path: f.display().to_string(),
                source,
            })?;
            let source = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((source, m))
        })
        .collect()
}

/// The RDS secret format (Secrets Manager JSON). The secret RDS manages for a master password
/// holds only `username` and `password`; where the database is then comes from [`Endpoint`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RdsSecret {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: String,
    pub password: String,
    #[serde(alias = "dbInstanceIdentifier", alias = "database")]
    pub dbname: Option<String>,
}

impl RdsSecret {
    /// Parses the secret string; the error never echoes it.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(json).map_err(|e| {
            invalid(
                "DATABASE_SECRET_ARN",
                format!(
                    "the secret is not RDS JSON (host, port, username, password, dbname): line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Connection options: host, port and database from `endpoint` where it has them, else
    /// from the secret (port 5432 and database `postgres` by default); credentials from the
    /// secret.
    pub fn connect_options(&self, endpoint: &Endpoint) -> Result<PgConnectOptions, ConfigError> {
        let host = endpoint.host.as_ref().or(self.host.as_ref()).ok_or_else(|| {
            invalid(
                "DATABASE_HOST",
                "the secret has no host (an RDS-managed master secret holds only username and password): set DATABASE_HOST",
            )
        })?;
        let name = endpoint.name.as_deref().or(self.dbname.as_deref());
        Ok(PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(endpoint.port.or(self.port).unwrap_or(5432))
            .username(&self.username)
            .password(&self.password)
            .database(name.unwrap_or("postgres")))
    }
}

/// Whether a host is this machine (TLS optional there, required elsewhere).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.starts_with('/')
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Applies the TLS policy. Off this machine the connection is encrypted and, unless
/// `DATABASE_SSLMODE` (or the URL's `sslmode`) asks for `require` or `verify-ca`, verified:
/// `verify-full`, against `DATABASE_CA_BUNDLE` when set (RDS certificates chain to Amazon's RDS
/// CAs, which are not in the public roots). On this machine the mode is left as asked.
///
/// ```
/// use sluice_loader::config::{Tls, apply_tls};
/// use sqlx::postgres::{PgConnectOptions, PgSslMode};
///
/// let rds: PgConnectOptions = "postgres://u@db.abc.us-east-1.rds.amazonaws.com/app".parse().unwrap();
/// let o = apply_tls(rds, &Tls::default());
/// assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
/// ```
pub fn apply_tls(opts: PgConnectOptions, tls: &Tls) -> PgConnectOptions {
    let mut opts = opts.application_name("sluice-loader");
    if let Some(mode) = tls.mode {
        opts = opts.ssl_mode(mode);
    }
    if let Some(ca) = &tls.ca_bundle {
        opts = opts.ssl_root_cert(ca);
        if tls.mode.is_none() {
            opts = opts.ssl_mode(PgSslMode::VerifyFull);
        }
    }
    let weak = matches!(
        opts.get_ssl_mode(),
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer
    );
    if weak && !is_loopback(opts.get_host()) {
        opts = opts.ssl_mode(PgSslMode::VerifyFull);
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = Config::from_lookup(|k| {
            seen.borrow_mut().insert(k.to_owned());
            (k == "DATABASE_URL").then(|| "postgres://u@127.0.0.1/d".to_owned())
        });
        let listed: std::collections::BTreeSet<String> =
            ENV_VARS.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed, seen.into_inner());
    }

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_routes() {
        let c = cfg(&[("DATABASE_URL", "postgres://localhost/db")]).unwrap();
        assert_eq!(c.layout, Layout::default());
        assert_eq!(c.max_reject_ratio, 0.1);
        assert!(c.mappings.contains_key("hotmart-sales"));
        assert_eq!(
            c.layout.source_of("raw/hotmart-sales/dt=2024-01-01/a.csv"),
            Some("hotmart-sales")
        );
        assert_eq!(c.layout.source_of("raw/x/a.csv.gz"), Some("x"));
        assert_eq!(c.layout.source_of("raw/x/a.json"), None);
        assert_eq!(c.layout.source_of("raw/a.csv"), None);
        assert_eq!(c.layout.source_of("state/x.csv"), None);
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(matches!(cfg(&[]), Err(ConfigError::NoDatabase)));
        let e = cfg(&[("DATABASE_URL", "x"), ("MAX_REJECT_RATIO", "2")]).unwrap_err();
        assert!(e.to_string().starts_with("MAX_REJECT_RATIO:"), "{e}");
        let e = cfg(&[("DATABASE_URL", "x"), ("DATABASE_SSLMODE", "sometimes")]).unwrap_err();
        assert!(e.to_string().starts_with("DATABASE_SSLMODE:"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = cfg(&[
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("REDACT_SALT", "pepper"),
        ])
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("pepper"), "{dbg}");
        let e = RdsSecret::parse(r#"{"password": "hunter2", "host": 1}"#).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    fn mode(o: &PgConnectOptions) -> String {
        format!("{:?}", o.get_ssl_mode())
    }

    #[test]
    fn tls_is_verified_off_this_machine() {
        let tls = Tls::default();
        let remote: PgConnectOptions = "postgres://u@db.example.com/app".parse().unwrap();
        assert_eq!(mode(&apply_tls(remote, &tls)), "VerifyFull");
        let remote: PgConnectOptions = "postgres://u@10.0.0.5/app?sslmode=disable".parse().unwrap();
        assert_eq!(mode(&apply_tls(remote, &tls)), "VerifyFull");
        // Asked for explicitly, `require` stays (encrypted, not verified).
        let asked = Tls {
            mode: Some(PgSslMode::Require),
            ca_bundle: None,
        };
        let remote: PgConnectOptions = "postgres://u@db.example.com/app".parse().unwrap();
        assert_eq!(mode(&apply_tls(remote, &asked)), "Require");
        let local: PgConnectOptions = "postgres://u@127.0.0.1/app".parse().unwrap();
        assert_eq!(mode(&apply_tls(local, &tls)), "Prefer");
        let ca = Tls {
            mode: None,
            ca_bundle: Some("/opt/rds-global-bundle.pem".into()),
        };
        let remote: PgConnectOptions = "postgres://u@db.example.com/app".parse().unwrap();
        assert_eq!(mode(&apply_tls(remote, &ca)), "VerifyFull");
        let s = RdsSecret::parse(
            r#"{"username":"u","password":"p","engine":"postgres","host":"db.x.rds.amazonaws.com","port":5432,"dbname":"app"}"#,
        )
        .unwrap();
        let o = apply_tls(s.connect_options(&Endpoint::default()).unwrap(), &tls);
        assert_eq!(
            (o.get_host(), o.get_port(), o.get_database()),
            ("db.x.rds.amazonaws.com", 5432, Some("app"))
        );
        assert_eq!(mode(&o), "VerifyFull");
    }

    #[test]
    fn an_rds_managed_secret_takes_its_endpoint_from_the_environment() {
        // Exactly what RDS stores for ManageMasterUserPassword.
        let managed = RdsSecret::parse(r#"{"username":"sluice","password":"hunter2"}"#).unwrap();
        let e = managed
            .connect_options(&Endpoint::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATABASE_HOST") && !e.contains("hunter2"), "{e}");
        let c = cfg(&[
            (
                "DATABASE_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ),
            ("DATABASE_HOST", "sluice.abc.us-east-1.rds.amazonaws.com"),
            ("DATABASE_PORT", "5433"),
            ("DATABASE_NAME", "sluice"),
        ])
        .unwrap();
        let o = managed.connect_options(&c.endpoint).unwrap();
        assert_eq!(
            (
                o.get_host(),
                o.get_port(),
                o.get_database(),
                o.get_username()
            ),
            (
                "sluice.abc.us-east-1.rds.amazonaws.com",
                5433,
                Some("sluice"),
                "sluice"
            )
        );
        assert!(cfg(&[("DATABASE_URL", "postgres://x"), ("DATABASE_PORT", "big")]).is_err());
    }
}
