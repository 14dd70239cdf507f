//! Posts at scale, measured from outside the function: every DynamoDB call the release bootstrap
//! makes goes through `testkit::DynamoMeter`, a counting proxy in front of moto (the function's
//! `AWS_ENDPOINT_URL` points at it), so "items read" is moto's own `ScannedCount`, never a counter
//! of the code under test.
//!
//! - [`items_per_request`] (make bench): items read for page 1, a deep cursor page, the deepest
//!   allowed `page` (walked in order and cold), and the stampede count for a slow load.
//! - [`deep_page_flood`] (make drill, `posts-flood`): distinct deep pages from several instances
//!   at once; reads must stay within requests × (limit + 1) and another caller's cache hits within
//!   their quiet p99.

use std::path::Path;
use std::time::Duration;

use lambda_harness::{Function, SpawnOptions};
use serde_json::Value;
use shared::posts::{Post, PostId, PostsRepo};
use testkit::DynamoMeter;

use crate::drills::DrillResult;
use crate::stats::{ms, percentile};
use testkit::stack_env::{get, with};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Posts seeded for these figures: enough for the deepest allowed page at every limit.
const SEEDED: u32 = 1_200;
/// `page × limit` at most this (posts-read's bound).
const MAX_PAGE_ITEMS: u32 = 1_000;

/// `SEEDED` published posts, ids `bench-0000`…, one minute apart in 2025 (older than the demo
/// posts, so they form the deep part of the list). Idempotent: the same ids are overwritten.
pub async fn seed(env: &[(String, String)]) {
    let aws = shared::clients::AwsClients::new(&shared::clients::load_sdk_config().await, true);
    let repo = PostsRepo::new(aws.dynamodb().clone(), get(env, "POSTS_TABLE"));
    let base = time::macros::datetime!(2025-01-01 00:00 UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
    let posts: Vec<Post> = (0..SEEDED)
        .map(|i| {
            let at = (base + time::Duration::minutes(i64::from(i))).format(&fmt).expect("timestamp");
            Post {
                id: PostId::parse(&format!("bench-{i:04}")).expect("id"),
                title: format!("Bench post {i}"),
                body: "x".repeat(400),
                author_id: "bench-user".into(),
                published: true,
                created_at: at.clone(),
                updated_at: at,
                version: 1,
            }
        })
        .collect();
    for chunk in posts.chunks(50) {
        for r in futures::future::join_all(chunk.iter().map(|p| repo.put(p))).await {
            r.expect("seed post");
        }
    }
}

/// A `GET /posts` event with the given query.
pub fn list_event(base: &Value, query: &[(&str, &str)]) -> Value {
    let mut e = base.clone();
    e["rawQueryString"] = Value::String(query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
    e["queryStringParameters"] = query.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
    e
}

/// The JSON body of a proxy response.
fn body(inv: &lambda_harness::Invocation) -> Value {
    inv.json().ok().and_then(|v| v["body"].as_str().and_then(|b| serde_json::from_str(b).ok())).unwrap_or(Value::Null)
}

/// Makes every cached list page unreachable, as a write does.
fn bump_generation(redis_url: &str) {
    let mut conn = redis::Client::open(redis_url).expect("redis url").get_connection().expect("redis");
    let _: i64 = redis::cmd("INCR").arg("posts:list:gen").query(&mut conn).expect("INCR");
}

async fn start(bin: &Path, env: &[(String, String)]) -> Function {
    let f = Function::start(bin, &SpawnOptions { env: env.to_vec(), ..SpawnOptions::default() }).await.expect("spawn");
    f.wait_ready(TIMEOUT).await.expect("init");
    f
}

/// Walks `depth` pages by cursor at `limit` and returns the cursor of the page after the last
/// one (and the most items any one request read on the way).
async fn cursor_at(f: &Function, meter: &DynamoMeter, base: &Value, limit: u32, depth: u32) -> (String, u64) {
    let limit_text = limit.to_string();
    let mut cursor: Option<String> = None;
    let mut worst = 0;
    for _ in 0..depth {
        let mut query = vec![("limit", limit_text.as_str())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        meter.take();
        let inv = f.invoke(&list_event(base, &query), TIMEOUT).await.expect("invoke");
        worst = worst.max(meter.take().items);
        let next = body(&inv)["nextCursor"].as_str().map(str::to_owned);
        cursor = Some(next.expect("the seeded list is deep enough"));
    }
    (cursor.expect("depth > 0"), worst)
}

/// make bench: items read per request, and the stampede count for a slow load.
pub async fn items_per_request(bin_dir: &Path, env: &[(String, String)], base: &Value) -> String {
    seed(env).await;
    let redis_url = get(env, "REDIS_URL").to_owned();
    let meter = DynamoMeter::start(get(env, "AWS_ENDPOINT_URL")).await;
    let metered = with(env, &[("AWS_ENDPOINT_URL", meter.endpoint.clone())]);
    let bin = bin_dir.join("posts-read");
    let f = start(&bin, &metered).await;
    let limit = 10u32;
    let deepest = MAX_PAGE_ITEMS / limit;
    let mut rows = Vec::new();
    let mut measure = |label: String, reads: testkit::Reads| {
        rows.push(format!("| {label} | {} | {} | {} |", reads.items, reads.queries, limit + 1));
    };

    bump_generation(&redis_url);
    meter.take();
    f.invoke(&list_event(base, &[("limit", "10")]), TIMEOUT).await.expect("page 1");
    measure("`?limit=10`, page 1, cold".into(), meter.take());

    let (deep, worst_on_walk) = cursor_at(&f, &meter, base, limit, deepest).await;
    bump_generation(&redis_url);
    meter.take();
    f.invoke(&list_event(base, &[("limit", "10"), ("cursor", &deep)]), TIMEOUT).await.expect("deep cursor");
    measure(format!("`?limit=10&cursor=…`, page {} by cursor, cold", deepest + 1), meter.take());

    bump_generation(&redis_url);
    let mut worst_numbered = 0;
    for page in 1..=deepest {
        meter.take();
        let p = page.to_string();
        f.invoke(&list_event(base, &[("limit", "10"), ("page", &p)]), TIMEOUT).await.expect("page");
        let reads = meter.take();
        worst_numbered = worst_numbered.max(reads.items);
        if page == deepest {
            measure(format!("`?limit=10&page={deepest}` (deepest allowed), pages before it cached"), reads);
        }
    }
    bump_generation(&redis_url);
    meter.take();
    let p = deepest.to_string();
    f.invoke(&list_event(base, &[("limit", "10"), ("page", &p)]), TIMEOUT).await.expect("deep page");
    let cold_deepest = meter.take();
    f.stop().await;

    // 20 cold instances ask for one deep cursor page at once while its Query takes 1.5 s: longer
    // than the fixed wait the old guard had (CACHE_FILL_WAIT_MS, 1 s), after which every waiter
    // read DynamoDB itself.
    bump_generation(&redis_url);
    let mut instances = Vec::new();
    for _ in 0..20 {
        instances.push(start(&bin, &metered).await);
    }
    meter.set_query_delay(Duration::from_millis(1500));
    meter.take();
    let event = list_event(base, &[("limit", "10"), ("cursor", &deep)]);
    let results = futures::future::join_all(instances.iter().map(|f| f.invoke(&event, TIMEOUT))).await;
    meter.set_query_delay(Duration::ZERO);
    let slow = meter.take();
    let ok = results.iter().filter(|r| r.as_ref().is_ok_and(|i| i.status_code() == Some(200))).count();
    for f in instances {
        f.stop().await;
    }

    format!(
        "## posts-read: DynamoDB items read per request\n\n\
         {SEEDED} seeded posts; the release bootstrap's DynamoDB calls go through a counting proxy in front \
         of moto (testkit::DynamoMeter: moto's own `ScannedCount`, not a counter in the function). \"Cold\": \
         the list generation bumped first, as a write does, so nothing is cached.\n\n\
         | request | items read | Queries | limit + 1 |\n| --- | --- | --- | --- |\n{}\n\
         | `?limit=10&page={deepest}` (deepest allowed), cold: walks the {deepest} pages once, filling each | {} | {} | {} |\n\n\
         Walking {deepest} pages by cursor, the most any one request read: {worst_on_walk} items; walking \
         pages 1–{deepest} by number in order: {worst_numbered}. Before keyset pagination, page P read \
         P × limit + 1 items (page {deepest} × 10: {} items, and page 200 × 100 on 20,000 posts: 20 Queries, \
         7.4 MB, 21.6 s); `page × limit` is now at most {MAX_PAGE_ITEMS}, deeper pages are cursor-only.\n\n\
         **Stampede on a slow load**: 20 cold instances (separate processes) asked for the same deep cursor \
         page at once while the proxy held every Query answer for 1.5 s (longer than the old guard's 1 s \
         wait): {ok}/20 answered 200 and together they made **{}** Query call(s) ({} items).\n\n",
        rows.join("\n"),
        cold_deepest.items,
        cold_deepest.queries,
        limit + 1,
        deepest * limit + 1,
        slow.queries,
        slow.items,
    )
}

/// make drill (`posts-flood`): four posts-read instances send distinct deep-page requests (every
/// cursor page to depth 50 at each allowed limit, and every numbered page in a shuffled order),
/// the list generation bumped between rounds as writes would, while a fifth instance serves cache
/// hits (`GET /posts/1`) to another caller. Goal: DynamoDB items read ≤ Σ (limit + 1) over the
/// flood's requests, and the other caller's hit p50 during the flood within its quiet p99.
pub async fn deep_page_flood(bin_dir: &Path, events: &Path, env: &[(String, String)]) -> DrillResult {
    let base = &crate::perf::read_event(events, "posts-read/list.json");
    let hit = &crate::perf::read_event(events, "posts-read/get-hit.json");
    seed(env).await;
    let redis_url = get(env, "REDIS_URL").to_owned();
    let meter = DynamoMeter::start(get(env, "AWS_ENDPOINT_URL")).await;
    let metered = with(env, &[("AWS_ENDPOINT_URL", meter.endpoint.clone())]);
    let bin = bin_dir.join("posts-read");

    // The flood's requests: distinct cursor pages (cursors collected by one walk per limit) and
    // every numbered page, each with its page size.
    let walker = start(&bin, &metered).await;
    let mut requests: Vec<(u32, Vec<(&'static str, String)>)> = Vec::new();
    for limit in [10u32, 20, 50, 100] {
        let depth = (SEEDED / limit).min(50) - 1;
        let mut cursor: Option<String> = None;
        for _ in 0..depth {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let inv = walker.invoke(&list_event(base, &q), TIMEOUT).await.expect("walk");
            cursor = body(&inv)["nextCursor"].as_str().map(str::to_owned);
            let Some(c) = &cursor else { break };
            requests.push((limit, vec![("limit", limit.to_string()), ("cursor", c.clone())]));
        }
        for page in 1..=MAX_PAGE_ITEMS / limit {
            requests.push((limit, vec![("limit", limit.to_string()), ("page", page.to_string())]));
        }
    }
    walker.stop().await;
    // A fixed shuffle (nothing to record): a stride coprime with n visits every request once and
    // interleaves limits and depths.
    let n = requests.len();
    let stride = (7919..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
    let order: Vec<usize> = (0..n).map(|i| (i * stride) % n).collect();

    let other = start(&bin, &with(env, &[])).await;
    for _ in 0..50 {
        other.invoke(hit, TIMEOUT).await.expect("warm-up");
    }
    let mut quiet = Vec::new();
    for _ in 0..500 {
        quiet.push(other.invoke(hit, TIMEOUT).await.expect("quiet hit").latency);
    }
    quiet.sort();

    let flooders = futures::future::join_all((0..4).map(|_| start(&bin, &metered))).await;
    let rounds = 2;
    let mut budget = 0u64;
    let mut sent = 0usize;
    let mut non_200 = 0usize;
    let mut during = Vec::new();
    meter.take();
    let mut items = 0u64;
    let mut queries = 0u64;
    for _ in 0..rounds {
        bump_generation(&redis_url);
        let done = std::sync::atomic::AtomicBool::new(false);
        let flood = async {
            let shares = flooders.iter().enumerate().map(|(k, f)| {
                let mine: Vec<usize> = order.iter().copied().skip(k).step_by(flooders.len()).collect();
                let requests = &requests;
                async move {
                    let mut statuses = Vec::new();
                    for i in mine {
                        let (_, query) = &requests[i];
                        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        let inv = f.invoke(&list_event(base, &q), TIMEOUT).await.expect("flood");
                        statuses.push(inv.status_code());
                    }
                    statuses
                }
            });
            let statuses: Vec<Option<u16>> = futures::future::join_all(shares).await.into_iter().flatten().collect();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            statuses
        };
        let hits = async {
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                latencies.push(other.invoke(hit, TIMEOUT).await.expect("hit during flood").latency);
            }
            latencies
        };
        let (statuses, latencies) = futures::join!(flood, hits);
        sent += statuses.len();
        non_200 += statuses.iter().filter(|s| **s != Some(200)).count();
        during.extend(latencies);
        budget += requests.iter().map(|(limit, _)| u64::from(limit + 1)).sum::<u64>();
        let reads = meter.take();
        items += reads.items;
        queries += reads.queries;
    }
    during.sort();
    let mut panics = other.stop().await.logs.matches("panicked").count();
    for f in flooders {
        panics += f.stop().await.logs.matches("panicked").count();
    }
    let quiet_p99 = percentile(&quiet, 99.0);
    let passed = non_200 == 0 && panics == 0 && items <= budget && percentile(&during, 50.0) <= quiet_p99;
    let markdown = format!(
        "### A flood of distinct deep-page requests (posts-read)\n\n\
         {SEEDED} seeded posts. Four release posts-read instances sent {sent} requests, every one a distinct \
         page: each cursor page to depth 50 at limits 10, 20, 50 and 100, and every numbered page allowed \
         (`page × limit ≤ {MAX_PAGE_ITEMS}`), in a shuffled order, {rounds} rounds with the list generation \
         bumped before each (as a write does, so every request starts cold). DynamoDB calls counted by a \
         proxy in front of moto. Meanwhile a fifth instance served `GET /posts/1` cache hits to another \
         caller. Goal: items read ≤ Σ (limit + 1) over the requests, 0 non-200, the other caller's hit p50 \
         during the flood within its quiet p99 (the instances share this machine's 2 cores; in Lambda each \
         has its own).\n\n\
         | measure | value |\n| --- | --- |\n| flood requests | {sent} |\n| non-200 answers | {non_200} |\n\
         | DynamoDB Queries | {queries} |\n| items read | {items} |\n| Σ (limit + 1) over the requests | {budget} |\n\
         | other caller's hits, quiet: p50 / p99 | {} / {} |\n| other caller's hits during the flood ({}): p50 / p99 | {} / {} |\n\n\
         Panics in the logs: {panics}. Result: **{}**.\n\n",
        ms(percentile(&quiet, 50.0)),
        ms(quiet_p99),
        during.len(),
        ms(percentile(&during, 50.0)),
        ms(percentile(&during, 99.0)),
        if passed { "pass" } else { "FAIL" },
    );
    let summary = format!(
        "{sent} requests, {non_200} non-200; items {items} of budget {budget}; other caller p50 {} (quiet p99 {})",
        ms(percentile(&during, 50.0)),
        ms(quiet_p99)
    );
    DrillResult { markdown, summary, passed }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
