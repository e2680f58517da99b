//! The saga input a business closure is applied with, exactly as it was submitted.

use serde::de::DeserializeOwned;
use serde_json::Value;

use sagas::RawJson;

use crate::reply::Rejection;

/// The input of one branch call, handed to business closures: the saga's input as its exact
/// submitted text. For a forward phase it is the request's input; for `confirm` and
/// `cancel`/`compensate` it is the input the forward phase was applied with (stored in the
/// barrier record), whatever their own request carries.
///
/// Read it as typed data with [`BranchInput::parse`] (from the exact text, so a `u128` or a
/// string field keeps every digit), as a [`Value`] with [`BranchInput::value`], or as the
/// text itself with [`BranchInput::text`].
#[derive(Debug, Clone, Copy)]
pub struct BranchInput<'a> {
    raw: &'a RawJson,
}

impl<'a> BranchInput<'a> {
    /// The input held by `raw`.
    pub fn new(raw: &'a RawJson) -> Self {
        BranchInput { raw }
    }

    /// The exact text, byte for byte as submitted (key order, spacing, number digits).
    pub fn text(&self) -> &'a str {
        self.raw.get()
    }

    /// The exact text as the wire type.
    pub fn raw(&self) -> &'a RawJson {
        self.raw
    }

    /// The input parsed from the exact text into a [`Value`], on every call. Lossy for numbers
    /// beyond 64 bits (they become floats); use [`BranchInput::parse`] or
    /// [`BranchInput::text`] where that matters.
    pub fn value(&self) -> Value {
        self.raw.to_value()
    }

    /// Decodes the exact text into `T`. Unusable input is a `422 invalid_input` rejection.
    /// Unknown fields are ignored unless `T` refuses them: a step usually receives the whole
    /// saga input.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        self.raw
            .parse()
            .map_err(|e| Rejection::unprocessable("invalid_input", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn parse_reads_the_exact_text_without_rounding() {
        #[derive(Deserialize)]
        struct Big {
            big: u128,
        }
        let text = r#"{"big": 123456789012345678901234567890, "z": 1}"#;
        let raw = RawJson::from_text(text).unwrap();
        let input = BranchInput::new(&raw);
        assert_eq!(input.text(), text);
        assert_eq!(
            input.parse::<Big>().unwrap().big,
            123_456_789_012_345_678_901_234_567_890
        );
        assert_eq!(input.value()["z"], 1);
        let err = input.parse::<Vec<u8>>().unwrap_err();
        assert_eq!((err.status, err.code.as_str()), (422, "invalid_input"));
    }
}
