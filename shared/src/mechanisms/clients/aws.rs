//! One `aws_config` load shared by every AWS client.
//!
//! Endpoints are the SDK's own business: `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` point
//! the clients at moto locally, and are unset in AWS. The only extra knob is S3 path-style
//! addressing, which S3-compatible stores (moto, MinIO, Cloudflare R2 with some setups) need.
//!
//! The HTTP client is the SDK's own (hyper 1, rustls with aws-lc, proxy settings from the
//! environment), with one change: it trusts the roots AWS endpoints chain to (Amazon Trust
//! Services: Amazon Root CA 1–4 and Starfield Services Root CA G2) instead of the system bundle.
//! Profiling init showed why: building the first client parses every PEM in the system store
//! (the bundle file and each file of the certificate directory), which was the largest item of
//! a function's init CPU. `AWS_CA_BUNDLE` (the variable the AWS CLI and SDKs read) replaces the
//! embedded roots with a PEM file, for an endpoint behind another CA.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig, timeout::TimeoutConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};

use crate::xray::XrayInterceptor;

/// The public roots of Amazon Trust Services, as Debian's ca-certificates ships them. ElastiCache's
/// certificates chain to them too (shared::clients::redis).
pub(crate) const AMAZON_TRUST_SERVICES_ROOTS: &[u8] = include_bytes!("amazon-trust-services-roots.pem");

/// Timeouts far below any function timeout, so a slow AWS call surfaces as an error the handler
/// can map, not as a Lambda timeout with nothing in the log.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// Why a PEM bundle cannot be a trust store.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// The bundle is not PEM.
    #[error("not PEM certificates: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// A certificate parsed but rustls refuses it as a trust anchor.
    #[error("a certificate is not a usable trust anchor: {0}")]
    Anchor(#[source] rustls::Error),
    /// The PEM holds no certificate.
    #[error("no certificate in the bundle")]
    Empty,
}

/// Checks `pem` the way the SDK's client will use it (each certificate parsed, each a trust
/// anchor), so that a bad bundle is an error here instead of a panic inside the SDK at init.
pub fn check_trust_store(pem: &[u8]) -> Result<usize, TrustStoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(TrustStoreError::Pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(TrustStoreError::Anchor)?;
    }
    if roots.is_empty() { Err(TrustStoreError::Empty) } else { Ok(roots.len()) }
}

/// The TLS context: `AWS_CA_BUNDLE`'s PEM file when set and usable, else the embedded roots.
fn tls_context() -> TlsContext {
    let mut pem = AMAZON_TRUST_SERVICES_ROOTS.to_vec();
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE") {
        let custom = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bundle| check_trust_store(&bundle).map(|_| bundle).map_err(|e| e.to_string()));
        match custom {
            Ok(bundle) => pem = bundle,
            Err(error) => tracing::warn!(path = ?path, %error, "AWS_CA_BUNDLE unusable; using the embedded roots"),
        }
    }
    let store = TrustStore::empty().with_native_roots(false).with_pem_certificate(pem);
    // Building a context only stores the trust store; it cannot fail (checked above).
    TlsContext::builder().with_trust_store(store).build().unwrap_or_default()
}

/// Loads region, credentials and endpoints from the environment, once. The HTTP client is the
/// SDK's default one (as aws-smithy-runtime's `default_https_client` builds it: rustls + aws-lc,
/// connector settings, sleep, proxy from the environment) with this module's TLS context:
/// `AWS_CA_BUNDLE`'s certificates when set and usable, else the embedded Amazon roots.
pub async fn load_sdk_config() -> SdkConfig {
    let context = tls_context();
    let http = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(context.clone());
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    });
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts()).http_client(http).load().await
}

/// An SDK error with its whole cause chain (the service's code and message), for a log line or
/// a reason shown to an operator.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_secretsmanager::error::DisplayErrorContext(error).to_string()
}

/// [`load_sdk_config`] once per process: the secrets read at init and the function's clients
/// share it.
pub async fn shared_sdk_config() -> SdkConfig {
    static SDK: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();
    SDK.get_or_init(load_sdk_config).await.clone()
}

/// The AWS clients a function may use, each built on first use from one `SdkConfig` and kept
/// (clones of a client are cheap: an `Arc` inside).
///
/// Built lazily because a function uses one or two of the four: building a client does no I/O,
/// but it allocates the client's configuration, endpoint resolver and runtime plugins, and a
/// client that is constructed is linked into the bootstrap with all of that. Each function's init
/// asks for the clients its state holds (so no construction moves into the first invocation), and
/// only those are built or shipped (docs/performance.md, "Against the floor"). Every client has the one
/// X-Ray interceptor (`crate::xray::XrayInterceptor`): it sends the invocation's trace header and,
/// for a sampled invocation, records each operation as a subsegment.
#[derive(Clone, Debug)]
pub struct AwsClients {
    sdk: SdkConfig,
    s3_force_path_style: bool,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    s3: OnceLock<aws_sdk_s3::Client>,
    sesv2: OnceLock<aws_sdk_sesv2::Client>,
    sqs: OnceLock<aws_sdk_sqs::Client>,
    secretsmanager: OnceLock<aws_sdk_secretsmanager::Client>,
}

impl AwsClients {
    /// Clients of `sdk`; none is built yet. `s3_force_path_style` is for S3-compatible stores.
    pub fn new(sdk: &SdkConfig, s3_force_path_style: bool) -> Self {
        Self {
            sdk: sdk.clone(),
            s3_force_path_style,
            dynamodb: OnceLock::new(),
            s3: OnceLock::new(),
            sesv2: OnceLock::new(),
            sqs: OnceLock::new(),
            secretsmanager: OnceLock::new(),
        }
    }

    /// [`load_sdk_config`], then [`new`](Self::new): what a function's init does.
    pub async fn load(s3_force_path_style: bool) -> Self {
        Self::new(&shared_sdk_config().await, s3_force_path_style)
    }

    /// DynamoDB, with the bundle's timeouts.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.dynamodb.get_or_init(|| {
            let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(XrayInterceptor).build();
            aws_sdk_dynamodb::Client::from_conf(config)
        })
    }

    /// S3, path-style when asked for (S3-compatible stores).
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.get_or_init(|| {
            let config = aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(self.s3_force_path_style)
                .interceptor(XrayInterceptor)
                .build();
            aws_sdk_s3::Client::from_conf(config)
        })
    }

    /// The same clients with `s3` as the S3 client (a test's S3-compatible server).
    pub fn with_s3(mut self, s3: aws_sdk_s3::Client) -> Self {
        self.s3 = OnceLock::from(s3);
        self
    }

    /// SES v2 (sending email).
    pub fn sesv2(&self) -> &aws_sdk_sesv2::Client {
        self.sesv2.get_or_init(|| {
            let config = aws_sdk_sesv2::config::Builder::from(&self.sdk).interceptor(XrayInterceptor).build();
            aws_sdk_sesv2::Client::from_conf(config)
        })
    }

    /// Secrets Manager (the signing-key custom resource writes the key it makes; functions read
    /// their secrets at init through `crate::config::secrets`).
    pub fn secretsmanager(&self) -> &aws_sdk_secretsmanager::Client {
        self.secretsmanager.get_or_init(|| {
            let config = aws_sdk_secretsmanager::config::Builder::from(&self.sdk).interceptor(XrayInterceptor).build();
            aws_sdk_secretsmanager::Client::from_conf(config)
        })
    }

    /// SQS (queues and their dead-letter queues).
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.sqs.get_or_init(|| {
            let config = aws_sdk_sqs::config::Builder::from(&self.sdk).interceptor(XrayInterceptor).build();
            aws_sdk_sqs::Client::from_conf(config)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_roots_are_the_five_amazon_trust_services_anchors() {
        assert_eq!(check_trust_store(AMAZON_TRUST_SERVICES_ROOTS).expect("valid"), 5);
    }

    #[test]
    fn a_bundle_that_is_not_certificates_is_refused() {
        assert!(matches!(check_trust_store(b"not a certificate"), Err(TrustStoreError::Empty)));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(check_trust_store(broken).is_err());
    }
}
