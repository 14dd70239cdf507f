//! Posts, stored in DynamoDB (the source of truth).
//!
//! Table `Posts`, key `id` (S). Published posts also carry `feed = "published"`, which puts them
//! in the sparse GSI `byFeed` (partition `feed`, sort `createdAt`): the newest-first list is a
//! Query on that index, never a Scan. Unpublished posts are simply absent from it.
//! `version` (N) increments on every write and guards concurrent updates.
//!
//! The list is read by position (keyset), never by offset: a position is the index key of the
//! last item a page returned, and the next page is one Query that starts after it and asks for
//! at most `limit + 1` items (the extra one says whether there is more).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use crate::clients::dynamo::{self, DynamoError};
use crate::clock::timestamp_now;

/// The sparse GSI of published posts: partition `feed`, sort `createdAt`.
pub const FEED_INDEX: &str = "byFeed";
const FEED_PUBLISHED: &str = "published";

crate::id::define_id!(
    /// A post id ([`crate::id`]): anything else is refused before it reaches a cache key or a
    /// database call.
    PostId,
    InvalidPostId,
    "a post id"
);

impl PostId {
    /// A new, time-ordered id (UUIDv7, simple form) for posts created through the API.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

/// An item of the `Posts` table, as stored, cached and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    /// The table key; a UUIDv7 for posts created through the API.
    pub id: PostId,
    /// 1 to 200 characters, no control or invisible characters.
    pub title: String,
    /// The text, at most 50 KiB.
    pub body: String,
    /// The [`UserId`](crate::auth::UserId) of the author, the only user who may change it.
    pub author_id: String,
    /// Whether readers see it (and it is in the `byFeed` index).
    pub published: bool,
    /// RFC 3339, UTC, fixed width (so it sorts as text in the index).
    pub created_at: String,
    /// When it last changed, RFC 3339 UTC.
    pub updated_at: String,
    /// 1 at creation, one more per write; the `ETag` and the guard of conditional writes.
    pub version: u64,
}

/// A place in the newest-first list: the `byFeed` key of the last item a page returned
/// (DynamoDB's `LastEvaluatedKey` for that page). The next page starts right after it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedPosition {
    /// `createdAt` of the last post, the index's sort key.
    pub created_at: String,
    /// The id of the last post: the table key, which every index position also carries.
    pub id: PostId,
}

impl FeedPosition {
    fn of(post: &Post) -> Self {
        Self { created_at: post.created_at.clone(), id: post.id.clone() }
    }

    fn from_key(key: &HashMap<String, AttributeValue>) -> Option<Self> {
        let created_at = dynamo::string(key, "createdAt")?.clone();
        let id = PostId::parse(dynamo::string(key, "id")?).ok()?;
        Some(Self { created_at, id })
    }

    /// The `ExclusiveStartKey` of the Query that reads what comes after this position.
    fn start_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("feed".to_owned(), AttributeValue::S(FEED_PUBLISHED.into())),
            ("createdAt".to_owned(), AttributeValue::S(self.created_at.clone())),
            ("id".to_owned(), AttributeValue::S(self.id.0.clone())),
        ])
    }
}

/// What one Query of the list returned: at most `limit` posts, and where the next page starts
/// (`None`: this was the end of the list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedSlice {
    /// At most `limit` posts, newest first.
    pub items: Vec<Post>,
    /// Where the next slice starts; `None` at the end of the list.
    pub next: Option<FeedPosition>,
}

/// One page of the newest-first list, as served: summaries, never bodies, so its size is
/// bounded ([`crate::posts::summary`]). `next_cursor` continues the walk (`None` at the end);
/// `page` is set when the page was asked for by number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostPage {
    /// The posts of the page, newest first, as summaries.
    pub items: Vec<crate::posts::PostSummary>,
    /// The page size the page was read with.
    pub limit: u32,
    /// The 1-based page number, when asked for by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Whether more posts follow.
    pub has_more: bool,
    /// The signed cursor of the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Why a read of the posts failed.
#[derive(Debug, thiserror::Error)]
pub enum PostsError {
    /// The DynamoDB call failed; its kind says whether to retry.
    #[error(transparent)]
    Store(#[from] DynamoError),
    /// A stored item lacks an attribute or has one of the wrong type.
    #[error("stored item is malformed: {0}")]
    Malformed(String),
    /// The request's deadline came first (a slow source, or a fill that did not land in time).
    #[error(transparent)]
    OutOfTime(#[from] crate::cache::OutOfTime),
}

/// A failed conditional write: `Conflict` when the condition was false, the store error otherwise.
fn write_err<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = DynamoError::new(operation, e);
    if e.is_conflict() { WriteError::Conflict } else { WriteError::Store(e) }
}

/// The `Posts` table and its `byFeed` index.
#[derive(Clone, Debug)]
pub struct PostsRepo {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Reads sent to DynamoDB by this instance: the figure the stampede guard is judged by
    /// (tests and benchmarks read it; it is also logged per read at debug level).
    reads: Arc<AtomicU64>,
}

impl PostsRepo {
    /// The posts in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), reads: Arc::default() }
    }

    /// How many reads this instance has sent to DynamoDB since it was built.
    pub fn source_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn count_read(&self, what: &'static str) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(table = %self.table, what, "dynamodb read");
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The post, read consistently, published or not; `None` when there is no such id.
    pub async fn get(&self, id: &PostId) -> Result<Option<Post>, PostsError> {
        self.count_read("get");
        let item = dynamo::get_by_id(&self.client, &self.table, id.as_str()).await?;
        item.map(|item| from_item(&item)).transpose()
    }

    /// Published posts, newest first, starting after `after` (from the top when `None`): one
    /// Query with `Limit = limit + 1`, so it never reads more than the page returns plus one.
    /// DynamoDB also stops a Query at 1 MB; then the page is shorter than `limit` and `next` is
    /// where that Query stopped, so the walk goes on from there and nothing is skipped.
    pub async fn feed_after(&self, after: Option<&FeedPosition>, limit: u32) -> Result<FeedSlice, PostsError> {
        let limit = limit.max(1) as usize;
        self.count_read("query");
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FEED_INDEX)
            .key_condition_expression("feed = :f")
            .expression_attribute_values(":f", AttributeValue::S(FEED_PUBLISHED.into()))
            .scan_index_forward(false)
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(FeedPosition::start_key))
            .send()
            .await
            .map_err(|e| DynamoError::new("Query", e))?;
        let mut items = out.items().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(FeedPosition::of)
        } else {
            // Fewer than asked for: the end of the list, unless the 1 MB cap stopped the Query.
            out.last_evaluated_key
                .filter(|k| !k.is_empty())
                .and_then(|k| items.last().map(FeedPosition::of).or_else(|| FeedPosition::from_key(&k)))
        };
        Ok(FeedSlice { items, next })
    }

    /// Whether the (eventually consistent) `byFeed` index already shows `id` as written: present
    /// at `version` or later when `published`, absent otherwise. Writers ask this before they
    /// make cached lists unreachable for the last time, so no list is cached from an index that
    /// has not caught up with the write.
    pub async fn index_shows(
        &self,
        id: &PostId,
        created_at: &str,
        published: bool,
        version: u64,
    ) -> Result<bool, PostsError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FEED_INDEX)
            .key_condition_expression("feed = :f AND createdAt = :c")
            .filter_expression("id = :id")
            .expression_attribute_values(":f", AttributeValue::S(FEED_PUBLISHED.into()))
            .expression_attribute_values(":c", AttributeValue::S(created_at.to_owned()))
            .expression_attribute_values(":id", AttributeValue::S(id.0.clone()))
            .send()
            .await
            .map_err(|e| DynamoError::new("Query", e))?;
        let indexed = out.items().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        Ok(match indexed.first() {
            Some(post) => published && post.version >= version,
            None => !published,
        })
    }

    /// Writes a post as given, unconditionally (seeding and tests).
    pub async fn put(&self, post: &Post) -> Result<(), PostsError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(post)))
            .send()
            .await
            .map_err(|e| DynamoError::new("PutItem", e))?;
        Ok(())
    }

    /// Creates a post; fails with `Conflict` if the id exists.
    pub async fn create(&self, post: &Post) -> Result<(), WriteError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(post)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|e| write_err("PutItem", e))?;
        Ok(())
    }

    /// Applies `changes` if the stored post is still at `expected_version` and by `author`;
    /// returns the new post (version + 1). A lost race is `Conflict`, never a silent overwrite.
    pub async fn update(
        &self,
        id: &PostId,
        author: &str,
        expected_version: u64,
        changes: &PostChanges,
    ) -> Result<Post, WriteError> {
        let mut sets = vec!["updatedAt = :now", "version = version + :one"];
        let mut removes = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.0.clone()))
            .condition_expression("attribute_exists(id) AND version = :expected AND authorId = :author")
            .expression_attribute_values(":now", AttributeValue::S(timestamp_now()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
            .expression_attribute_values(":author", AttributeValue::S(author.to_owned()))
            .return_values(ReturnValue::AllNew);
        if let Some(title) = &changes.title {
            sets.push("title = :title");
            request = request.expression_attribute_values(":title", AttributeValue::S(title.clone()));
        }
        if let Some(body) = &changes.body {
            sets.push("body = :body");
            request = request.expression_attribute_values(":body", AttributeValue::S(body.clone()));
        }
        if let Some(published) = changes.published {
            sets.push("published = :published");
            request = request.expression_attribute_values(":published", AttributeValue::Bool(published));
            if published {
                sets.push("feed = :feed");
                request = request.expression_attribute_values(":feed", AttributeValue::S(FEED_PUBLISHED.into()));
            } else {
                removes.push("feed");
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let out = request.update_expression(expression).send().await.map_err(|e| write_err("UpdateItem", e))?;
        let item = out
            .attributes
            .ok_or_else(|| WriteError::Store(DynamoError::malformed("UpdateItem", "no attributes returned")))?;
        from_item(&item).map_err(|e| WriteError::Store(DynamoError::malformed("UpdateItem", e.to_string())))
    }

    /// Deletes the post if it is still at `expected_version` and by `author`.
    pub async fn delete(&self, id: &PostId, author: &str, expected_version: u64) -> Result<(), WriteError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.0.clone()))
            .condition_expression("attribute_exists(id) AND version = :expected AND authorId = :author")
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
            .expression_attribute_values(":author", AttributeValue::S(author.to_owned()))
            .send()
            .await
            .map_err(|e| write_err("DeleteItem", e))?;
        Ok(())
    }
}

/// The fields a PATCH may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostChanges {
    /// A new title, already validated.
    pub title: Option<String>,
    /// A new body, already validated.
    pub body: Option<String>,
    /// Publish (`true`) or unpublish (`false`).
    pub published: Option<bool>,
}

/// Why a conditional write of a post failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The condition failed: another write got there first (or the id exists, for a create).
    #[error("the post changed concurrently")]
    Conflict,
    /// The DynamoDB call failed for another reason.
    #[error(transparent)]
    Store(DynamoError),
}

pub(crate) fn to_item(post: &Post) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("id".to_owned(), AttributeValue::S(post.id.0.clone())),
        ("title".to_owned(), AttributeValue::S(post.title.clone())),
        ("body".to_owned(), AttributeValue::S(post.body.clone())),
        ("authorId".to_owned(), AttributeValue::S(post.author_id.clone())),
        ("published".to_owned(), AttributeValue::Bool(post.published)),
        ("createdAt".to_owned(), AttributeValue::S(post.created_at.clone())),
        ("updatedAt".to_owned(), AttributeValue::S(post.updated_at.clone())),
        ("version".to_owned(), AttributeValue::N(post.version.to_string())),
    ]);
    if post.published {
        item.insert("feed".to_owned(), AttributeValue::S(FEED_PUBLISHED.into()));
    }
    item
}

pub(crate) fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Post, PostsError> {
    let s = |name: &str| -> Result<String, PostsError> {
        dynamo::string(item, name)
            .cloned()
            .ok_or_else(|| PostsError::Malformed(format!("missing string attribute {name}")))
    };
    let id = PostId::parse(&s("id")?).map_err(|e| PostsError::Malformed(e.to_string()))?;
    let published = dynamo::boolean(item, "published").unwrap_or(false);
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .map(|n| n.parse::<u64>())
        .transpose()
        .map_err(|e| PostsError::Malformed(format!("version: {e}")))?
        .unwrap_or(1);
    Ok(Post {
        id,
        title: s("title")?,
        body: s("body")?,
        author_id: s("authorId")?,
        published,
        created_at: s("createdAt")?,
        updated_at: s("updatedAt")?,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["1", "abc-DEF_09", &"a".repeat(64)] {
            assert!(PostId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../etc", "a/b", "%2e", "é", "a b", "1\n", &"a".repeat(65)] {
            assert_eq!(PostId::parse(bad), Err(InvalidPostId), "{bad:?}");
        }
    }

    #[test]
    fn items_round_trip_and_only_published_posts_enter_the_feed() {
        let mut post = Post {
            id: PostId::parse("7").unwrap(),
            title: "t".into(),
            body: "b".into(),
            author_id: "u1".into(),
            published: false,
            created_at: timestamp_now(),
            updated_at: timestamp_now(),
            version: 3,
        };
        let item = to_item(&post);
        assert!(!item.contains_key("feed"));
        assert_eq!(from_item(&item).unwrap(), post);
        post.published = true;
        assert_eq!(to_item(&post)["feed"], AttributeValue::S("published".into()));
    }

    #[test]
    fn timestamps_are_fixed_width() {
        let t = timestamp_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z'));
    }
}
