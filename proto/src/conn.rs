//! How clients reach a coordinator and how it checks them: the shared token (sent as
//! `authorization: Bearer <token>` on every call, compared in constant time by the server) and
//! TLS (rustls; the client trusts a given CA file).

use std::path::PathBuf;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// Largest gRPC message either side sends or accepts (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest saved model (card and weights together) a worker sends with a trial's completion,
/// within one message; a larger network's model is not kept (the worker says so).
pub const MAX_MODEL_BYTES: usize = 12 * 1024 * 1024;
/// Largest checkpoint a coordinator keeps (sent in chunks of [`CHUNK_BYTES`]).
pub const MAX_CHECKPOINT_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes per chunk of a checkpoint or of a trial's files on the wire.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Most history rows one Report carries (a program's rows since its last report).
pub const MAX_REPORT_ROWS: usize = 4096;
/// The highest step a Report may name: an epoch, or W&B's `_step` + 1.
pub const MAX_STEP: u32 = 1_000_000;

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token; `None` for an empty one.
    pub fn new(token: impl Into<String>) -> Option<Secret> {
        let t = token.into();
        (!t.is_empty()).then_some(Secret(t))
    }

    /// The token itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a client connects: the coordinator's URL, its token, the CA that signed its certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub url: String,
    /// The coordinator's token, if it has one.
    pub token: Option<Secret>,
    /// PEM file of the CA (or the self-signed certificate) to trust for TLS.
    pub tls_ca: Option<PathBuf>,
}

/// Why a client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The URL does not parse.
    #[error("invalid coordinator URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file cannot be read or used.
    #[error("--tls-ca {path}: {reason}")]
    Ca {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The token cannot be sent as a header.
    #[error("the token must be printable ASCII (SWEEP_TOKEN / --token)")]
    BadToken,
}

/// Adds the token to every outgoing call.
#[derive(Clone)]
pub struct ClientAuth(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ClientAuth(token)"
        } else {
            "ClientAuth(none)"
        })
    }
}

impl ClientAuth {
    /// The interceptor for `token`.
    pub fn new(token: Option<&Secret>) -> Result<ClientAuth, ConnError> {
        match token {
            None => Ok(ClientAuth(None)),
            Some(t) => {
                let mut v: MetadataValue<Ascii> = format!("Bearer {}", t.expose())
                    .parse()
                    .map_err(|_| ConnError::BadToken)?;
                v.set_sensitive(true);
                Ok(ClientAuth(Some(v)))
            }
        }
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that carries the token.
pub type AuthChannel = InterceptedService<Channel, ClientAuth>;

/// A lazily connecting channel to the coordinator with the token and TLS settings applied.
pub fn channel(opts: &ClientOptions) -> Result<AuthChannel, ConnError> {
    let bad = |reason: String| ConnError::BadUrl {
        url: opts.url.clone(),
        reason,
    };
    if !opts.url.starts_with("http://") && !opts.url.starts_with("https://") {
        let guess = if opts.url.contains("://") {
            String::new()
        } else {
            format!("; did you mean http://{}?", opts.url)
        };
        return Err(bad(format!(
            "expected http://HOST:PORT (or https:// with --tls-ca){guess}"
        )));
    }
    let mut ep = Endpoint::from_shared(opts.url.clone()).map_err(|e| bad(e.to_string()))?;
    let https = opts.url.starts_with("https://");
    if let Some(ca) = &opts.tls_ca {
        let pem = std::fs::read(ca).map_err(|e| ConnError::Ca {
            path: ca.clone(),
            reason: e.to_string(),
        })?;
        if !https {
            return Err(bad("--tls-ca needs an https:// URL".into()));
        }
        ep = ep
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| ConnError::Ca {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
    } else if https {
        return Err(bad(
            "an https:// URL needs --tls-ca (the CA or certificate to trust)".into(),
        ));
    }
    let ch = ep
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .connect_lazy();
    Ok(InterceptedService::new(
        ch,
        ClientAuth::new(opts.token.as_ref())?,
    ))
}

/// Checks the token on every call of a service (the server side of [`ClientAuth`]).
#[derive(Clone)]
pub struct ServerAuth(Option<std::sync::Arc<[u8]>>);

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ServerAuth(token)"
        } else {
            "ServerAuth(open)"
        })
    }
}

impl ServerAuth {
    /// Requires `token` (or lets everyone in when `None`).
    pub fn new(token: Option<&Secret>) -> ServerAuth {
        ServerAuth(token.map(|t| std::sync::Arc::from(t.expose().as_bytes())))
    }

    /// Whether `header` (the whole `authorization` value) carries the token.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(want) = &self.0 else {
            return true;
        };
        let Some(got) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Constant time in the token's contents (the length is not secret).
        got.len() == want.len() && bool::from(got.ct_eq(want))
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        if self.accepts(header) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token: pass --token or set SWEEP_TOKEN",
            ))
        }
    }
}

/// The token a program was given: `--token`, `SWEEP_TOKEN`, or the first line of
/// `--token-file` / `SWEEP_TOKEN_FILE` (a file readable by its user alone). A token typed on
/// the command line is visible to every user of the machine (`ps`): a warning says so.
pub fn token_from(
    flag: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    let typed =
        std::env::args_os().any(|a| a == "--token" || a.to_string_lossy().starts_with("--token="));
    if typed {
        eprintln!(
            "warning: --token on the command line is visible to every user of this machine (ps); \
             use SWEEP_TOKEN or --token-file instead"
        );
    }
    match file {
        None => Ok(flag),
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {}: cannot read it: {e}", f.display()))?;
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() {
                return Err(format!(
                    "--token-file {}: its first line is empty",
                    f.display()
                ));
            }
            Ok(Some(line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_explained() {
        let opts = |url: &str| ClientOptions {
            url: url.into(),
            token: None,
            tls_ca: None,
        };
        let e = channel(&opts("127.0.0.1:50051")).unwrap_err().to_string();
        assert!(e.contains("did you mean http://127.0.0.1:50051?"), "{e}");
        let e = channel(&opts("grpc://h:1")).unwrap_err().to_string();
        assert!(e.contains("expected http://HOST:PORT"), "{e}");
    }

    #[test]
    fn the_token_is_checked_and_never_printed() {
        let s = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(Secret::new("").is_none());
        let auth = ServerAuth::new(Some(&s));
        assert!(auth.accepts(Some(b"Bearer hunter2")));
        assert!(!auth.accepts(Some(b"Bearer hunter3")));
        assert!(!auth.accepts(Some(b"Bearer hunter22")));
        assert!(!auth.accepts(Some(b"hunter2")));
        assert!(!auth.accepts(None));
        assert!(ServerAuth::new(None).accepts(None));
        assert!(!format!("{auth:?}").contains("hunter"));
        let mut c = ClientAuth::new(Some(&s)).unwrap();
        let req = c.call(Request::new(())).unwrap();
        let v = req.metadata().get("authorization").unwrap();
        assert_eq!(v.as_bytes(), b"Bearer hunter2");
        assert!(
            !format!("{v:?}").contains("hunter"),
            "sensitive header: {v:?}"
        );
        assert!(matches!(
            ClientAuth::new(Secret::new("bad\ntoken").as_ref()),
            Err(ConnError::BadToken)
        ));
    }

    #[test]
    fn https_needs_a_ca_and_a_ca_needs_https() {
        let err = channel(&ClientOptions {
            url: "https://127.0.0.1:1".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--tls-ca"), "{err}");
        let err = channel(&ClientOptions {
            url: "http://127.0.0.1:1".into(),
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
