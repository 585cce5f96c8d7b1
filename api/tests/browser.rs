//! The history page in a real browser (Debian's headless Chromium): it renders, the
//! script runs, the chart is drawn (blue line pixels in a screenshot), and the pagination
//! links lead to the next page. Skipped, with a message, only when /usr/bin/chromium is
//! absent (CI installs it via scripts/install-deps).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::{avg_at, TestApp};

use testkit::chromium::CHROMIUM;
const BASE_MS: i64 = 1_767_225_600_000;

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = testkit::chromium::headless(profile);
    cmd.arg("--hide-scrollbars").args(args);
    cmd.output().expect("run chromium")
}

/// Counts pixels close to the chart's line colour (#2563eb) in a PNG, decoding it with
/// Python's standard library (zlib) so no image crate is needed.
fn count_line_pixels(png: &Path) -> u64 {
    const DECODE: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
pos, idat, w, h, ct = 8, b'', 0, 0, 0
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
    if kind == b'IHDR': w, h, depth, ct = struct.unpack('>IIBB', body[:10])
    elif kind == b'IDAT': idat += body
bpp = {2: 3, 6: 4}[ct]
raw, stride, prev, count, i = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0, 0
for _ in range(h):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        r, g, bl = line[x], line[x + 1], line[x + 2]
        if abs(r - 0x25) < 40 and abs(g - 0x63) < 40 and abs(bl - 0xeb) < 40: count += 1
    prev = line
print(count)
"#;
    let out = Command::new("python3")
        .args(["-c", DECODE])
        .arg(png)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
}

fn href_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..at + dom[at..].find('>')?];
    let h = tag.find("href=\"")? + 6;
    let end = tag[h..].find('"')?;
    Some(tag[h..h + end].replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_page_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED history_page_in_headless_chromium: {CHROMIUM} not installed (apt-get install chromium)");
        return;
    }
    let app = TestApp::start("browser", None).await;
    let batch: Vec<_> = (1..=120u64)
        .map(|r| {
            let v = 20.0 + 4.0 * ((r as f64) / 9.0).sin() + (r % 7) as f64 * 0.3;
            let mut a = avg_at(
                r,
                (v * 100.0).round() / 100.0,
                3,
                BASE_MS + r as i64 * 30_000,
            );
            a["leader"] = json!(if r < 70 { "node-a" } else { "node-b" });
            a
        })
        .collect();
    assert_eq!(app.post(&json!(batch), None).await.0, 201);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = app.url("/?limit=50&refresh=0");

    // DOM after scripts ran.
    let url2 = url.clone();
    let profile = dir.path().join("p1");
    let out = tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom", &url2]))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<svg id=\"chart\""),
        "chart in DOM; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("<polyline class=\"line\" points=\""));
    assert_eq!(dom.matches("<time data-ms=").count(), 50);
    assert!(
        dom.contains("title=\"2026-01-01 "),
        "the local-time script ran (UTC kept as title)"
    );
    assert!(dom.contains("1–50"));

    // Pagination: follow "Older" in the browser.
    let older = href_of(&dom, "older").expect("older link");
    let older_url = app.url(&older);
    let profile = dir.path().join("p2");
    let out = tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom", &older_url]))
        .await
        .unwrap();
    let dom2 = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(dom2.contains("51–100"), "second page");
    assert!(href_of(&dom2, "newer").is_some());

    // Screenshot: the chart's line is actually painted.
    let shot = dir.path().join("history.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let profile = dir.path().join("p3");
    let out = tokio::task::spawn_blocking(move || {
        chromium(&profile, &[&shot_arg, "--window-size=1280,900", &url])
    })
    .await
    .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blue = count_line_pixels(&shot);
    assert!(blue > 800, "chart line pixels: {blue}");
    if let Ok(keep) = std::env::var("SENSOR_API_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep screenshot");
    }
}
