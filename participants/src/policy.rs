//! A participant's resilience policy, read from a file an operator wrote.
//!
//! A participant sends a policy on registration only when it was given one: a registration
//! without a policy keeps whatever the coordinator has stored (an operator's choice, or the
//! defaults), so a restart never undoes an operator's change. [`load`] reads and validates
//! such a file at start-up, so a bad one stops the participant before it serves.

use std::path::{Path, PathBuf};

use thiserror::Error;

use sagas::{FieldError, ParticipantPolicy};

/// Why a policy file is unusable. Each message names the file, and the field and rule where
/// one is broken.
#[derive(Debug, Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a policy: bad syntax, an unknown field, a value of the wrong type.
    #[error("policy file {} is not a participant policy: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line and column, or the unknown field's name).
        message: String,
    },
    /// A field breaks its rule (`ParticipantPolicy::validate`).
    #[error("policy file {}: field {}: {}", path.display(), source.field, source.rule)]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field and the rule it breaks, e.g. `retry.max_ms`.
        source: FieldError,
    },
}

/// Reads the [`ParticipantPolicy`] in `path`: JSON if the name ends in `.json`, YAML
/// otherwise. Every field is optional (defaults as documented on the type); unknown fields
/// are refused. The policy is validated.
///
/// Errors: [`PolicyFileError`], naming the file and, for a broken rule, the field.
pub fn load(path: &Path) -> Result<ParticipantPolicy, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        serde_json::from_str::<ParticipantPolicy>(&text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str::<ParticipantPolicy>(&text).map_err(|e| e.to_string())
    };
    let policy = parsed.map_err(|message| PolicyFileError::Parse {
        path: path.to_path_buf(),
        message,
    })?;
    policy
        .validate()
        .map_err(|source| PolicyFileError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_json_and_yaml_with_defaults_for_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        let json = file(
            &dir,
            "p.json",
            r#"{"timeout_ms": 2000, "retry": {"max_attempts": 7}}"#,
        );
        let policy = load(&json).unwrap();
        assert_eq!(policy.timeout_ms, 2000);
        assert_eq!(policy.retry.max_attempts, 7);
        assert_eq!(
            policy.max_concurrency,
            ParticipantPolicy::default().max_concurrency
        );

        let yaml = file(
            &dir,
            "p.yaml",
            "timeout_ms: 2000\nretry:\n  max_attempts: 7\n",
        );
        assert_eq!(load(&yaml).unwrap(), policy);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let invalid = file(&dir, "p.json", r#"{"timeout_ms": 0}"#);
        let err = load(&invalid).unwrap_err();
        assert!(
            matches!(&err, PolicyFileError::Invalid { source, .. } if source.field == "timeout_ms"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("p.json") && message.contains("field timeout_ms"),
            "{message}"
        );

        let unknown = file(&dir, "p.yml", "timeout_msec: 5\n");
        let err = load(&unknown).unwrap_err();
        assert!(matches!(err, PolicyFileError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains("timeout_msec"), "{err}");

        let err = load(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, PolicyFileError::Read { .. }), "{err:?}");
    }
}
