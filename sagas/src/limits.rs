//! What a registration, a workflow or a submission must satisfy before it is accepted.
//!
//! Everything that later ends up in a request (a name in a header or a URL path, a base URL, an
//! endpoint path, a callback URL) is checked when it is registered or loaded, so that a call the
//! coordinator builds from it can always be sent. Every duration and count has a documented
//! range, so that no arithmetic on it can overflow and no value can make the coordinator spin.
//! A violation is a [`FieldError`] that names the field and the rule.

use std::ops::RangeInclusive;

/// One field that breaks one rule, e.g. `steps[0].name: must match ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// Where the value is, as a path into the document: `steps[2].retry.max_ms`.
    pub field: String,
    /// What the value must be, and what it was.
    pub rule: String,
}

impl FieldError {
    /// `field` breaks `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The same error one level down: `prefix.field`.
    pub fn within(self, prefix: &str) -> FieldError {
        FieldError {
            field: format!("{prefix}.{}", self.field),
            rule: self.rule,
        }
    }
}

/// The rule every name follows (participants, actions, workflows, steps): names travel in URL
/// paths and in the `Saga-Step` and `Idempotency-Key` headers.
pub const NAME_RULE: &str =
    "must be 1 to 128 letters, digits, '_', '-' or '.', starting with a letter or digit";

/// Longest name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` follows [`NAME_RULE`].
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks `name` against [`NAME_RULE`].
pub fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{NAME_RULE} (got {name:?})"),
        ))
    }
}

/// Longest business key, in bytes.
pub const MAX_BUSINESS_KEY_LEN: usize = 256;

/// A business key: 1 to [`MAX_BUSINESS_KEY_LEN`] bytes, no control characters (it is shown in
/// lists and searched for by exact match).
pub fn check_business_key(field: &str, key: &str) -> Result<(), FieldError> {
    if !key.is_empty() && key.len() <= MAX_BUSINESS_KEY_LEN && !key.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must be 1 to {MAX_BUSINESS_KEY_LEN} bytes without control characters (got {key:?})"
            ),
        ))
    }
}

/// A JSON pointer (RFC 6901) into a saga's input: empty (the whole input) or `/` then
/// reference tokens; at most 256 bytes.
pub fn check_json_pointer(field: &str, pointer: &str) -> Result<(), FieldError> {
    let tokens_ok = pointer.split('/').skip(1).all(|token| {
        let mut rest = token;
        while let Some(i) = rest.find('~') {
            if !matches!(rest.as_bytes().get(i + 1), Some(b'0' | b'1')) {
                return false;
            }
            rest = &rest[i + 2..];
        }
        true
    });
    if pointer.len() <= 256 && (pointer.is_empty() || pointer.starts_with('/')) && tokens_ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be a JSON pointer such as \"/order_id\" (got {pointer:?})"),
        ))
    }
}

/// Per-call timeouts (participant policy and step override), in milliseconds: 1 ms to 1 hour.
pub const CALL_TIMEOUT_MS: RangeInclusive<u64> = 1..=3_600_000;
/// A workflow's global deadline, in milliseconds: 1 ms to 30 days.
pub const SAGA_TIMEOUT_MS: RangeInclusive<u64> = 1..=30 * 86_400_000;
/// Retry delays (`initial_ms`, `max_ms`) and how long a circuit stays open (`open_ms`), in
/// milliseconds: 1 ms to 1 day.
pub const DELAY_MS: RangeInclusive<u64> = 1..=86_400_000;
/// Growth factor of retry delays.
pub const MULTIPLIER: RangeInclusive<f64> = 1.0..=100.0;
/// Attempts of one phase (`max_attempts`, `settle_max_attempts`).
pub const ATTEMPTS: RangeInclusive<u32> = 1..=10_000;
/// Calls in flight to one participant (`max_concurrency`).
pub const CONCURRENCY: RangeInclusive<u32> = 1..=10_000;
/// Calls waiting for a slot (`queue_capacity`).
pub const QUEUE_CAPACITY: RangeInclusive<u32> = 0..=1_000_000;
/// Outbound calls per second (`rate_limit_per_sec`).
pub const RATE_PER_SEC: RangeInclusive<u32> = 1..=1_000_000;
/// Consecutive failures that open a circuit (`failure_threshold`).
pub const FAILURE_THRESHOLD: RangeInclusive<u32> = 1..=1_000_000;
/// Deepest nesting of arrays and objects in a saga's input. The input travels to every
/// participant, whose JSON parser may recurse once per level (serde_json stops at 128).
pub const MAX_INPUT_DEPTH: usize = 64;

/// Checks that the JSON `text` nests arrays and objects at most [`MAX_INPUT_DEPTH`] deep.
/// `text` must already be valid JSON (brackets inside strings are not counted).
pub fn check_json_depth(field: &str, text: &str) -> Result<(), FieldError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_INPUT_DEPTH {
                    return Err(FieldError::new(
                        field,
                        format!("must nest arrays and objects at most {MAX_INPUT_DEPTH} deep"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Steps in one workflow.
pub const MAX_STEPS: usize = 256;

/// Checks that `value` lies in `range`, naming both when it does not.
pub fn check_range<T>(field: &str, value: T, range: &RangeInclusive<T>) -> Result<(), FieldError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must be between {} and {} (got {value})",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// An endpoint path: `/` then characters a URL path may carry as they are (RFC 3986 `pchar`,
/// `/`, `?` and a query), or `%` escapes; no spaces, no control characters, no fragment.
pub fn check_path(field: &str, path: &str) -> Result<(), FieldError> {
    let rule = "must start with '/' and contain only URL path characters (letters, digits, \
                -._~!$&'()*+,;=:@/?, or %XX escapes)";
    let bytes = path.as_bytes();
    let mut ok = bytes.first() == Some(&b'/') && path.len() <= 1024;
    let mut i = 0;
    while ok && i < bytes.len() {
        let b = bytes[i];
        ok = match b {
            b'%' => {
                let escaped = bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                i += 2;
                escaped
            }
            b if b.is_ascii_alphanumeric() => true,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' | b':' | b'@' | b'/' | b'?' => true,
            _ => false,
        };
        i += 1;
    }
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{rule} (got {path:?})")))
    }
}

/// An absolute `http://` or `https://` URL with a host, no credentials and no fragment, that
/// the coordinator can send requests to. With `allow_query` false it must not have a query
/// either (a base URL, to which paths are appended).
pub fn check_http_url(field: &str, url: &str, allow_query: bool) -> Result<(), FieldError> {
    let fail = |why: &str| Err(FieldError::new(field, format!("{why} (got {url:?})")));
    if url.len() > 2048 {
        return fail("must be at most 2048 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return fail("must not contain spaces or control characters");
    }
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return fail(&format!("must be an absolute http:// or https:// URL: {e}")),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return fail("must be an http:// or https:// URL");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return fail("must name a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return fail("must not contain credentials");
    }
    if parsed.fragment().is_some() {
        return fail("must not have a fragment (#...)");
    }
    if !allow_query && parsed.query().is_some() {
        return fail("must not have a query (?...): endpoint paths are appended to it");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_depth_is_counted_outside_strings() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check_json_depth("input", &deep(MAX_INPUT_DEPTH)).unwrap();
        let err = check_json_depth("input", &deep(MAX_INPUT_DEPTH + 1)).unwrap_err();
        assert_eq!(err.field, "input");
        let brackets_in_strings = format!(r#"{{"a": "{}", "b": "\\\"[["}}"#, "[".repeat(500));
        check_json_depth("input", &brackets_in_strings).unwrap();
    }

    #[test]
    fn names() {
        assert!(is_valid_name("place_order.v2-x"));
        assert!(is_valid_name("a"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("reserve\n"));
        assert!(!is_valid_name(".."));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name("a:b"));
        assert!(!is_valid_name(&"a".repeat(129)));
        let err = check_name("steps[0].name", "reserve\n").unwrap_err();
        assert_eq!(err.field, "steps[0].name");
        assert!(err.to_string().contains(r#"(got "reserve\n")"#), "{err}");
    }

    #[test]
    fn paths() {
        for ok in ["/", "/freeze/try", "/a%20b", "/x?y=1&z=2", "/~u/@a:b"] {
            check_path("p", ok).unwrap();
        }
        for bad in ["", "freeze", "/a b", "/a\n", "/a#b", "/a%2", "/a%zz", "/é"] {
            assert!(check_path("p", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:7701",
            "https://wallet.internal/api/",
            "http://[::1]:80",
        ] {
            check_http_url("base_url", ok, false).unwrap();
        }
        check_http_url("callback_url", "http://h/cb?order=1", true).unwrap();
        for bad in [
            "127.0.0.1:7701",
            "ftp://h",
            "http://",
            "http://exa mple.com",
            "http://h/\n",
            "http://u:p@h/",
            "http://h/#x",
            "http://h/?q=1",
        ] {
            assert!(check_http_url("base_url", bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges_name_the_bounds() {
        check_range("timeout_ms", 5_000, &CALL_TIMEOUT_MS).unwrap();
        let err = check_range("retry.max_ms", u64::MAX, &DELAY_MS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retry.max_ms: must be between 1 and 86400000 (got 18446744073709551615)"
        );
    }
}
