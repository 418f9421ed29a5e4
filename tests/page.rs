//! The live mesh page in a real browser: headless Chromium driven over
//! WebDriver by chromedriver (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test.sh` installs when missing). Without them the test
//! says so and passes, unless `TASKMESH_REQUIRE_BROWSER=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::cli::*;
use common::http::request;
use common::procs::Proc;
use serde_json::{json, Value};

/// chromedriver and the Chromium it drives, when installed.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|n| {
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    let driver = find(&["chromedriver"]);
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        _ if std::env::var_os("TASKMESH_REQUIRE_BROWSER").is_some_and(|v| v == "1") => {
            panic!("chromedriver and chromium are required (TASKMESH_REQUIRE_BROWSER=1)")
        }
        _ => None,
    }
}

/// A WebDriver session in headless Chromium, closed on drop.
struct Browser {
    _driver: Proc,
    addr: String,
    session: String,
    /// The browser's profile and temporary files, removed after it stops.
    _files: tempfile::TempDir,
}

impl Browser {
    fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let files = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}")).env("TMPDIR", files.path());
        let driver = Proc::spawn(cmd);
        let addr = format!("127.0.0.1:{port}");
        wait_for("chromedriver to listen", || {
            std::net::TcpStream::connect(&addr).is_ok().then_some(())
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1600",
                         format!("--user-data-dir={}", files.path().join("profile").display())]
            }
        }}});
        let answer = request(&addr, "POST", "/session", Some(&caps)).json();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        Browser {
            _driver: driver,
            addr,
            session,
            _files: files,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = request(&self.addr, method, &path, body).json();
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// A PNG of the page.
    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None);
        let text = b64.as_str().expect("a base64 screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            request(&self.addr, "DELETE", &format!("/session/{}", self.session), None)
        });
    }
}

/// Polls `check` until it gives a value, bounded by `LIMIT`.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + common::LIMIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "not within {:?}: {what}",
            common::LIMIT
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The page's task rows: name → status, as shown.
const ROWS: &str = "return [...document.querySelectorAll('#tasks tbody tr')]
    .map(r => [r.querySelector('.name').textContent, r.dataset.status]);";

fn rows(b: &Browser) -> Vec<(String, String)> {
    let v = b.eval(ROWS);
    let rows = v.as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").to_string(),
                r[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn status_of(b: &Browser, name: &str) -> Option<String> {
    rows(b).into_iter().find(|(n, _)| n == name).map(|(_, s)| s)
}

#[test]
fn the_page_shows_workers_a_dag_and_status_changes_live() {
    let Some((driver, chromium)) = browser() else {
        eprintln!(
            "skipped: chromedriver or chromium is not installed (scripts/test.sh installs them as root)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("open");
    let (admin, addr) = admin(61, &["--http", "0"]);
    let page = admin.expect_line("mesh page: ", "http://");
    // A command worker that holds each task until the test opens the gate.
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done; cat", gate.display());
    let _worker = exec_worker(&addr, "gated:work:5:2", &["sh", "-c", &script], &[]);
    let b = Browser::start(&driver, &chromium);
    b.open(&page);
    wait_for("the worker on the page", || {
        let text = b.eval("return document.querySelector('#peers').textContent;");
        text.as_str()
            .is_some_and(|t| t.contains("gated (work, 5,"))
            .then_some(())
    });
    let office = b.eval("return document.querySelector('#office').textContent;");
    assert!(
        office.as_str().is_some_and(|t| t.contains("(this node)")),
        "{office}"
    );
    let ids = submit_no_wait_all(
        &addr,
        "[[task]]\nname='prep'\nrole='work'\ninput='a'\n\
         [[task]]\nname='left'\nrole='work'\ndepends_on=['prep']\n\
         [[task]]\nname='right'\nrole='work'\ndepends_on=['prep']\n\
         [[task]]\nname='join'\nrole='work'\ndepends_on=['left','right']\n",
    );
    assert_eq!(ids.len(), 4);
    wait_for("prep running on the page", || {
        (status_of(&b, "prep").as_deref() == Some("running")).then_some(())
    });
    let dag = b.eval(
        "return [...document.querySelectorAll('#dag g.node')].map(g => [g.textContent, g.dataset.status]);",
    );
    let nodes = dag.as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 4, "the batch's four tasks in the graph: {dag}");
    let fill = |name: &str| {
        let script = format!(
            "const g = [...document.querySelectorAll('#dag g.node')].find(g => g.textContent.endsWith('{name}'));
             return g ? getComputedStyle(g.querySelector('rect')).fill : null;"
        );
        b.eval(&script).as_str().unwrap_or_default().to_string()
    };
    assert_eq!(fill("prep"), "rgb(255, 232, 163)", "a running task's colour");
    assert_eq!(fill("join"), "rgb(228, 231, 235)", "a waiting task's colour");
    let edges = b.eval("return document.querySelectorAll('#dag path.edge').length;");
    assert_eq!(edges, json!(4), "prep→left, prep→right, left→join, right→join");
    // The page keeps running; the status changes on it as the task ends.
    std::fs::write(&gate, b"").unwrap();
    wait_for("prep completed on the page", || {
        (status_of(&b, "prep").as_deref() == Some("completed")).then_some(())
    });
    wait_for("every task completed on the page", || {
        let all = rows(&b);
        (all.len() == 4 && all.iter().all(|(_, s)| s == "completed")).then_some(())
    });
    let coloured = b.eval("return document.querySelectorAll('#dag g.node.s-completed').length;");
    assert_eq!(coloured, json!(4), "every node coloured as completed");
    assert_eq!(fill("prep"), "rgb(198, 240, 194)", "a completed task's colour");
    let why = b.eval("return document.querySelector('#tasks tbody tr td.why').textContent;");
    assert!(
        why.as_str()
            .is_some_and(|w| w.contains("gated") || w.contains("bidder")),
        "{why}"
    );
    // The chart has samples to draw once the admin has taken a few.
    wait_for("the throughput chart", || {
        let n = b.eval("return document.querySelectorAll('#chart polyline').length;");
        (n == json!(2)).then_some(())
    });
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mesh-page.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
    // The API the page reads, for tools.
    let host = page.trim_start_matches("http://").trim_end_matches('/');
    let tasks = request(host, "GET", "/api/tasks", None).json();
    let join = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "join")
        .cloned()
        .unwrap();
    assert_eq!(join["dependencies"].as_array().map(Vec::len), Some(2), "{join}");
    let mesh = request(host, "GET", "/api/mesh", None).json();
    assert_eq!(mesh["is_admin"], json!(true));
    let admin_row = b.eval("return document.querySelector('#peers tbody tr td:nth-child(2)').textContent;");
    assert_eq!(
        admin_row,
        json!("admin, voter"),
        "the admin is the ledger's voter"
    );
    assert_eq!(mesh["workers"][0]["name"], json!("gated"));
    let verdicts: Vec<&str> = join["bids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["verdict"].as_str())
        .collect();
    assert_eq!(verdicts, ["won"], "the words of `submit --json`");
    // A page elsewhere that points its own name at this address gets
    // nothing (DNS rebinding).
    let refused = common::http::get_as(host, "evil.example:80", "/api/tasks");
    assert_eq!(refused.status, 421, "{}", refused.text());
}
