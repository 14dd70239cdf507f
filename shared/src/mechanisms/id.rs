//! Identifiers that travel in URLs, cache keys, DynamoDB keys and Redis hash tags (`{…}`): 1 to
//! 64 of `A-Z a-z 0-9 - _`, so slashes, dots, braces, percent escapes and unicode are refused
//! before they reach a key. One rule and one parser; each id keeps its own type and message.

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Whether `raw` is 1 to [`MAX_ID_LEN`] of `A-Z a-z 0-9 - _`.
pub fn is_valid_id(raw: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Declares an id newtype `$name` (serde-transparent, `parse`, `as_str`, `Display`) and its
/// parse error `$error`, whose message starts with `$what` ("a post id", "an order id").
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $error:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        #[doc = concat!("Why a text is not ", $what, ".")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $error;

        impl std::fmt::Display for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!($what, " is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'"))
            }
        }

        impl std::error::Error for $error {}

        impl $name {
            #[doc = concat!("Parses ", $what, ", refusing anything but 1 to 64 of `A-Z a-z 0-9 - _`.")]
            pub fn parse(raw: &str) -> Result<Self, $error> {
                if $crate::id::is_valid_id(raw) { Ok(Self(raw.to_owned())) } else { Err($error) }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use define_id;

#[cfg(test)]
mod tests {

    define_id!(
        /// An id for the test.
        SampleId,
        InvalidSampleId,
        "a sample id"
    );

    #[test]
    fn accepts_only_the_safe_alphabet_up_to_64_bytes() {
        for ok in ["a", "post-1", "A_b-9", &"x".repeat(64)] {
            assert_eq!(SampleId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a/b", "a.b", "{tag}", "a%2F", "é", " a", &"x".repeat(65)] {
            assert_eq!(SampleId::parse(bad), Err(InvalidSampleId), "{bad:?}");
        }
        assert!(InvalidSampleId.to_string().starts_with("a sample id is 1 to 64"));
    }
}
