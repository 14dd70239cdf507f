//! Presigned S3 uploads: the browser PUTs the file straight to S3; the function only signs.
//!
//! aws-sdk-rust has no presigned POST (and so no `content-length-range` condition), so an upload
//! is a presigned PUT whose *signed headers* include `Content-Type` and `Content-Length`: S3
//! recomputes the signature over the headers it receives and answers 403 to a body of any other
//! size or type, to a changed key, and to a URL past its expiry.
//!
//! Each URL also signs `If-None-Match: *`, so S3 takes one PUT per key: once the object exists, a
//! second PUT with the same URL (within its lifetime) gets 412 instead of overwriting what may
//! already be recorded. The answer's `headers` are exactly the signed headers, read back from the
//! URL's `X-Amz-SignedHeaders`: under Lambda the SDK adds an *unsigned* `X-Amzn-Trace-Id` to the
//! presigned request (recursion detection), which a browser must not send (the bucket CORS does
//! not allow it, and it proves nothing).
//!
//! The server chooses the key, `uploads/{userId}/{uuid}.{extension of the content type}`. The
//! client's filename never becomes part of it; [`display_filename`] makes a safe copy for display
//! and logs. Any S3-compatible store (Cloudflare R2, MinIO) works through the SDK's own
//! `AWS_ENDPOINT_URL_S3` plus `S3_FORCE_PATH_STYLE`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use serde::{Deserialize, Serialize};

use crate::auth::UserId;
use crate::config::EnvReader;
use crate::text::is_invisible;

/// Every key this module makes starts here; the function's IAM policy allows nothing else.
pub const KEY_PREFIX: &str = "uploads/";
/// The content types allowed when `UPLOAD_ALLOWED_TYPES` is unset.
pub const DEFAULT_ALLOWED_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
/// Largest upload when `UPLOAD_MAX_BYTES` is unset, in bytes (5 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024;
/// S3's limit for a single PUT; larger files need multipart uploads, which this does not sign.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// How long an upload URL is valid when `UPLOAD_URL_TTL_SECONDS` is unset, in seconds.
pub const DEFAULT_URL_TTL_SECS: u64 = 300;
/// Longest upload URL lifetime accepted, in seconds.
pub const MAX_URL_TTL_SECS: u64 = 3600;
/// The longest filename accepted in a request, in bytes (browsers give at most a few hundred).
pub const FILENAME_MAX_BYTES: usize = 1024;
/// The longest [`display_filename`], in characters.
pub const DISPLAY_FILENAME_MAX_CHARS: usize = 128;

/// Content types this module knows an extension for; an allowlist can only name these.
/// `image/svg+xml` is left out on purpose: an SVG can carry script.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("image/jpeg", "jpg"),
    ("image/png", "png"),
    ("image/webp", "webp"),
    ("image/gif", "gif"),
    ("image/avif", "avif"),
    ("image/heic", "heic"),
    ("application/pdf", "pdf"),
    ("video/mp4", "mp4"),
    ("video/webm", "webm"),
    ("audio/mpeg", "mp3"),
];

/// A content type with the extension its keys get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadType {
    /// The content type, lower case, exactly as signed (`image/png`).
    pub mime: &'static str,
    /// The key's extension, without the dot (`png`).
    pub extension: &'static str,
}

impl UploadType {
    /// The known type for `raw`, compared without case; parameters (`; charset=...`) are refused
    /// because the value the client sends must equal the signed one byte for byte.
    pub fn known(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        KNOWN_TYPES
            .iter()
            .find(|(mime, _)| mime.eq_ignore_ascii_case(raw))
            .map(|&(mime, extension)| Self { mime, extension })
    }

    /// The known type whose keys end in `.{extension}` (exact, lower case: keys are compared as text).
    pub fn by_extension(extension: &str) -> Option<Self> {
        KNOWN_TYPES.iter().find(|(_, ext)| *ext == extension).map(|&(mime, extension)| Self { mime, extension })
    }
}

/// Upload settings, from `UPLOADS_BUCKET`, `UPLOAD_ALLOWED_TYPES`, `UPLOAD_MAX_BYTES`,
/// `UPLOAD_URL_TTL_SECONDS` and `S3_FORCE_PATH_STYLE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSettings {
    /// The bucket uploads go to (`UPLOADS_BUCKET`).
    pub bucket: String,
    /// The types a client may upload (`UPLOAD_ALLOWED_TYPES`), each known.
    pub allowed_types: Vec<UploadType>,
    /// Largest upload, in bytes (`UPLOAD_MAX_BYTES`).
    pub max_bytes: u64,
    /// How long an upload URL is valid (`UPLOAD_URL_TTL_SECONDS`).
    pub url_ttl: Duration,
    /// Path-style addressing (`https://host/bucket/key`) for S3-compatible stores; `main` passes
    /// it to `AwsClients::new`.
    pub force_path_style: bool,
}

impl UploadSettings {
    /// Reads the upload variables; each bad one is recorded on `env`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        let bucket = env.required("UPLOADS_BUCKET", "the S3 bucket that receives uploads");
        let mut names = env.list("UPLOAD_ALLOWED_TYPES");
        if names.is_empty() {
            names = DEFAULT_ALLOWED_TYPES.iter().map(|s| (*s).to_owned()).collect();
        }
        let mut allowed_types = Vec::new();
        for name in &names {
            match UploadType::known(name) {
                Some(t) if !allowed_types.contains(&t) => allowed_types.push(t),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = KNOWN_TYPES.iter().map(|(m, _)| *m).collect();
                    env.reject(
                        "UPLOAD_ALLOWED_TYPES",
                        &format!("comma-separated content types from: {}", known.join(", ")),
                        "names a content type without a known extension",
                    );
                }
            }
        }
        Self {
            bucket,
            allowed_types,
            max_bytes: env.int_in("UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES, 1..=MAX_SINGLE_PUT_BYTES),
            url_ttl: env.seconds("UPLOAD_URL_TTL_SECONDS", DEFAULT_URL_TTL_SECS, 1..=MAX_URL_TTL_SECS),
            force_path_style: env.flag("S3_FORCE_PATH_STYLE", false),
        }
    }

    /// The allowed content types, as named in a refusal.
    pub fn allowed_mimes(&self) -> Vec<&'static str> {
        self.allowed_types.iter().map(|t| t.mime).collect()
    }
}

/// What the client asks for: `{"filename", "contentType", "size"}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadRequest {
    /// The client's filename, for display only (see [`display_filename`]).
    pub filename: String,
    /// The file's content type; it must be allowed and is signed.
    pub content_type: String,
    /// The file's exact size in bytes; it is signed.
    pub size: u64,
}

/// Why a request is refused; each names the limit it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    #[error("contentType is not allowed; allowed: {}", allowed.join(", "))]
    /// `contentType` is not one of the allowed types.
    TypeNotAllowed {
        /// The allowed types, for the client.
        allowed: Vec<&'static str>,
    },
    /// `size` is 0.
    #[error("size must be at least 1 byte")]
    Empty,
    #[error("size is {size} bytes; the limit is {max} bytes")]
    /// `size` is over the limit.
    TooLarge {
        /// The requested size, in bytes.
        size: u64,
        /// The limit (`UPLOAD_MAX_BYTES`), in bytes.
        max: u64,
    },
    /// The filename is empty or longer than [`FILENAME_MAX_BYTES`].
    #[error("filename must be 1 to {FILENAME_MAX_BYTES} bytes")]
    InvalidFilename,
}

/// The SDK could not sign (no credentials, say), or signed without the headers that pin type and size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("presigning failed: {0}")]
pub struct PresignError(pub String);

/// A validated request: the key, the type and size to sign, the display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPlan {
    /// The object key the server chose (see [`object_key`]).
    pub key: String,
    /// The type to sign.
    pub content_type: UploadType,
    /// The size to sign, in bytes.
    pub size: u64,
    /// The [`display_filename`] of the client's filename.
    pub filename: String,
}

/// The response: where and how to PUT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUpload {
    /// The presigned S3 URL to PUT the file to, valid until `expiresAt`.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// Every header the signature covers besides `Host`, with the exact values to send:
    /// `Content-Type`, `Content-Length` and `If-None-Match`.
    pub headers: BTreeMap<String, String>,
    /// The object key the file will have.
    pub key: String,
    /// RFC 3339, UTC, whole seconds.
    pub expires_at: String,
    /// The cleaned filename, for display.
    pub filename: String,
}

/// `uploads/{user}/{id}.{extension}`: every part comes from the server.
pub fn object_key(user: &UserId, id: uuid::Uuid, content_type: UploadType) -> String {
    format!("{KEY_PREFIX}{user}/{}.{}", id.hyphenated(), content_type.extension)
}

/// A copy of a client's filename that is safe to display and log: the last path component only,
/// control and invisible characters (CR, LF, NUL, bidi overrides, zero-width) removed, anything
/// but letters, digits and ` ._-()` replaced by `_`, no leading or trailing dots or spaces, at
/// most [`DISPLAY_FILENAME_MAX_CHARS`] characters (keeping a short extension). Never a key.
pub fn display_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .map(|c| if c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '(' | ')') { c } else { '_' })
        .collect();
    let trimmed = cleaned.trim_matches(['.', ' ']);
    let name = if trimmed.chars().count() <= DISPLAY_FILENAME_MAX_CHARS {
        trimmed.to_owned()
    } else {
        let ext = trimmed.rsplit_once('.').map(|(_, e)| e).filter(|e| (1..=10).contains(&e.chars().count()));
        match ext {
            Some(ext) => {
                let stem: String = trimmed.chars().take(DISPLAY_FILENAME_MAX_CHARS - ext.chars().count() - 1).collect();
                format!("{}.{ext}", stem.trim_end_matches(['.', ' ']))
            }
            None => trimmed
                .chars()
                .take(DISPLAY_FILENAME_MAX_CHARS)
                .collect::<String>()
                .trim_end_matches(['.', ' '])
                .to_owned(),
        }
    };
    if name.is_empty() { "upload".to_owned() } else { name }
}

/// The headers a presigned PUT must sign (besides `host`); without any of them S3 would accept
/// another size, another type, or an overwrite.
pub const REQUIRED_SIGNED_HEADERS: [&str; 3] = ["content-length", "content-type", "if-none-match"];

/// A presigning window of `ttl` starting now, in whole seconds (as X-Amz-Date is), so that an
/// expiry computed from the returned start is exactly when S3 starts refusing the URL.
pub(crate) fn presigning_config(ttl: Duration) -> Result<(PresigningConfig, SystemTime), String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let start = UNIX_EPOCH + Duration::from_secs(now);
    let config = PresigningConfig::builder().start_time(start).expires_in(ttl).build().map_err(|e| e.to_string())?;
    Ok((config, start))
}

/// A client for presigning: `s3`'s configuration with request checksums only when an operation
/// requires them. Since aws-sdk-s3 1.69 the default (`WhenSupported`) computes a CRC32 of the
/// request body; a presigned request has no body yet, so a checksum in the URL would be the empty
/// body's and S3 would refuse the browser's real file. This SDK version skips checksums on
/// presigned requests by itself; the setting makes that independent of the SDK's internals, and
/// [`Uploads::presign`] refuses any URL that carries a checksum anyway.
pub fn presigning_client(s3: &aws_sdk_s3::Client) -> aws_sdk_s3::Client {
    let config =
        s3.config().to_builder().request_checksum_calculation(RequestChecksumCalculation::WhenRequired).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Signs uploads into one bucket.
#[derive(Clone, Debug)]
pub struct Uploads {
    s3: aws_sdk_s3::Client,
    settings: UploadSettings,
}

impl Uploads {
    /// Signs into `settings.bucket` with a presigning copy of `s3`.
    pub fn new(s3: aws_sdk_s3::Client, settings: UploadSettings) -> Self {
        Self { s3: presigning_client(&s3), settings }
    }

    /// The client presigned URLs are made with.
    pub fn presigner(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// The settings uploads are checked against.
    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    /// Checks the request against the settings and chooses the key. No I/O.
    pub fn plan(&self, user: &UserId, req: &UploadRequest) -> Result<UploadPlan, UploadRefused> {
        let content_type = UploadType::known(&req.content_type)
            .filter(|t| self.settings.allowed_types.contains(t))
            .ok_or_else(|| UploadRefused::TypeNotAllowed { allowed: self.settings.allowed_mimes() })?;
        if req.size == 0 {
            return Err(UploadRefused::Empty);
        }
        if req.size > self.settings.max_bytes {
            return Err(UploadRefused::TooLarge { size: req.size, max: self.settings.max_bytes });
        }
        if req.filename.is_empty() || req.filename.len() > FILENAME_MAX_BYTES {
            return Err(UploadRefused::InvalidFilename);
        }
        Ok(UploadPlan {
            key: object_key(user, uuid::Uuid::new_v4(), content_type),
            content_type,
            size: req.size,
            filename: display_filename(&req.filename),
        })
    }

    /// Presigns a PUT of exactly `plan.size` bytes of `plan.content_type` to `plan.key`, valid for
    /// the configured TTL from now. Signing is local: no request reaches S3.
    pub async fn presign(&self, plan: UploadPlan) -> Result<PresignedUpload, PresignError> {
        let (config, start) = presigning_config(self.settings.url_ttl).map_err(PresignError)?;
        let length = i64::try_from(plan.size).map_err(|_| PresignError("size does not fit an i64".into()))?;
        let presigned = self
            .s3
            .put_object()
            .bucket(&self.settings.bucket)
            .key(&plan.key)
            .content_type(plan.content_type.mime)
            .content_length(length)
            // One PUT per key: a second one with this URL gets 412 PreconditionFailed.
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(|e| PresignError(DisplayErrorContext(e).to_string()))?;

        // Fail closed: without these among the signed headers, S3 would take any size or type, or
        // an overwrite.
        let signed = signed_headers(presigned.uri());
        if !REQUIRED_SIGNED_HEADERS.iter().chain(&["host"]).all(|h| signed.iter().any(|s| s == h)) {
            return Err(PresignError(format!("the URL signs {signed:?}, not {REQUIRED_SIGNED_HEADERS:?}")));
        }
        // A checksum signed before the body exists is the empty body's: S3 would refuse the file.
        let query = presigned.uri().split_once('?').map(|(_, q)| q.to_ascii_lowercase()).unwrap_or_default();
        if signed.iter().any(|h| h.starts_with("x-amz-checksum") || h.starts_with("x-amz-sdk-checksum"))
            || query.contains("x-amz-checksum")
            || query.contains("x-amz-sdk-checksum")
        {
            return Err(PresignError(format!("the URL carries a request checksum: {signed:?}")));
        }
        let headers = browser_headers(&signed, presigned.headers())?;
        let expires_at = time::OffsetDateTime::from(start + self.settings.url_ttl)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| PresignError(e.to_string()))?;
        Ok(PresignedUpload {
            upload_url: presigned.uri().to_owned(),
            method: "PUT",
            headers,
            key: plan.key,
            expires_at,
            filename: plan.filename,
        })
    }
}

/// The lower-case names in a presigned URL's `X-Amz-SignedHeaders` (`;` arrives as `%3B`).
pub fn signed_headers(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("X-Amz-SignedHeaders="))
        .flat_map(|v| {
            v.replace("%3B", ";").replace("%3b", ";").split(';').map(str::to_ascii_lowercase).collect::<Vec<_>>()
        })
        .collect()
}

/// The headers a browser must send: every signed header but `host` (the browser sets it from the
/// URL), with the value the SDK signed. Only the signed ones: anything else the SDK put on the
/// request (the unsigned `X-Amzn-Trace-Id` under Lambda) is left out.
pub fn browser_headers<'a>(
    signed: &[String],
    request_headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>, PresignError> {
    let request_headers: Vec<(&str, &str)> = request_headers.collect();
    let mut out = BTreeMap::new();
    for name in signed.iter().filter(|h| *h != "host") {
        let value = request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| (*v).to_owned())
            .ok_or_else(|| PresignError(format!("the URL signs {name} but the request has no value for it")))?;
        out.insert(canonical_header(name), value);
    }
    Ok(out)
}

/// `content-type` → `Content-Type`, the spelling a reader of the JSON expects.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<UploadSettings, crate::config::ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut env = EnvReader::from_fn(move |k| map.get(k).cloned());
        let s = UploadSettings::from_env(&mut env);
        env.finish(s)
    }

    fn uploads(ttl_secs: u64) -> Uploads {
        let mut s = settings(&[("UPLOADS_BUCKET", "bucket")]).unwrap();
        s.url_ttl = Duration::from_secs(ttl_secs);
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .build();
        Uploads::new(aws_sdk_s3::Client::from_conf(config), s)
    }

    fn request(filename: &str, content_type: &str, size: u64) -> UploadRequest {
        UploadRequest { filename: filename.into(), content_type: content_type.into(), size }
    }

    fn user() -> UserId {
        UserId::parse("user-1").unwrap()
    }

    /// `uploads/user-1/<uuid v4>.<ext>`, nothing else.
    fn assert_server_key(key: &str, ext: &str) {
        let rest = key.strip_prefix("uploads/user-1/").unwrap_or_else(|| panic!("prefix: {key}"));
        let (id, e) = rest.split_once('.').unwrap_or_else(|| panic!("extension: {key}"));
        assert_eq!(e, ext, "{key}");
        let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("uuid: {key}"));
        assert_eq!(parsed.hyphenated().to_string(), id);
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn defaults_and_configuration() {
        let s = settings(&[("UPLOADS_BUCKET", "b")]).unwrap();
        assert_eq!(s.allowed_mimes(), DEFAULT_ALLOWED_TYPES);
        assert_eq!(s.max_bytes, 5 * 1024 * 1024);
        assert_eq!(s.url_ttl, Duration::from_secs(300));
        assert!(!s.force_path_style);

        let s = settings(&[
            ("UPLOADS_BUCKET", "b"),
            ("UPLOAD_ALLOWED_TYPES", "application/pdf, IMAGE/PNG,image/png"),
            ("UPLOAD_MAX_BYTES", "1000"),
            ("UPLOAD_URL_TTL_SECONDS", "60"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert_eq!(s.allowed_mimes(), ["application/pdf", "image/png"]);
        assert_eq!((s.max_bytes, s.url_ttl.as_secs(), s.force_path_style), (1000, 60, true));
    }

    #[test]
    fn bad_configuration_names_every_variable() {
        let err = settings(&[
            ("UPLOAD_ALLOWED_TYPES", "image/png,image/svg+xml"),
            ("UPLOAD_MAX_BYTES", "0"),
            ("UPLOAD_URL_TTL_SECONDS", "86400"),
            ("S3_FORCE_PATH_STYLE", "sometimes"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(
            names,
            [
                "UPLOADS_BUCKET",
                "UPLOAD_ALLOWED_TYPES",
                "UPLOAD_MAX_BYTES",
                "UPLOAD_URL_TTL_SECONDS",
                "S3_FORCE_PATH_STYLE"
            ]
        );
    }

    #[test]
    fn plan_checks_type_then_size_then_filename() {
        let u = uploads(300);
        let plan = u.plan(&user(), &request("cat.PNG", "image/png", 1)).unwrap();
        assert_server_key(&plan.key, "png");
        assert_eq!((plan.content_type.mime, plan.size, plan.filename.as_str()), ("image/png", 1, "cat.PNG"));
        assert_server_key(&u.plan(&user(), &request("x", "IMAGE/JPEG", 10)).unwrap().key, "jpg");
        assert_server_key(&u.plan(&user(), &request("x", "image/webp", DEFAULT_MAX_BYTES)).unwrap().key, "webp");

        let not_allowed = UploadRefused::TypeNotAllowed { allowed: DEFAULT_ALLOWED_TYPES.to_vec() };
        for ct in ["image/svg+xml", "text/html", "application/pdf", "image/png; charset=utf-8", "image/*", ""] {
            assert_eq!(u.plan(&user(), &request("a.png", ct, 1)), Err(not_allowed.clone()), "{ct}");
        }
        assert_eq!(u.plan(&user(), &request("a.png", "image/png", 0)), Err(UploadRefused::Empty));
        assert_eq!(
            u.plan(&user(), &request("a.png", "image/png", DEFAULT_MAX_BYTES + 1)),
            Err(UploadRefused::TooLarge { size: DEFAULT_MAX_BYTES + 1, max: DEFAULT_MAX_BYTES })
        );
        assert_eq!(u.plan(&user(), &request("", "image/png", 1)), Err(UploadRefused::InvalidFilename));
        let long = "a".repeat(FILENAME_MAX_BYTES + 1);
        assert_eq!(u.plan(&user(), &request(&long, "image/png", 1)), Err(UploadRefused::InvalidFilename));
        assert!(not_allowed.to_string().contains("image/jpeg, image/png, image/webp"));
        assert!(UploadRefused::TooLarge { size: 9, max: 5 }.to_string().contains("the limit is 5 bytes"));
    }

    const EVIL_NAMES: &[&str] = &[
        "../../etc/passwd",
        "..\\..\\windows\\system32\\config",
        "/absolute/path.png",
        "a\r\nX-Amz-Meta-Evil: 1\r\n.png",
        "nul\0byte.png",
        "invoice\u{202E}gpj.exe",
        "zero\u{200B}width\u{FEFF}.png",
        "full\u{FF0F}width\u{FF0E}\u{FF0E}\u{FF0F}solidus.png",
        "division\u{2215}slash.png",
        "%2e%2e%2fencoded.png",
        "....",
        "uploads/other-user/x.png",
        "?query=1#frag.png",
    ];

    #[test]
    fn hostile_filenames_never_reach_the_key() {
        let u = uploads(300);
        for name in EVIL_NAMES {
            let plan = u.plan(&user(), &request(name, "image/png", 10)).unwrap();
            assert_server_key(&plan.key, "png");
            let shown = &plan.filename;
            assert!(!shown.is_empty() && shown.chars().count() <= DISPLAY_FILENAME_MAX_CHARS, "{name:?} → {shown:?}");
            assert!(
                shown.chars().all(|c| c.is_alphanumeric() || " ._-()".contains(c)),
                "{name:?} → {shown:?} has a character outside the allowlist"
            );
            assert!(!shown.starts_with('.') && !shown.contains(['/', '\\', '\r', '\n', '\0', '\u{202E}']), "{shown:?}");
        }
    }

    #[test]
    fn display_filename_examples() {
        assert_eq!(display_filename("../../etc/passwd"), "passwd");
        assert_eq!(display_filename("C:\\Users\\me\\photo 1 (2).jpg"), "photo 1 (2).jpg");
        assert_eq!(display_filename("a\r\nb.png"), "ab.png");
        assert_eq!(display_filename("invoice\u{202E}gpj.exe"), "invoicegpj.exe");
        assert_eq!(display_filename("résumé 写真.webp"), "résumé 写真.webp");
        assert_eq!(display_filename("a<b>|c\".png"), "a_b__c_.png");
        assert_eq!(display_filename("..."), "upload");
        assert_eq!(display_filename("dir/"), "upload");
        assert_eq!(display_filename(".htaccess"), "htaccess");
        let long = format!("{}.jpeg", "x".repeat(300));
        let shown = display_filename(&long);
        assert_eq!(shown.chars().count(), DISPLAY_FILENAME_MAX_CHARS);
        assert!(shown.ends_with("x.jpeg"), "{shown}");
    }

    #[test]
    fn signed_headers_are_read_from_the_url() {
        let url = "https://h/b/k?X-Amz-Algorithm=A&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&X-Amz-Signature=s";
        assert_eq!(signed_headers(url), ["content-length", "content-type", "host"]);
        assert!(signed_headers("https://h/b/k").is_empty());
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("x-amz-meta-a"), "X-Amz-Meta-A");
    }

    #[tokio::test]
    async fn presigned_put_signs_type_length_and_expiry() {
        let u = uploads(300);
        let plan = u.plan(&user(), &request("cat.png", "image/png", 1234)).unwrap();
        let key = plan.key.clone();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let p = u.presign(plan).await.unwrap();
        assert_eq!(p.method, "PUT");
        assert_eq!(p.key, key);
        assert!(p.upload_url.starts_with(&format!("http://127.0.0.1:9/bucket/{key}?")), "{}", p.upload_url);
        assert!(p.upload_url.contains("X-Amz-Expires=300"), "{}", p.upload_url);
        assert!(
            p.upload_url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match"),
            "{}",
            p.upload_url
        );
        assert!(p.upload_url.contains("X-Amz-Signature="), "{}", p.upload_url);
        assert!(!p.upload_url.to_ascii_lowercase().contains("checksum"), "{}", p.upload_url);
        let expected: BTreeMap<String, String> = [
            ("Content-Length".to_owned(), "1234".to_owned()),
            ("Content-Type".to_owned(), "image/png".to_owned()),
            ("If-None-Match".to_owned(), "*".to_owned()),
        ]
        .into();
        assert_eq!(p.headers, expected, "exactly the headers the client must send");

        let expires = time::OffsetDateTime::parse(&p.expires_at, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp() as u64;
        assert!((before + 300..=before + 302).contains(&expires), "{} vs {before}", p.expires_at);
        assert!(p.expires_at.ends_with('Z'), "{}", p.expires_at);

        let json = serde_json::to_value(&p).unwrap();
        let mut members: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, ["expiresAt", "filename", "headers", "key", "method", "uploadUrl"]);
    }

    #[test]
    fn browser_headers_are_the_signed_ones_only() {
        let signed: Vec<String> = ["content-length", "content-type", "host", "if-none-match"].map(String::from).into();
        let request = [
            ("content-type", "image/png"),
            ("content-length", "3"),
            ("if-none-match", "*"),
            ("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793"),
        ];
        let headers = browser_headers(&signed, request.into_iter()).unwrap();
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["Content-Length", "Content-Type", "If-None-Match"]);
        // A signed header without a value is a bug in the signer, never something to guess.
        assert!(browser_headers(&signed, request[..2].iter().copied()).is_err());
    }

    #[test]
    fn the_presigning_client_computes_checksums_only_when_required() {
        let u = uploads(300);
        assert_eq!(
            u.presigner().config().request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
    }

    #[test]
    fn request_shape_is_strict() {
        let ok: UploadRequest =
            serde_json::from_str(r#"{"filename":"a.png","contentType":"image/png","size":3}"#).unwrap();
        assert_eq!(ok, request("a.png", "image/png", 3));
        for bad in [
            r#"{"filename":"a.png","contentType":"image/png","size":-1}"#,
            r#"{"filename":"a.png","contentType":"image/png","size":1.5}"#,
            r#"{"filename":"a.png","contentType":"image/png"}"#,
            r#"{"filename":"a.png","contentType":"image/png","size":1,"key":"x"}"#,
        ] {
            assert!(serde_json::from_str::<UploadRequest>(bad).is_err(), "{bad}");
        }
    }
}
