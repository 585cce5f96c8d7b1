//! The history page rendered with 0, 1 and many points, hostile strings escaped,
//! pagination links that walk the whole history, and the auto-refresh toggle.

mod support;

use serde_json::json;
use support::{avg_at, TestApp};

const BASE_MS: i64 = 1_767_225_600_000;

/// Extracts the value of the first `href` of the element with `id`.
fn href(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..at + html[at..].find('>')?];
    let h = tag.find("href=\"")? + 6;
    let end = tag[h..].find('"')?;
    Some(tag[h..h + end].replace("&amp;", "&").replace("&#38;", "&"))
}

fn rows(html: &str) -> usize {
    html.matches("<time data-ms=").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_history_shows_the_empty_state() {
    let app = TestApp::start("hist-empty", None).await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"empty-state\""));
    assert!(html.contains("No averages stored yet"));
    assert!(!html.contains("<svg"), "no chart without data");
    assert!(html.contains(&*app.state.hostname), "hostname shown");
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "newest page refreshes by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_point_renders_row_and_chart() {
    let app = TestApp::start("hist-one", None).await;
    assert_eq!(app.post(&avg_at(7, 21.25, 1, BASE_MS), None).await.0, 201);
    let (status, html) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 1);
    assert!(html.contains("<svg id=\"chart\""));
    assert!(html.contains("<polyline"));
    assert!(html.contains("21.25"));
    assert!(html.contains("2026-01-01 00:00:00 UTC"));
    assert!(html.contains("<b id=\"position\">1–1</b>"));
    assert!(href(&html, "older").is_none() && href(&html, "newer").is_none());
    let json = href(&html, "download-json").expect("json link");
    let csv = href(&html, "download-csv").expect("csv link");
    let (status, body) = app.get_json(&json).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["round"], 7);
    let (status, text) = app.get_text(&csv).await;
    assert_eq!(status, 200);
    assert!(text.lines().nth(1).unwrap().starts_with("7,21.25,"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_escaped() {
    let app = TestApp::start("hist-xss", None).await;
    let evil = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;";
    let mut a = avg_at(1, 1.0, 1, BASE_MS);
    a["leader"] = json!(evil);
    assert_eq!(app.post(&a, None).await.0, 201);
    let (_, html) = app.get_text("/").await;
    assert!(!html.contains("<script>alert"), "raw script tag leaked");
    assert!(!html.contains("<img src=x"), "raw img tag leaked");
    // askama escapes with numeric entities (&#60; for <); accept named ones too.
    assert!(
        html.contains("&#60;script&#62;alert(") || html.contains("&lt;script&gt;alert("),
        "escaped leader shown"
    );
    assert!(html.contains("&#38;amp;") || html.contains("&amp;amp;"));
    // Hostile query parameters are rejected, never echoed.
    let (status, _) = app.get_text("/?cursor=%3Cscript%3E").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_everything_both_ways() {
    let app = TestApp::start("hist-many", None).await;
    let batch: Vec<_> = (1..=120u64)
        .map(|r| avg_at(r, r as f64 * 0.5, 1, BASE_MS + r as i64 * 60_000))
        .collect();
    assert_eq!(app.post(&json!(batch), None).await.0, 201);
    // Also a legacy point (newest).
    assert_eq!(app.get("/nuevo?dato=99").await.status(), 200);

    let (_, first) = app.get_text("/?limit=25").await;
    assert_eq!(rows(&first), 25);
    assert!(first.contains("<b id=\"position\">1–25</b>"));
    assert!(first.contains("<span id=\"total\">121</span>"));
    assert!(first.contains(">legacy<"), "legacy point labelled");
    assert!(href(&first, "newer").is_none());
    // Walk older to the end.
    let mut html = first.clone();
    let mut pages = 1;
    let mut seen = rows(&html);
    while let Some(next) = href(&html, "older") {
        let (status, page) = app.get_text(&next).await;
        assert_eq!(status, 200, "{next}");
        assert!(
            !page.contains("http-equiv=\"refresh\""),
            "older pages do not refresh"
        );
        seen += rows(&page);
        html = page;
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(seen, 121);
    assert_eq!(pages, 5);
    assert!(
        html.contains("<b id=\"position\">101–121</b>"),
        "last page position"
    );
    assert!(
        html.contains(">0.5<"),
        "round 1 (value 0.5) is on the last page"
    );
    // And back newer to the first page.
    let mut back = 0;
    while let Some(prev) = href(&html, "newer") {
        let (_, page) = app.get_text(&prev).await;
        html = page;
        back += 1;
        assert!(back < 10);
    }
    assert!(
        html.contains("<b id=\"position\">1–25</b>"),
        "back at the newest page"
    );
    // Oldest link goes straight to the end.
    let (_, oldest) = app.get_text(&href(&first, "oldest").unwrap()).await;
    assert!(oldest.contains("<b id=\"position\">97–121</b>"));
    // Page sizes are bounded.
    assert_eq!(app.get("/?limit=0").await.status(), 400);
    assert_eq!(app.get("/?limit=501").await.status(), 400);
    let (_, big) = app.get_text("/?limit=500").await;
    assert_eq!(rows(&big), 121);
    assert!(!big.contains("<circle"), "many points: line only, no dots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_refresh_can_be_turned_off() {
    let app = TestApp::start("hist-refresh", None).await;
    assert_eq!(app.get("/nuevo?dato=1").await.status(), 200);
    let (_, on) = app.get_text("/").await;
    assert!(on.contains("http-equiv=\"refresh\""));
    let off_url = href(&on, "refresh-toggle").unwrap();
    assert!(off_url.contains("refresh=0"));
    let (_, off) = app.get_text(&off_url).await;
    assert!(!off.contains("http-equiv=\"refresh\""));
    assert!(
        href(&off, "newest").unwrap().contains("refresh=0"),
        "choice kept while paging"
    );
    let on_url = href(&off, "refresh-toggle").unwrap();
    let (_, again) = app.get_text(&on_url).await;
    assert!(again.contains("http-equiv=\"refresh\""));
}
