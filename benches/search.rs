//! Search over a million messages: 100 teams of 10 topics, 1,000,000 messages of 12
//! words drawn from 5,000 made-up words with a long tail (a few words are in a large
//! share of messages, most are rare, as in real chat). Then one- and two-word queries
//! in random teams through Floo's own `Store::search` (both its queries: topics and
//! messages), timed one after another; p50 and p95 per kind.
//!
//! Then the crowded cases (`--crowds`, on by default): one team whose word is in 10,000
//! messages and another word in 100,000, another team holding 100,000 messages with the
//! first word (so that a team's search must not pay for another's matches), and a team of
//! 100,000 topics holding one word. Each case is searched `--queries`/4 times. SQLite is
//! the library sqlx bundles, the one Floo ships with.
//!
//! cargo bench --bench search -- [--backend sqlite|postgres] [--messages 1000000] [--queries 200]
//!
//! PostgreSQL: a fresh database on FLOO_TEST_POSTGRES_URL's server (default
//! postgres://postgres@127.0.0.1:5432/test), dropped afterwards.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use floo::store::{Store, query_words};
use sqlx::Connection;

const TEAMS: i64 = 100;
const TOPICS_PER_TEAM: i64 = 10;
const WORDS: usize = 5_000;
const WORDS_PER_MESSAGE: usize = 12;
const BATCH: usize = 500;

/// xorshift64*: the same data every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A word's index, log-uniformly: index 0 is the most common.
    fn word(&mut self) -> usize {
        ((WORDS as f64).powf(self.unit()) as usize).saturating_sub(1).min(WORDS - 1)
    }
}

/// 5,000 pronounceable made-up words ("kalomi", "retusa"…).
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 20] = [
        "ka", "lo", "mi", "re", "tu", "sa", "ne", "po", "vi", "da", "go", "fe", "ru", "bi", "zo", "ha", "ji", "wu",
        "qe", "xa",
    ];
    (0..WORDS)
        .map(|i| {
            let (a, b, c) = (i % 20, (i / 20) % 20, (i / 400) % 20);
            format!("{}{}{}", SYLLABLES[a], SYLLABLES[b], if i >= 400 { SYLLABLES[c] } else { "" })
        })
        .collect()
}

/// Inserts `count` rows of `values(i)` into `table (columns)`, 500 to a statement.
async fn insert_many(
    pool: &mut sqlx::AnyConnection,
    table: &str,
    columns: &str,
    count: usize,
    values: impl Fn(usize) -> String,
) {
    for start in (0..count).step_by(BATCH) {
        let rows: Vec<String> = (start..(start + BATCH).min(count)).map(&values).collect();
        let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *pool).await.expect("insert");
    }
}

/// The crowded teams: (what is searched, team, word). Their words ("crowdten",
/// "crowdhundred", "crowdtopic") are in no other message.
async fn crowded(store: &Store, pool: &mut sqlx::AnyConnection, user: i64) -> Vec<(String, i64, String)> {
    let started = Instant::now();
    let mut teams = Vec::new();
    for name in ["Crowded", "Neighbour", "Topics"] {
        let team = store.create_team(name, user, 0, || format!("code-{name}")).await.expect("team");
        let topic = store.create_topic(team.id, user, "Busy", "", 0).await.expect("topic");
        teams.push((team.id, topic));
    }
    let ((crowded, busy), (neighbour, next_door), (topics_team, _)) = (teams[0], teams[1], teams[2]);
    let body = |i: usize, words: &str| format!("'note {i} {words} and more'");
    // The crowded team: 100,000 messages with "crowdhundred", 10,000 of them with "crowdten".
    insert_many(pool, "messages", "topic_id, seq, author_id, body, created_at, event", 100_000, |i| {
        let words = if i % 10 == 0 { "crowdhundred crowdten" } else { "crowdhundred" };
        format!("({busy}, {}, {user}, {}, 0, {})", i + 1, body(i, words), i + 1)
    })
    .await;
    // Next door: 100,000 messages with "crowdten" (none of them the crowded team's).
    insert_many(pool, "messages", "topic_id, seq, author_id, body, created_at, event", 100_000, |i| {
        format!("({next_door}, {}, {user}, {}, 0, {})", i + 1, body(i, "crowdten"), i + 1)
    })
    .await;
    // A team of 100,000 topics with one word.
    insert_many(pool, "topics", "team_id, author_id, kind, title, body, created_at, last_activity_at", 100_000, |i| {
        format!("({topics_team}, {user}, 'post', 'Topic {i}', {}, 0, 0)", body(i, "crowdtopic"))
    })
    .await;
    eprintln!("crowded teams loaded in {:.0} s", started.elapsed().as_secs_f64());
    vec![
        ("a team's word in 10k messages (and 100k next door)".into(), crowded, "crowdten".into()),
        ("a team's word in 100k messages".into(), crowded, "crowdhundred".into()),
        ("a word in 100k messages of another team only".into(), neighbour, "crowdhundred".into()),
        ("a team's word in 100k topics".into(), topics_team, "crowdtopic".into()),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let backend = support::arg("--backend").unwrap_or_else(|| "sqlite".into());
    let messages: usize = support::arg("--messages").map(|v| v.parse().expect("--messages N")).unwrap_or(1_000_000);
    let queries: usize = support::arg("--queries").map(|v| v.parse().expect("--queries N")).unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("floo-bench-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (url, admin) = match backend.as_str() {
        "sqlite" => (format!("sqlite://{}?mode=rwc", dir.join("floo.db").display()), None),
        "postgres" => {
            let admin = std::env::var("FLOO_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let name = format!("floo_bench_search_{}", std::process::id());
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&admin).await.expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.expect("create");
            let mut u = url::Url::parse(&admin).expect("url");
            u.set_path(&name);
            (u.to_string(), Some((admin, name)))
        }
        other => panic!("--backend sqlite|postgres, not {other}"),
    };
    let store = Store::connect(&url, 4).await.expect("store");
    let user = store.upsert_user("dev", "bench", "Bench", None, None, 0).await.expect("user");
    let mut topics = Vec::new();
    for t in 0..TEAMS {
        let team = store.create_team(&format!("Team {t}"), user.id, 0, || format!("code{t}")).await.expect("team");
        for p in 0..TOPICS_PER_TEAM {
            topics.push((
                team.id,
                store.create_topic(team.id, user.id, &format!("Topic {p}"), "", 0).await.expect("topic"),
            ));
        }
    }
    let words = vocabulary();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // A million messages, in multi-row INSERTs; the backend's full-text index follows
    // (SQLite's triggers, PostgreSQL's generated column and GIN index).
    let started = Instant::now();
    let mut pool = sqlx::AnyConnection::connect(&url).await.expect("connection");
    let mut seq = vec![0i64; topics.len()];
    let mut done = 0;
    while done < messages {
        let n = BATCH.min(messages - done);
        let mut sql = String::from("INSERT INTO messages (topic_id, seq, author_id, body, created_at, event) VALUES ");
        let mut rows = Vec::with_capacity(n);
        for k in 0..n {
            let i = done + k;
            let topic = i % topics.len();
            seq[topic] += 1;
            let body: Vec<&str> = (0..WORDS_PER_MESSAGE).map(|_| words[rng.word()].as_str()).collect();
            rows.push((topics[topic].1, seq[topic], body.join(" ")));
            let b = k * 4;
            sql.push_str(&format!(
                "{}(${}, ${}, {}, ${}, {i}, ${})",
                if k == 0 { "" } else { ", " },
                b + 1,
                b + 2,
                user.id,
                b + 3,
                b + 4
            ));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (topic_id, s, body) in rows {
            query = query.bind(topic_id).bind(s).bind(body).bind(s);
        }
        query.execute(&mut pool).await.expect("insert");
        done += n;
        if done % 100_000 == 0 {
            eprintln!("{done} messages, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let crowds = !support::flag("--no-crowds");
    let mut cases = Vec::new();
    if crowds {
        cases = crowded(&store, &mut pool, user.id).await;
    }
    let _ = sqlx::query("ANALYZE").execute(&mut pool).await;
    let load = started.elapsed().as_secs_f64();
    println!("search: {messages} messages in {TEAMS} teams on {backend}, loaded and indexed in {load:.0} s");

    let teams: Vec<i64> = topics.iter().map(|t| t.0).step_by(TOPICS_PER_TEAM as usize).collect();
    println!("{:>10} {:>8} {:>8} {:>8} {:>8} {:>10}", "query", "runs", "p50 ms", "p95 ms", "max ms", "hits/run");
    for kind in [1, 2] {
        let mut times = Vec::with_capacity(queries);
        let mut hits = 0;
        for _ in 0..queries {
            let team = teams[rng.below(teams.len() as u64) as usize];
            let q: Vec<&str> = (0..kind).map(|_| words[rng.word()].as_str()).collect();
            let words = query_words(&q.join(" "));
            let at = Instant::now();
            let found = store.search(team, &words).await.expect("search");
            times.push(at.elapsed().as_secs_f64() * 1000.0);
            hits += found.topics.len() + found.messages.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:>10} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>10.1}",
            format!("{kind} word{}", if kind == 1 { "" } else { "s" }),
            queries,
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0.0),
            hits as f64 / queries as f64
        );
    }
    for (name, team, word) in &cases {
        let runs = (queries / 4).max(5);
        let mut times = Vec::with_capacity(runs);
        let mut hits = 0;
        for _ in 0..runs {
            let at = Instant::now();
            let found = store.search(*team, &query_words(word)).await.expect("search");
            times.push(at.elapsed().as_secs_f64() * 1000.0);
            hits += found.topics.len() + found.messages.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:>10} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>10.1}  {name}",
            "crowd",
            runs,
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0.0),
            hits as f64 / runs as f64
        );
    }
    drop(pool);
    drop(store);
    if let Some((admin, name)) = admin {
        let mut c = sqlx::AnyConnection::connect(&admin).await.expect("PostgreSQL");
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&mut c).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
