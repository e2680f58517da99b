//! Signed calls: the coordinator signs every branch call, completion callback and alert webhook
//! it sends, and a receiver that holds the key checks that a request came from it, unchanged,
//! recently.
//!
//! ```text
//! Saga-Signature: t=<unix seconds>,kid=<ID>,v1=<hex HMAC-SHA256(SECRET, "<t>.<METHOD>.<path>.<body>")>
//! ```
//!
//! `path` is the request target (path and query, as sent), `body` the exact bytes sent. Keys
//! are given as `ID:SECRET`; of several, the first signs and all verify (rotation: add the new
//! key second everywhere, then move it first, then drop the old one). A signature older or
//! newer than [`MAX_SKEW`] is refused as stale, so a captured request cannot be replayed
//! later; within that window, the receivers' idempotency (`Idempotency-Key`) makes a replay
//! harmless.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER_SAGA_SIGNATURE: &str = "saga-signature";

/// How far a signature's time may be from the receiver's clock: 5 minutes.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

/// One key: its id (named in the header, `kid`) and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a signature is refused, or a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no `Saga-Signature`.
    #[error("the request is not signed (no Saga-Signature header)")]
    Missing,
    /// The header is not `t=...,kid=...,v1=...`.
    #[error("Saga-Signature is malformed: {0}")]
    Malformed(&'static str),
    /// The header names a key the receiver does not hold.
    #[error("Saga-Signature names an unknown key {0:?}")]
    UnknownKey(String),
    /// The signature's time is more than [`MAX_SKEW`] from the receiver's clock.
    #[error("Saga-Signature is stale: signed at {signed}, now {now} (at most 300 s apart)")]
    Stale {
        /// When it was signed, unix seconds.
        signed: u64,
        /// The receiver's clock, unix seconds.
        now: u64,
    },
    /// The HMAC does not match the request.
    #[error("Saga-Signature does not match the request")]
    Mismatch,
    /// A key given as `ID:SECRET` breaks a rule.
    #[error("signing key: {0}")]
    BadKey(&'static str),
}

impl SigningKey {
    /// A key `id` (1 to 64 letters, digits, `_`, `-`, `.`) with a non-empty `secret`.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, SignatureError> {
        let id = id.into();
        let secret = secret.into();
        let id_ok = (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !id_ok {
            return Err(SignatureError::BadKey(
                "the id must be 1 to 64 letters, digits, '_', '-' or '.'",
            ));
        }
        if secret.is_empty() {
            return Err(SignatureError::BadKey("the secret must not be empty"));
        }
        Ok(SigningKey { id, secret })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, t: u64, method: &str, target: &str, body: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(format!("{t}.{method}.{target}.").as_bytes());
        mac.update(body);
        mac
    }

    /// The `Saga-Signature` value for a request signed at `t` (unix seconds): `method` as sent
    /// (`POST`), `target` the path and query, `body` the exact bytes.
    pub fn sign(&self, t: u64, method: &str, target: &str, body: &[u8]) -> String {
        let digest = self.mac(t, method, target, body).finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        format!("t={t},kid={},v1={hex}", self.id)
    }
}

impl FromStr for SigningKey {
    type Err = SignatureError;

    /// `ID:SECRET`, as given to `--signing-key`.
    fn from_str(text: &str) -> Result<Self, SignatureError> {
        let (id, secret) = text
            .split_once(':')
            .ok_or(SignatureError::BadKey("expected ID:SECRET"))?;
        SigningKey::new(id, secret.as_bytes())
    }
}

/// The keys of a signer or a verifier: the first signs, every one verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// `keys`, the first signing; `None` when there is none.
    pub fn new(keys: Vec<SigningKey>) -> Option<SigningKeys> {
        (!keys.is_empty()).then_some(SigningKeys { keys })
    }

    /// The key that signs.
    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The `Saga-Signature` value for a request sent now (see [`SigningKey::sign`]).
    pub fn sign_now(&self, method: &str, target: &str, body: &[u8]) -> String {
        self.signer().sign(unix_now(), method, target, body)
    }

    /// Signs `request` as it will be sent: its method, its URL's path and query, its body's
    /// exact bytes (a streamed body, which has none yet, signs as empty). Replaces any
    /// `Saga-Signature` it had.
    pub fn sign_request(&self, request: &mut reqwest::Request) {
        let url = request.url();
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let body = request
            .body()
            .and_then(|b| b.as_bytes())
            .unwrap_or_default();
        let signature = self.sign_now(request.method().as_str(), &target, body);
        let value = reqwest::header::HeaderValue::from_str(&signature)
            .expect("a signature is ASCII: digits, a key id of [A-Za-z0-9_.-], hex");
        request.headers_mut().insert(HEADER_SAGA_SIGNATURE, value);
    }

    /// Checks `header` (the `Saga-Signature` value, `None` when absent) against the request
    /// at `now` (unix seconds). Errors: each [`SignatureError`] but `BadKey`.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        target: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let (mut t, mut kid, mut v1) = (None, None, None);
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => t = Some(value),
                Some(("kid", value)) => kid = Some(value),
                Some(("v1", value)) => v1 = Some(value),
                // Other versions or fields a later coordinator may add.
                Some(_) => {}
                None => return Err(SignatureError::Malformed("expected key=value pairs")),
            }
        }
        let t: u64 = t
            .ok_or(SignatureError::Malformed("no t="))?
            .parse()
            .map_err(|_| SignatureError::Malformed("t= is not unix seconds"))?;
        let kid = kid.ok_or(SignatureError::Malformed("no kid="))?;
        let v1 = decode_hex(v1.ok_or(SignatureError::Malformed("no v1="))?)
            .ok_or(SignatureError::Malformed("v1= is not hex"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(|| SignatureError::UnknownKey(kid.to_string()))?;
        if t.abs_diff(now) > MAX_SKEW.as_secs() {
            return Err(SignatureError::Stale { signed: t, now });
        }
        // `verify_slice` compares in constant time.
        key.mac(t, method, target, body)
            .verify_slice(&v1)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The system clock in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &[&str]) -> SigningKeys {
        SigningKeys::new(spec.iter().map(|s| s.parse().unwrap()).collect()).unwrap()
    }

    #[test]
    fn a_known_vector_signs_as_the_design_says() {
        // Computed independently: printf '1700000000.POST./try?x=1.{"a":1}' |
        //   openssl dgst -sha256 -hmac s3cret
        let key: SigningKey = "k1:s3cret".parse().unwrap();
        let header = key.sign(1_700_000_000, "POST", "/try?x=1", br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,kid=k1,v1=66bcd8c830ad32d85002ace78b4c56a2d152e505c7012e00816ca0ef0aa23ceb"
        );
    }

    #[test]
    fn every_key_verifies_and_a_changed_request_does_not() {
        let old = keys(&["old:one"]);
        let both = keys(&["new:two", "old:one"]);
        let now = 1_700_000_000;
        let header = old.signer().sign(now, "POST", "/a", b"{}");
        assert_eq!(both.verify(Some(&header), "POST", "/a", b"{}", now), Ok(()));
        assert_eq!(
            both.verify(Some(&header), "POST", "/a", b"{ }", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            both.verify(Some(&header), "POST", "/b", b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            keys(&["new:two"]).verify(Some(&header), "POST", "/a", b"{}", now),
            Err(SignatureError::UnknownKey("old".into()))
        );
        assert!(matches!(
            both.verify(Some(&header), "POST", "/a", b"{}", now + 301),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            both.verify(Some(&header), "POST", "/a", b"{}", now + 300),
            Ok(())
        );
        assert_eq!(
            both.verify(None, "POST", "/a", b"{}", now),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            both.verify(Some("t=1,kid=old"), "POST", "/a", b"{}", now),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn keys_are_id_colon_secret() {
        assert!("k1:".parse::<SigningKey>().is_err());
        assert!(":secret".parse::<SigningKey>().is_err());
        assert!("no-colon".parse::<SigningKey>().is_err());
        assert!("k,1:secret".parse::<SigningKey>().is_err());
        let key: SigningKey = "k1:se:cret".parse().unwrap();
        assert_eq!(key.id(), "k1");
        assert!(!format!("{key:?}").contains("se:cret"));
    }
}
