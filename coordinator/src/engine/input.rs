//! A saga's input: the submitter's JSON, kept as its text.
//!
//! The coordinator never looks inside an input: it records it, passes it to every branch call
//! and shows it in views. Kept as shared text it is neither re-parsed nor cloned when a saga's
//! state is copied (each round) or a call is built, and a waiting saga holds a hundred bytes
//! instead of a parsed map (a `serde_json` object is a B-tree whose nodes hold eleven entries).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Input(Arc<RawValue>);

/// Read through a parsed value: events are internally tagged enums, which serde buffers
/// before the fields see them, and a raw value cannot be read from such a buffer.
impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Input, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Input::from)
    }
}

impl Input {
    /// The input as JSON text, for a request body.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The input parsed, for views.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl From<&serde_json::Value> for Input {
    fn from(value: &serde_json::Value) -> Input {
        let raw = serde_json::value::to_raw_value(value).expect("a JSON value always serialises");
        Input(Arc::from(raw))
    }
}

impl From<serde_json::Value> for Input {
    fn from(value: serde_json::Value) -> Input {
        Input::from(&value)
    }
}

/// Same text: inputs are written by one serialiser (compact, object keys sorted), so equal
/// values have equal text.
impl PartialEq for Input {
    fn eq(&self, other: &Input) -> bool {
        self.0.get() == other.0.get()
    }
}

impl PartialEq<serde_json::Value> for Input {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_input_round_trips_through_the_log_as_the_same_json() {
        let value = json!({"order_id": 7, "account": "a", "amount": 250, "nested": {"z": [1, 2]}});
        let input = Input::from(&value);
        let logged = serde_json::to_vec(&input).unwrap();
        let read: Input = serde_json::from_slice(&logged).unwrap();
        assert_eq!(read, input);
        assert_eq!(read.to_value(), value);
        assert!(read == value);
        assert!(read != json!({"order_id": 8}));
    }
}
