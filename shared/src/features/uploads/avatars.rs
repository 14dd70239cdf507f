//! Recording an upload as the caller's avatar: the third step of a browser upload (presign, PUT to
//! S3, then send the key here), and the public profile that shows it.
//!
//! S3 already enforced what the URL signed (size, type, one PUT per key), but not that a "PNG" is
//! a PNG, and an object nobody records stays until the bucket's lifecycle rule expires it. So a
//! record checks, in this order, stopping at the first refusal:
//!
//! 1. the key, as text: exactly `uploads/{userId}/{uuid v4}.{ext}` as [`crate::uploads`] issues
//!    them (ASCII, no `%`, no `..`, no second slash), under the *caller's* prefix, of an avatar type.
//!    Only this service can sign a PUT under `uploads/`, and the key names the user it was signed
//!    for, so an object under the caller's prefix is one that was issued to the caller;
//! 2. `HeadObject`: the object exists, is 1 byte to the size limit, and has the content type the
//!    key's extension was issued for (S3's own metadata, not what the client said). A missing
//!    key is 404 only because the role may `s3:ListBucket`: without it S3 answers 403 (see
//!    [`head_failure`]);
//! 3. a GET of the whole object (at most the size limit, checked in 2): one well-formed image
//!    of the declared type from its first byte to its last ([`crate::uploads::structure`]), so
//!    a PNG header in front of HTML, or a ZIP appended to a JPEG, is refused.
//!
//! An object that fails 2 or 3 is deleted (it can only be a bad upload); nothing else is touched.
//! A passing object is copied to `avatars/{userId}/{uuid}.{ext}`, a prefix the lifecycle rule does
//! not expire, and the user's item in the `Users` table is updated with a version condition:
//! concurrent records are applied one after the other, each replacing the one it read, so the
//! last to commit is the avatar and each deletes exactly the avatar it replaced (no orphan, no
//! lost object). The previous avatar is deleted only after the new record is written (as the
//! seed's `deleteFile`), and the upload object last. Recording the key that is already the avatar
//! answers the same profile without touching anything (idempotent).
//!
//! Profiles show the avatar through the edge when there is one (`AVATAR_BASE_URL`: CloudFront
//! reads `avatars/` with origin access control and caches it; the key is immutable), otherwise as
//! a presigned GET valid for `AVATAR_URL_TTL_SECONDS` (60 s in the template), each one counted
//! (`AvatarUrlsPresigned`). The bucket stays private either way.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::error::DisplayErrorContext;
use serde::{Deserialize, Serialize};

use crate::auth::UserId;
use crate::clients::dynamo::{self, DynamoError};
use crate::clock::timestamp_now;
use crate::config::EnvReader;
use crate::uploads::{KEY_PREFIX, UploadSettings, UploadType, presigning_client, presigning_config};

/// Where recorded avatars live; the bucket's lifecycle rule expires only [`KEY_PREFIX`].
pub const AVATAR_PREFIX: &str = "avatars/";
/// How long a profile's avatar URL stays valid by default, in seconds.
pub const DEFAULT_AVATAR_URL_TTL_SECS: u64 = 300;
/// The types an avatar may be, each with the signature its first bytes must have.
pub const AVATAR_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];
/// How many times a record re-reads the user and tries again when another record committed first.
const MAX_WRITE_ATTEMPTS: usize = 8;

/// `USERS_TABLE`, `AVATAR_URL_TTL_SECONDS` and `AVATAR_BASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvatarSettings {
    /// The DynamoDB table of users (`USERS_TABLE`) whose items carry the avatar.
    pub users_table: String,
    /// How long a profile's presigned avatar GET is valid (`AVATAR_URL_TTL_SECONDS`, 1 to 3600 s).
    pub url_ttl: Duration,
    /// Where the edge serves `avatars/` (`AVATAR_BASE_URL`, the CloudFront distribution's
    /// `https://` origin); unset or empty: profiles hand out presigned GETs instead.
    pub base_url: Option<String>,
}

impl AvatarSettings {
    /// Reads `USERS_TABLE`, `AVATAR_URL_TTL_SECONDS` and `AVATAR_BASE_URL`; each bad one is
    /// recorded on `env`.
    pub fn from_env(env: &mut EnvReader<'_>) -> Self {
        Self {
            users_table: env.required("USERS_TABLE", "the DynamoDB users table name"),
            url_ttl: env.seconds("AVATAR_URL_TTL_SECONDS", DEFAULT_AVATAR_URL_TTL_SECS, 1..=3600),
            base_url: env
                .optional("AVATAR_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
        }
    }
}

/// `{"key": "uploads/..."}`; unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRequest {
    /// The upload key the presign step returned, `uploads/{userId}/{uuid}.{ext}`.
    pub key: String,
}

/// An upload key as [`crate::uploads::object_key`] makes them, parsed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadKey {
    /// The user the key was issued to.
    pub user: UserId,
    /// The object's name, a UUID v4.
    pub id: uuid::Uuid,
    /// The type the key's extension was issued for.
    pub content_type: UploadType,
}

impl UploadKey {
    /// Accepts exactly `uploads/{user id}/{lower-case hyphenated uuid v4}.{known extension}`.
    /// Anything else is [`KeyRefused::Malformed`], whatever it would resolve to: the key is
    /// compared as text and never normalised, so `..`, `%2e`, `//`, fullwidth or other
    /// non-ASCII look-alikes cannot reach another key.
    pub fn parse(raw: &str) -> Result<Self, KeyRefused> {
        if raw.is_empty() || raw.len() > 256 {
            return Err(KeyRefused::Malformed("a key is 1 to 256 characters"));
        }
        if !raw.is_ascii() || raw.bytes().any(|b| b.is_ascii_control()) {
            return Err(KeyRefused::Malformed("a key is printable ASCII"));
        }
        if raw.contains('%') || raw.contains('\\') || raw.split('/').any(|p| p == "." || p == "..") {
            return Err(KeyRefused::Malformed("a key has no escapes and no relative parts"));
        }
        let rest = raw.strip_prefix(KEY_PREFIX).ok_or(KeyRefused::Malformed("a key starts with uploads/"))?;
        let (user, file) =
            rest.split_once('/').ok_or(KeyRefused::Malformed("a key is uploads/{userId}/{uuid}.{ext}"))?;
        let user = UserId::parse(user).map_err(|_| KeyRefused::Malformed("the key's user id is not valid"))?;
        let (id, ext) = file.split_once('.').ok_or(KeyRefused::Malformed("a key is uploads/{userId}/{uuid}.{ext}"))?;
        let parsed = uuid::Uuid::parse_str(id).map_err(|_| KeyRefused::Malformed("the key's name is not a uuid"))?;
        if parsed.hyphenated().to_string() != id || parsed.get_version_num() != 4 {
            return Err(KeyRefused::Malformed("the key's name is not a lower-case uuid v4"));
        }
        let content_type = UploadType::by_extension(ext).ok_or(KeyRefused::Malformed("unknown extension"))?;
        Ok(Self { user, id: parsed, content_type })
    }

    /// The key as issued, `uploads/{user}/{id}.{ext}`.
    pub fn upload_key(&self) -> String {
        crate::uploads::object_key(&self.user, self.id, self.content_type)
    }

    /// Where the avatar is copied to, `avatars/{user}/{id}.{ext}`.
    pub fn avatar_key(&self) -> String {
        format!("{AVATAR_PREFIX}{}/{}.{}", self.user, self.id.hyphenated(), self.content_type.extension)
    }
}

/// Why a key is not one the caller may record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    /// Not a key this service issues; the text says which rule it broke.
    #[error("the key is not one this service issues: {0}")]
    Malformed(&'static str),
    /// A well-formed key under another user's prefix.
    #[error("the key belongs to another user")]
    OtherUser,
}

/// Why a record is refused; nothing was recorded, and only an offending object was deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvatarRefused {
    /// The key itself is refused (step 1).
    #[error(transparent)]
    Key(#[from] KeyRefused),
    /// The key's type is not one of [`AVATAR_TYPES`].
    #[error("an avatar is one of: {}", AVATAR_TYPES.join(", "))]
    NotAnAvatarType,
    /// No object under the key (the PUT has not happened yet, or the lifecycle rule removed it).
    #[error("nothing was uploaded under this key (yet)")]
    NotUploaded,
    /// The object has zero bytes.
    #[error("the uploaded object is empty; it was deleted")]
    Empty,
    #[error("the uploaded object is {size} bytes; the limit is {max} bytes; it was deleted")]
    /// The object is larger than the upload limit.
    TooLarge {
        /// The object's size, in bytes.
        size: u64,
        /// The limit (`UPLOAD_MAX_BYTES`), in bytes.
        max: u64,
    },
    #[error("the uploaded object is stored as {stored:?}, not {expected}; it was deleted")]
    /// S3 stores the object under another content type than its key's extension.
    WrongType {
        /// The stored `Content-Type`, if any.
        stored: Option<String>,
        /// The type the key was issued for.
        expected: &'static str,
    },
    #[error("the uploaded bytes are not one {expected} image ({why}); the object was deleted")]
    /// The bytes are not exactly one well-formed image of the declared type.
    ContentMismatch {
        /// The declared type.
        expected: &'static str,
        /// What the structure check found.
        why: crate::uploads::NotAnImage,
    },
}

/// S3 or DynamoDB failed (or kept losing the race); transient unless the service says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("S3 {op} failed: {message}")]
    /// An S3 call failed.
    S3 {
        /// The operation (`HeadObject`, `CopyObject`, ...).
        op: &'static str,
        /// The SDK's error with its context.
        message: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A DynamoDB call on the `Users` table failed.
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    /// The user's item lacks an attribute or has one of the wrong type.
    #[error("the user item is malformed: {0}")]
    BadItem(&'static str),
    /// Every attempt lost the version race to another record of the same user.
    #[error("{MAX_WRITE_ATTEMPTS} concurrent records of this user committed first")]
    Contended,
    /// S3 refused the role: a deployment fault, not the caller's, and no retry mends it. For a
    /// `HeadObject` it is what a missing key looks like to a role without `s3:ListBucket`.
    #[error("S3 {op} was denied (403): the role lacks a permission{hint}")]
    AccessDenied {
        /// The operation.
        op: &'static str,
        /// What most likely lacks.
        hint: &'static str,
    },
    /// The SDK could not presign the profile's avatar GET.
    #[error("presigning the avatar URL failed: {0}")]
    Presign(String),
}

/// A record or a profile read: refused (4xx) or failed (5xx).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The caller's mistake: nothing was recorded.
    #[error(transparent)]
    Refused(#[from] AvatarRefused),
    /// A dependency failed: worth a retry.
    #[error(transparent)]
    Failed(#[from] AvatarError),
}

fn s3_error<E>(op: &'static str, e: aws_sdk_s3::error::SdkError<E>) -> AvatarError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&e).to_string();
    AvatarError::S3 { op, message, source: Box::new(e) }
}

/// What a failed `HeadObject` of an upload means. S3 answers a missing key with 404 only to a
/// caller allowed `s3:ListBucket` on the bucket; to any other it answers 403, so that it cannot
/// learn which keys exist ("Permissions" in the HeadObject API reference,
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html>). The template grants
/// the list permission, so 404 is "not uploaded (yet)"; a 403 is a deployment fault (500, logged
/// with the likely cause), never the 503 that would invite a retry that cannot succeed. A HEAD
/// response has no body, so the status is all there is to go on.
pub fn head_failure<E>(e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> RecordError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(404) => AvatarRefused::NotUploaded.into(),
        Some(403) => AvatarError::AccessDenied {
            op: "HeadObject",
            hint: " (s3:GetObject on the key, or s3:ListBucket on the bucket: without it a missing key is 403)",
        }
        .into(),
        _ => s3_error("HeadObject", e).into(),
    }
}

/// Does `head` start with the signature of `mime`? `None` for a type without a known signature.
pub fn matches_signature(mime: &str, head: &[u8]) -> Option<bool> {
    Some(match mime {
        "image/jpeg" => head.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]),
        "image/webp" => head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP",
        _ => return None,
    })
}

/// The avatar part of a user's item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Avatar {
    /// Where it lives now (`avatars/...`).
    pub key: String,
    /// The upload key it was recorded from (what the client sent).
    pub upload_key: String,
    /// The object's content type, checked against its first bytes.
    pub content_type: String,
    /// Object size, in bytes.
    pub size: u64,
    /// When it was recorded, RFC 3339 UTC.
    pub updated_at: String,
}

/// A user's item in `Users`: key `id`; `version` counts avatar writes (the write condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The user, the `Users` table key.
    pub id: UserId,
    /// Avatar writes so far; each write requires the version it read.
    pub version: u64,
    /// The current avatar, if any.
    pub avatar: Option<Avatar>,
}

/// The public profile: `{"id", "avatar": {"url", "expiresAt", "contentType", "size", "updatedAt"} | null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The user whose profile this is.
    pub id: String,
    /// The avatar, `null` when the user has none.
    pub avatar: Option<AvatarView>,
}

/// An avatar as a profile shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvatarView {
    /// Through the edge (cached; the key is immutable), or a short presigned GET valid until
    /// `expiresAt`.
    pub url: String,
    /// When a presigned `url` stops working, RFC 3339 UTC; absent for an edge URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The image's content type.
    pub content_type: String,
    /// Image size, in bytes.
    pub size: u64,
    /// When it was recorded, RFC 3339 UTC.
    pub updated_at: String,
}

/// Avatars over one bucket and the `Users` table.
#[derive(Clone, Debug)]
pub struct Avatars {
    s3: aws_sdk_s3::Client,
    presigner: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    uploads: UploadSettings,
    settings: AvatarSettings,
}

impl Avatars {
    /// Records avatars from `uploads`' bucket into `settings`' users table.
    pub fn new(
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        uploads: UploadSettings,
        settings: AvatarSettings,
    ) -> Self {
        Self { presigner: presigning_client(&s3), s3, dynamodb, uploads, settings }
    }

    /// The users table and URL lifetime.
    pub fn settings(&self) -> &AvatarSettings {
        &self.settings
    }

    /// Step 1: the key as text, for `caller`. No I/O.
    pub fn check_key(&self, caller: &UserId, raw: &str) -> Result<UploadKey, AvatarRefused> {
        let key = UploadKey::parse(raw)?;
        if &key.user != caller {
            return Err(KeyRefused::OtherUser.into());
        }
        if !AVATAR_TYPES.contains(&key.content_type.mime) || !self.uploads.allowed_types.contains(&key.content_type) {
            return Err(AvatarRefused::NotAnAvatarType);
        }
        Ok(key)
    }

    /// Records the upload `raw_key` as `caller`'s avatar and returns the profile.
    pub async fn record(&self, caller: &UserId, raw_key: &str) -> Result<Profile, RecordError> {
        let key = self.check_key(caller, raw_key)?;
        let upload_key = key.upload_key();
        let mut current = self.user(caller).await?;
        if current.as_ref().and_then(|u| u.avatar.as_ref()).is_some_and(|a| a.upload_key == upload_key) {
            return Ok(self.profile_of(current.as_ref()).await?.unwrap_or_else(|| empty_profile(caller)));
        }

        let size = self.verify(&key, &upload_key).await?;
        let avatar_key = key.avatar_key();
        self.s3
            .copy_object()
            .bucket(&self.uploads.bucket)
            .copy_source(format!("{}/{}", self.uploads.bucket, upload_key))
            .key(&avatar_key)
            .send()
            .await
            .map_err(|e| s3_error("CopyObject", e))?;
        let avatar = Avatar {
            key: avatar_key.clone(),
            upload_key: upload_key.clone(),
            content_type: key.content_type.mime.to_owned(),
            size,
            updated_at: timestamp_now(),
        };

        let mut replaced = None;
        let mut written = None;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let version = current.as_ref().map(|u| u.version);
            match self.write_avatar(caller, &avatar, version).await {
                Ok(record) => {
                    replaced = current.and_then(|u| u.avatar);
                    written = Some(record);
                    break;
                }
                Err(WriteOutcome::Conflict) => {
                    current = self.user(caller).await?;
                    // A concurrent record of this same key committed first: it is the avatar.
                    if current.as_ref().and_then(|u| u.avatar.as_ref()).is_some_and(|a| a.upload_key == upload_key) {
                        return Ok(self.profile_of(current.as_ref()).await?.unwrap_or_else(|| empty_profile(caller)));
                    }
                }
                Err(WriteOutcome::Failed(e)) => {
                    self.delete_quietly(&avatar_key).await;
                    return Err(e.into());
                }
            }
        }
        let Some(record) = written else {
            self.delete_quietly(&avatar_key).await;
            return Err(AvatarError::Contended.into());
        };

        // After the record: the avatar it replaced, then the upload (now copied). A failure here
        // leaves an unreachable object, never a record without its object; logged for an operator.
        if let Some(old) = replaced.filter(|old| old.key != avatar_key) {
            self.delete_quietly(&old.key).await;
        }
        self.delete_quietly(&upload_key).await;
        tracing::info!(user = %caller, key = %avatar_key, version = record.version, "avatar recorded");
        Ok(self.profile_of(Some(&record)).await?.unwrap_or_else(|| empty_profile(caller)))
    }

    /// Steps 2 and 3; deletes the object when it is not what was signed. Returns its size.
    async fn verify(&self, key: &UploadKey, upload_key: &str) -> Result<u64, RecordError> {
        let head = match self.s3.head_object().bucket(&self.uploads.bucket).key(upload_key).send().await {
            Ok(head) => head,
            Err(e) => return Err(head_failure(e)),
        };
        let size = u64::try_from(head.content_length().unwrap_or(0)).unwrap_or(0);
        let expected = key.content_type.mime;
        let refused = if size == 0 {
            Some(AvatarRefused::Empty)
        } else if size > self.uploads.max_bytes {
            Some(AvatarRefused::TooLarge { size, max: self.uploads.max_bytes })
        } else if head.content_type() != Some(expected) {
            Some(AvatarRefused::WrongType { stored: head.content_type().map(str::to_owned), expected })
        } else {
            None
        };
        if let Some(refused) = refused {
            self.delete(upload_key).await?;
            return Err(refused.into());
        }

        // The whole object: HeadObject bounded it by the upload limit. The range pins the read
        // to that size even if the object were replaced in between.
        let got = self
            .s3
            .get_object()
            .bucket(&self.uploads.bucket)
            .key(upload_key)
            .range(format!("bytes=0-{}", size - 1))
            .send()
            .await
            .map_err(|e| s3_error("GetObject", e))?;
        let bytes = got.body.collect().await.map_err(|e| AvatarError::S3 {
            op: "GetObject",
            message: e.to_string(),
            source: Box::new(e),
        })?;
        let checked = crate::uploads::check_image(expected, &bytes.into_bytes())
            .unwrap_or(Err(crate::uploads::NotAnImage::Signature(expected)));
        if let Err(why) = checked {
            self.delete(upload_key).await?;
            return Err(AvatarRefused::ContentMismatch { expected, why }.into());
        }
        Ok(size)
    }

    async fn delete(&self, key: &str) -> Result<(), AvatarError> {
        self.s3
            .delete_object()
            .bucket(&self.uploads.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error("DeleteObject", e))
    }

    async fn delete_quietly(&self, key: &str) {
        if let Err(e) = self.delete(key).await {
            tracing::warn!(key, error = %e, "deleting an object failed; it stays until deleted by hand");
        }
    }

    /// The user's item (strongly consistent), or `None` when the user never recorded anything.
    pub async fn user(&self, user: &UserId) -> Result<Option<UserRecord>, AvatarError> {
        let item = dynamo::get_by_id(&self.dynamodb, &self.settings.users_table, user.as_str()).await?;
        item.map(|item| user_from_item(user, &item)).transpose()
    }

    /// Writes the avatar if the item is still at `version` (`None`: no item yet).
    async fn write_avatar(
        &self,
        user: &UserId,
        avatar: &Avatar,
        version: Option<u64>,
    ) -> Result<UserRecord, WriteOutcome> {
        let next = version.unwrap_or(0) + 1;
        let mut req = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.users_table)
            .key("id", AttributeValue::S(user.to_string()))
            .update_expression(
                "SET #v = :next, avatarKey = :key, avatarUpload = :upload, avatarType = :type, \
                 avatarSize = :size, avatarUpdatedAt = :at",
            )
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":key", AttributeValue::S(avatar.key.clone()))
            .expression_attribute_values(":upload", AttributeValue::S(avatar.upload_key.clone()))
            .expression_attribute_values(":type", AttributeValue::S(avatar.content_type.clone()))
            .expression_attribute_values(":size", AttributeValue::N(avatar.size.to_string()))
            .expression_attribute_values(":at", AttributeValue::S(avatar.updated_at.clone()));
        req = match version {
            None => req.condition_expression("attribute_not_exists(id)"),
            Some(v) => req
                .condition_expression("#v = :current")
                .expression_attribute_values(":current", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(UserRecord { id: user.clone(), version: next, avatar: Some(avatar.clone()) }),
            Err(e) => match DynamoError::new("UpdateItem", e) {
                e if e.is_conflict() => Err(WriteOutcome::Conflict),
                e => Err(WriteOutcome::Failed(e.into())),
            },
        }
    }

    /// `GET /users/{id}`: the profile, or `None` when the user has no item.
    pub async fn profile(&self, user: &UserId) -> Result<Option<Profile>, AvatarError> {
        let record = self.user(user).await?;
        self.profile_of(record.as_ref()).await
    }

    async fn profile_of(&self, record: Option<&UserRecord>) -> Result<Option<Profile>, AvatarError> {
        let Some(record) = record else { return Ok(None) };
        let avatar = match &record.avatar {
            None => None,
            Some(a) => Some(self.avatar_view(a).await?),
        };
        Ok(Some(Profile { id: record.id.to_string(), avatar }))
    }

    async fn avatar_view(&self, avatar: &Avatar) -> Result<AvatarView, AvatarError> {
        if let Some(base) = &self.settings.base_url {
            return Ok(AvatarView {
                url: format!("{base}/{}", avatar.key),
                expires_at: None,
                content_type: avatar.content_type.clone(),
                size: avatar.size,
                updated_at: avatar.updated_at.clone(),
            });
        }
        // Each presigned GET is a download anyone holding it may repeat until it expires, with
        // no cache in front: counted, so their number is visible without the edge.
        crate::metrics::count(crate::metrics::names::AVATAR_URLS_PRESIGNED, 1);
        let (config, start) = presigning_config(self.settings.url_ttl).map_err(AvatarError::Presign)?;
        let presigned = self
            .presigner
            .get_object()
            .bucket(&self.uploads.bucket)
            .key(&avatar.key)
            .presigned(config)
            .await
            .map_err(|e| AvatarError::Presign(DisplayErrorContext(e).to_string()))?;
        let expires_at = time::OffsetDateTime::from(start + self.settings.url_ttl)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| AvatarError::Presign(e.to_string()))?;
        Ok(AvatarView {
            url: presigned.uri().to_owned(),
            expires_at: Some(expires_at),
            content_type: avatar.content_type.clone(),
            size: avatar.size,
            updated_at: avatar.updated_at.clone(),
        })
    }
}

enum WriteOutcome {
    Conflict,
    Failed(AvatarError),
}

fn empty_profile(user: &UserId) -> Profile {
    Profile { id: user.to_string(), avatar: None }
}

fn user_from_item(user: &UserId, item: &HashMap<String, AttributeValue>) -> Result<UserRecord, AvatarError> {
    let s = |name: &str| dynamo::string(item, name).cloned();
    let n = |name: &str| dynamo::number::<u64>(item, name);
    let version = n("version").ok_or(AvatarError::BadItem("version"))?;
    let avatar = match s("avatarKey") {
        None => None,
        Some(key) => Some(Avatar {
            key,
            upload_key: s("avatarUpload").ok_or(AvatarError::BadItem("avatarUpload"))?,
            content_type: s("avatarType").ok_or(AvatarError::BadItem("avatarType"))?,
            size: n("avatarSize").ok_or(AvatarError::BadItem("avatarSize"))?,
            updated_at: s("avatarUpdatedAt").unwrap_or_default(),
        }),
    };
    Ok(UserRecord { id: user.clone(), version, avatar })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b6c1e-9a4d-4e8b-8c2a-1d5e7f9a0b3c";

    #[test]
    fn issued_keys_parse_back() {
        let key = UploadKey::parse(&format!("uploads/user-1/{ID}.png")).unwrap();
        assert_eq!((key.user.as_str(), key.content_type.mime), ("user-1", "image/png"));
        assert_eq!(key.upload_key(), format!("uploads/user-1/{ID}.png"));
        assert_eq!(key.avatar_key(), format!("avatars/user-1/{ID}.png"));
        let issued = crate::uploads::object_key(&key.user, uuid::Uuid::new_v4(), key.content_type);
        assert_eq!(UploadKey::parse(&issued).unwrap().upload_key(), issued);
    }

    #[test]
    fn tricks_are_malformed() {
        let upper = ID.to_uppercase();
        let tricks = [
            String::new(),
            format!("uploads/user-1/../user-2/{ID}.png"),
            format!("uploads/user-1/%2e%2e/{ID}.png"),
            format!("uploads/user-1/{ID}%2epng"),
            format!("uploads%2fuser-1/{ID}.png"),
            format!("uploads/user-1/./{ID}.png"),
            format!("uploads//user-1/{ID}.png"),
            format!("/uploads/user-1/{ID}.png"),
            format!("avatars/user-1/{ID}.png"),
            format!("uploads/user\u{FF0D}1/{ID}.png"),
            format!("uploads/user-1\u{2215}{ID}.png"),
            format!("uploads/user-1/{ID}.png\u{200B}"),
            format!("uploads/user-1/{ID}.png\n"),
            format!("uploads/user-1/{upper}.png"),
            format!("uploads/user-1/{ID}.svg"),
            format!("uploads/user-1/{ID}.png.png"),
            format!("uploads/user-1/{ID}"),
            "uploads/user-1/0f0e0d0c-0b0a-1908-8706-050403020100.png".to_owned(),
            format!("uploads/user-1/sub/{ID}.png"),
            format!("uploads/user-1\\{ID}.png"),
            "x".repeat(300),
        ];
        for raw in &tricks {
            assert!(matches!(UploadKey::parse(raw), Err(KeyRefused::Malformed(_))), "{raw:?}");
        }
    }

    #[test]
    fn signatures() {
        assert_eq!(matches_signature("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"), Some(true));
        assert_eq!(matches_signature("image/png", b"<!doctype html><html>"), Some(false));
        assert_eq!(matches_signature("image/png", b"\x89PNG"), Some(false), "truncated");
        assert_eq!(matches_signature("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]), Some(true));
        assert_eq!(matches_signature("image/jpeg", &[0xFF, 0xD8]), Some(false));
        assert_eq!(matches_signature("image/webp", b"RIFF\x24\0\0\0WEBPVP8 "), Some(true));
        assert_eq!(matches_signature("image/webp", b"RIFF\x24\0\0\0WAVEfmt "), Some(false));
        assert_eq!(matches_signature("image/webp", b"RIFF"), Some(false));
        assert_eq!(matches_signature("application/pdf", b"%PDF-"), None);
    }

    /// How S3 answers `HeadObject` of a key that does not exist: 404 to a role with
    /// `s3:ListBucket`, 403 (with no body: it is a HEAD) to one without.
    fn head_error(status: u16) -> aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::head_object::HeadObjectError> {
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_sdk_s3::types::error::NotFound;
        let err = match status {
            404 => HeadObjectError::NotFound(NotFound::builder().build()),
            _ => HeadObjectError::generic(
                aws_sdk_s3::error::ErrorMetadata::builder()
                    .code(if status == 403 { "Forbidden" } else { "ServiceUnavailable" })
                    .build(),
            ),
        };
        let raw = aws_sdk_s3::config::http::HttpResponse::new(
            status.try_into().unwrap(),
            aws_sdk_s3::primitives::SdkBody::empty(),
        );
        aws_sdk_s3::error::SdkError::service_error(err, raw)
    }

    #[test]
    fn a_missing_key_is_404_with_list_bucket_and_a_403_without_it_is_a_deployment_fault() {
        assert!(matches!(head_failure(head_error(404)), RecordError::Refused(AvatarRefused::NotUploaded)));
        let denied = head_failure(head_error(403));
        assert!(
            matches!(denied, RecordError::Failed(AvatarError::AccessDenied { op: "HeadObject", .. })),
            "{denied:?}"
        );
        assert!(denied.to_string().contains("s3:ListBucket"), "{denied}");
        let problem = crate::http::Problem::from(denied);
        assert_eq!(problem.status.as_u16(), 500, "not 503: a retry cannot mend a missing permission");
        assert!(matches!(head_failure(head_error(503)), RecordError::Failed(AvatarError::S3 { .. })));
    }
}
