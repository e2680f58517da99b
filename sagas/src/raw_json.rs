//! JSON kept as the exact text it arrived as.
//!
//! A saga's input carries money. Parsed into a [`serde_json::Value`], a number beyond 64 bits
//! becomes a float (`123456789012345678901234567890` turns into `1.2345678901234568e+29`) and
//! object keys get re-sorted. [`RawJson`] keeps the submitted text instead: the coordinator
//! logs it, sends it to every branch call and shows it in the API byte for byte.
//!
//! Deserialise a `RawJson` only as a field of a plain struct (or on its own): serde buffers
//! the content of internally tagged enums and `#[serde(flatten)]` structs, and raw text cannot
//! be taken from such a buffer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value held as its text. Cheap to clone (shared).
///
/// Equality is by meaning, exactly: objects compare key by key whatever their order, strings
/// by their unescaped content, numbers by their text (`1.0` and `1` differ; no number is ever
/// rounded to compare it).
#[derive(Clone)]
pub struct RawJson(Arc<RawValue>);

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it as it is.
    pub fn from_text(text: impl Into<String>) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text.into()).map(|raw| RawJson(Arc::from(raw)))
    }

    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> RawJson {
        let raw = serde_json::value::to_raw_value(value).expect("a JSON value always serialises");
        RawJson(Arc::from(raw))
    }

    /// JSON `null`.
    pub fn null() -> RawJson {
        RawJson::from_value(&Value::Null)
    }

    /// The text, exactly as received.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The text as a raw value, to embed in a larger body without re-encoding it.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Parses the text into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The text parsed into a [`Value`]. Lossy for numbers that do not fit 64 bits: for
    /// display and for inputs whose numbers are known to be small.
    pub fn to_value(&self) -> Value {
        self.parse().unwrap_or(Value::Null)
    }

    /// The string or number a JSON pointer (RFC 6901, e.g. `/order/id`) names: a string's
    /// content, or a number's exact text (never rounded); `None` when the pointer names
    /// nothing, or something else.
    pub fn scalar_at(&self, pointer: &str) -> Option<String> {
        let mut text = self.0.get().trim();
        if !pointer.is_empty() {
            for token in pointer.strip_prefix('/')?.split('/') {
                let token = token.replace("~1", "/").replace("~0", "~");
                text = match text.as_bytes().first()? {
                    b'{' => serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
                        .ok()?
                        .get(&token)?
                        .get(),
                    b'[' => {
                        let index: usize = token.parse().ok()?;
                        serde_json::from_str::<Vec<&RawValue>>(text)
                            .ok()?
                            .get(index)?
                            .get()
                    }
                    _ => return None,
                }
                .trim();
            }
        }
        match text.as_bytes().first()? {
            b'"' => serde_json::from_str(text).ok(),
            b'-' | b'0'..=b'9' => Some(text.to_string()),
            _ => None,
        }
    }

    /// Whether both texts mean the same JSON (see the type's docs).
    pub fn same_json(&self, other: &RawJson) -> bool {
        same_json(self.0.get(), other.0.get())
    }
}

/// Compares two JSON texts by meaning, without ever rounding a number.
fn same_json(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(b'{'), Some(b'{')) => {
            let (Ok(a), Ok(b)) = (
                serde_json::from_str::<BTreeMap<String, &RawValue>>(a),
                serde_json::from_str::<BTreeMap<String, &RawValue>>(b),
            ) else {
                return false;
            };
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va.get(), vb.get()))
        }
        (Some(b'['), Some(b'[')) => {
            let (Ok(a), Ok(b)) = (
                serde_json::from_str::<Vec<&RawValue>>(a),
                serde_json::from_str::<Vec<&RawValue>>(b),
            ) else {
                return false;
            };
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| same_json(x.get(), y.get()))
        }
        (Some(b'"'), Some(b'"')) => {
            serde_json::from_str::<String>(a).ok() == serde_json::from_str::<String>(b).ok()
        }
        // Numbers, `true`, `false`, `null`: the text itself.
        _ => a == b,
    }
}

impl Default for RawJson {
    /// `null`, as an absent input.
    fn default() -> RawJson {
        RawJson::null()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.same_json(other)
    }
}

impl PartialEq<Value> for RawJson {
    /// Compares with a parsed value (lossy beyond 64-bit numbers; for tests and display).
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.0.get())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> RawJson {
        RawJson::from_value(&value)
    }
}

impl From<&Value> for RawJson {
    fn from(value: &Value) -> RawJson {
        RawJson::from_value(value)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawJson, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| RawJson(Arc::from(raw)))
    }
}

/// Any JSON value: the schema of an input or a result, which the coordinator keeps as given.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RawJson {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some("Any JSON value, kept exactly as given."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RawJson {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BIG: &str = r#"{"big": 123456789012345678901234567890, "z": 1, "a": [1.50, "x"]}"#;

    #[test]
    fn the_text_survives_a_round_trip_unchanged() {
        #[derive(Serialize, Deserialize)]
        struct Body {
            input: RawJson,
        }
        let body = format!(r#"{{"input": {BIG}}}"#);
        let parsed: Body = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.input.get(), BIG);
        let written = serde_json::to_string(&parsed).unwrap();
        assert!(
            written.contains("123456789012345678901234567890"),
            "{written}"
        );
        assert!(written.contains(r#""z": 1, "a": [1.50"#), "{written}");
    }

    #[test]
    fn equality_is_exact_by_meaning() {
        let a = RawJson::from_text(BIG).unwrap();
        let reordered =
            RawJson::from_text(r#"{"a":[1.50,"x"],"z":1,"big":123456789012345678901234567890}"#)
                .unwrap();
        assert_eq!(a, reordered);
        // Differ only beyond the precision of a float: still different.
        let off_by_one = RawJson::from_text(
            r#"{"big": 123456789012345678901234567891, "z": 1, "a": [1.50, "x"]}"#,
        )
        .unwrap();
        assert_ne!(a, off_by_one);
        assert_ne!(
            RawJson::from_text(r#"{"a": 1}"#).unwrap(),
            RawJson::from_text(r#"{"a": 1, "b": 2}"#).unwrap()
        );
        assert_eq!(
            RawJson::from_text(r#""caf\u00e9""#).unwrap(),
            RawJson::from_text(r#""café""#).unwrap()
        );
        assert_ne!(
            RawJson::from_text("[1,2]").unwrap(),
            RawJson::from_text("[2,1]").unwrap()
        );
        assert_eq!(RawJson::from_value(&json!({"n": 1})), json!({"n": 1}));
        assert!(RawJson::from_text("{").is_err());
    }

    #[test]
    fn a_pointer_reads_a_string_or_the_exact_text_of_a_number() {
        let json = RawJson::from_text(
            r#"{"order_id": "o-42", "n": 123456789012345678901234567890, "a/b": {"x": [true, 7]}}"#,
        )
        .unwrap();
        assert_eq!(json.scalar_at("/order_id").as_deref(), Some("o-42"));
        assert_eq!(
            json.scalar_at("/n").as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(json.scalar_at("/a~1b/x/1").as_deref(), Some("7"));
        assert_eq!(json.scalar_at("/a~1b/x/0"), None, "not a string or number");
        assert_eq!(json.scalar_at("/missing"), None);
        assert_eq!(json.scalar_at("order_id"), None, "not a pointer");
    }
}
