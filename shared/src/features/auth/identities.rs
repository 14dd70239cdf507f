//! Who a signed-in identity is here: one `(issuer, subject)` is one [`UserId`], forever, with a
//! user item in the `Users` table that the first sign-in creates.
//!
//! Why the id is derived, not stored: an issuer's `(iss, sub)` pair is the stable name of a person
//! (OpenID Connect Core §5.7: `sub` is unique and never reassigned within an issuer), so the user
//! id is a hash of it: `u-` and the first 32 hex digits (128 bits) of SHA-256 over
//! `iss NUL sub`. A sign-in finds its user with one key lookup and no index, the id reveals
//! neither the issuer nor the subject, and two first sign-ins at once name the same item: the
//! create is a conditional `PutItem` (`attribute_not_exists(id)`), so exactly one of them writes it
//! and the other finds it. The item has the shape [`crate::uploads`] reads and updates (`version`
//! 0, no avatar) plus where the identity came from.

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use super::UserId;
use super::oidc::Identity;
use crate::clients::dynamo::{self, DynamoError};
use crate::clock::timestamp_now;
use crate::config::EnvReader;

/// The user id of an identity (see the module documentation).
pub fn user_id_of(identity: &Identity) -> UserId {
    let mut hash = Sha256::new();
    hash.update(identity.issuer.as_bytes());
    hash.update([0u8]);
    hash.update(identity.subject.as_bytes());
    let digest = hex::encode(hash.finalize());
    UserId::parse(&format!("u-{}", &digest[..32])).expect("u- and hex digits form a valid id")
}

/// Whether the sign-in created the user or found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedIn {
    /// This sign-in wrote the user item.
    Created,
    /// The item was there (an earlier sign-in, or a concurrent first one that won).
    Found,
}

/// The `Users` table, as sign-in uses it (`USERS_TABLE`).
#[derive(Clone, Debug)]
pub struct Identities {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Identities {
    /// Reads `USERS_TABLE`.
    pub fn table_from_env(env: &mut EnvReader<'_>) -> String {
        env.required("USERS_TABLE", "the DynamoDB users table name")
    }

    /// Identities over `table`.
    pub fn new(dynamodb: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { dynamodb, table }
    }

    /// The user of `identity`: found with a consistent read, else created with a conditional put
    /// (a put that loses to a concurrent first sign-in finds the winner's item).
    pub async fn sign_in(&self, identity: &Identity) -> Result<(UserId, SignedIn), DynamoError> {
        let user = user_id_of(identity);
        if dynamo::get_by_id(&self.dynamodb, &self.table, user.as_str()).await?.is_some() {
            return Ok((user, SignedIn::Found));
        }
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(user.to_string()))
            .item("version", AttributeValue::N("0".into()))
            .item("issuer", AttributeValue::S(identity.issuer.clone()))
            .item("subject", AttributeValue::S(identity.subject.clone()))
            .item("createdAt", AttributeValue::S(timestamp_now()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok((user, SignedIn::Created)),
            Err(e) => match DynamoError::new("PutItem", e) {
                e if e.is_conflict() => Ok((user, SignedIn::Found)),
                e => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(iss: &str, sub: &str) -> Identity {
        Identity { issuer: iss.into(), subject: sub.into() }
    }

    #[test]
    fn one_identity_is_one_user_and_the_pair_is_not_ambiguous() {
        let a = user_id_of(&id("https://issuer.example.com", "alice"));
        assert_eq!(a, user_id_of(&id("https://issuer.example.com", "alice")));
        assert_eq!(a.as_str().len(), 34);
        assert!(a.as_str().starts_with("u-"));
        assert_ne!(a, user_id_of(&id("https://other.example.com", "alice")), "another issuer's alice");
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(user_id_of(&id("ab", "c")), user_id_of(&id("a", "bc")));
    }
}
