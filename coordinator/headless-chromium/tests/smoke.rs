//! Starts a real headless Chromium, loads a page, reads its console and takes a screenshot.

use headless_chromium::Browser;

#[tokio::test]
async fn loads_a_page_and_reads_its_console() {
    let browser = Browser::start().await.expect("a headless Chromium");
    browser
        .goto("data:text/html,<title>t</title><script>console.error('boom')</script><p>hi</p>")
        .await
        .unwrap();
    let messages = browser.console_messages().await.unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.is_error() && m.message.contains("boom")),
        "{messages:?}"
    );
    let png = browser.screenshot().await.unwrap();
    assert_eq!(&png[1..4], b"PNG");
    if std::env::var_os("KEEP_BROWSER").is_some() {
        eprintln!("{:?}", browser.dir());
        std::thread::sleep(std::time::Duration::from_secs(30));
    }
    browser.close().await;
}
