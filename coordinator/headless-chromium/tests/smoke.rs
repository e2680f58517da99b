//! Starts a real headless Chromium, loads a page, reads its console and takes a screenshot of
//! the asked size.

use headless_chromium::{Browser, BrowserOptions};

#[tokio::test]
async fn loads_a_page_reads_its_console_and_takes_a_screenshot() {
    let options = BrowserOptions {
        width: 800,
        height: 600,
    };
    let browser = Browser::start_with(&options)
        .await
        .expect("a headless Chromium");
    browser
        .goto("data:text/html,<title>t</title><script>console.error('boom')</script><p id=p>hi</p>")
        .await
        .unwrap();
    assert_eq!(
        browser.wait_for_text("#p", |t| t == "hi").await.unwrap(),
        "hi"
    );
    let messages = browser.console_messages().await.unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.is_error() && m.message.contains("boom")),
        "{messages:?}"
    );
    assert!(
        browser.console_messages().await.unwrap().is_empty(),
        "each entry is handed out once"
    );
    let png = browser.screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (800, 600), "the PNG is the viewport");
    let dir = browser.dir().to_path_buf();
    browser.close().await;
    assert!(!dir.exists(), "the profile is removed");
}
