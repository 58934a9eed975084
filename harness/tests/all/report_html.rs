//! `vmemu report --html DIR` renders in a real headless browser: the
//! grid has one cell per planned run of the matrix (counted from the JSON
//! stream's summary and skip records), and no page logs a console
//! message. Chromium comes from Debian's registry (`apt-get install
//! chromium`); where it is absent the browser part prints why and
//! returns, and the files are still checked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vmemu(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmemu"))
        .args(args)
        .output()
        .expect("vmemu runs")
}

/// Planned runs of the built-in matrix: summaries and skips.
fn planned_runs() -> usize {
    let out = vmemu(&["matrix", "--format", "json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"type\":\"summary\"") || l.contains("\"type\":\"skip\""))
        .count()
}

fn cells(html: &str) -> usize {
    html.matches("class=\"cell ").count()
}

/// The DOM chromium builds for `page`, and the console lines it logged.
fn chromium_dom(browser: &Path, page: &Path, profile: &Path) -> (String, Vec<String>) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

#[test]
fn the_site_renders_with_the_full_grid_and_no_console_error() {
    let dir: PathBuf = std::env::temp_dir().join(format!("vmemu-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = vmemu(&["report", "--html", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    let want = planned_runs();
    assert!(want > 200, "the matrix plans {want} runs");
    assert_eq!(cells(&index), want, "one grid cell per planned run");
    for st in ["pass", "finding", "skip"] {
        assert!(
            index.contains(&format!("class=\"cell {st}\"")),
            "no {st} cell"
        );
    }
    // Every cell links to a transcript page that exists.
    for href in index
        .split("<a href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        assert!(dir.join(href).is_file(), "broken link {href}");
    }
    let walks = std::fs::read_to_string(dir.join("walks.html")).expect("walks.html");
    assert_eq!(
        walks.matches("<svg").count(),
        3,
        "one walk diagram per arch"
    );
    let claims = std::fs::read_to_string(dir.join("claims.html")).expect("claims.html");
    assert!(claims.matches("class=\"verdict\"").count() >= 5);

    let browser = Path::new("/usr/bin/chromium");
    if !browser.exists() {
        eprintln!(
            "skipping the browser check: /usr/bin/chromium is absent (apt-get install chromium)"
        );
        return;
    }
    let profile = dir.join(".chromium-profile");
    let (dom, console) = chromium_dom(browser, &dir.join("index.html"), &profile);
    assert_eq!(cells(&dom), want, "the rendered grid has every cell");
    assert!(console.is_empty(), "console messages: {console:?}");
    for p in ["claims.html", "walks.html"] {
        let (dom, console) = chromium_dom(browser, &dir.join(p), &profile);
        assert!(dom.contains("</html>"), "{p} did not render");
        assert!(console.is_empty(), "{p}: console messages: {console:?}");
    }
    let (dom, _) = chromium_dom(browser, &dir.join("walks.html"), &profile);
    assert_eq!(
        dom.matches("<svg").count(),
        3,
        "the SVGs are in the rendered DOM"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
