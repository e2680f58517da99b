//! Workflow definitions and their structural validation.
//!
//! A workflow is a list of steps. A step without `after` runs after the step listed before it
//! (sequential by default); a step with `after` runs once exactly those steps have succeeded
//! (`after: []` makes it a root), so independent steps run concurrently. Whether a participant
//! and its action exist is checked by the coordinator against its registry; this module checks
//! what can be checked from the definition alone.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{self, FieldError, check_name, check_range};

/// Body of `PUT /v1/workflows/{name}` and contents of a workflow file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// The steps, 1 to [`crate::limits::MAX_STEPS`], in order: a step without `after` runs
    /// after the one listed before it.
    pub steps: Vec<StepSpec>,
    /// A JSON pointer into the input (`/order_id`) whose value (a string or a number) becomes
    /// the business key of a saga submitted without one; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// Global saga deadline in milliseconds from submission: a saga that has not decided by
    /// then rolls back. Range [`crate::limits::SAGA_TIMEOUT_MS`]; absent: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One step of a workflow: which participant action it calls, and after which steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Step name, unique within the workflow ([`crate::limits::NAME_RULE`]); travels in the
    /// `Saga-Step` header and the idempotency key.
    pub name: String,
    /// Name of the registered participant that serves the step.
    pub participant: String,
    /// Name of one of that participant's actions; its endpoints make the step SAGA or TCC.
    pub action: String,
    /// Steps that must succeed first. Absent: the previous step in the list; `[]`: none (a
    /// root of the DAG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// Per-call timeout in milliseconds, overriding the participant's `timeout_ms`. Range
    /// [`crate::limits::CALL_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry schedule, overriding the participant's `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Exponential backoff with jitter. Data, not a closure, so it can be stored and shown.
/// Every field is optional on the wire (a missing one takes its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay before the second attempt, in milliseconds. Default 100, range
    /// [`crate::limits::DELAY_MS`].
    pub initial_ms: u64,
    /// Upper bound of one delay, in milliseconds; not below `initial_ms`. Default 5000, range
    /// [`crate::limits::DELAY_MS`].
    pub max_ms: u64,
    /// Factor each delay grows by. Default 2.0, range [`crate::limits::MULTIPLIER`].
    pub multiplier: f64,
    /// Attempts of a forward phase (`try`/`action`) before the saga rolls back. Default 4,
    /// range [`crate::limits::ATTEMPTS`].
    pub max_attempts: u32,
    /// Attempts of `confirm`/`cancel`/`compensate` before the saga turns `stuck`. Default 30,
    /// range [`crate::limits::ATTEMPTS`].
    pub settle_max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_ms: 100,
            max_ms: 5_000,
            multiplier: 2.0,
            max_attempts: 4,
            settle_max_attempts: 30,
        }
    }
}

impl RetryPolicy {
    /// Checks every field against its documented range (see [`crate::limits`]); field names
    /// in the error are relative to the policy.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("initial_ms", self.initial_ms, &limits::DELAY_MS)?;
        check_range("max_ms", self.max_ms, &limits::DELAY_MS)?;
        if self.max_ms < self.initial_ms {
            return Err(FieldError::new(
                "max_ms",
                format!(
                    "must not be below initial_ms {} (got {})",
                    self.initial_ms, self.max_ms
                ),
            ));
        }
        if !self.multiplier.is_finite() || !limits::MULTIPLIER.contains(&self.multiplier) {
            return Err(FieldError::new(
                "multiplier",
                format!(
                    "must be a number between {} and {} (got {})",
                    limits::MULTIPLIER.start(),
                    limits::MULTIPLIER.end(),
                    self.multiplier
                ),
            ));
        }
        check_range("max_attempts", self.max_attempts, &limits::ATTEMPTS)?;
        check_range(
            "settle_max_attempts",
            self.settle_max_attempts,
            &limits::ATTEMPTS,
        )
    }
}

/// What is wrong with a workflow definition. Each variant names the offending step.
///
/// A `PUT /v1/workflows/{name}` that has one is `400`. At submission, a workflow whose
/// participant or action is no longer registered is `409`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkflowError {
    /// The workflow has no steps.
    #[error("workflow has no steps")]
    Empty,
    /// A field breaks a rule of [`crate::limits`] (a name, a range).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Two steps share this name.
    #[error("duplicate step name {0:?}")]
    DuplicateStep(String),
    /// A step's `after` names a step the workflow does not have.
    #[error("step {step:?} runs after unknown step {after:?}")]
    UnknownAfter {
        /// The step whose `after` is wrong.
        step: String,
        /// The name in its `after` that matches no step.
        after: String,
    },
    /// This step lists itself in its `after`.
    #[error("step {0:?} runs after itself")]
    SelfDependency(String),
    /// The `after` lists form a cycle: step names in run order, the first repeated at the end.
    #[error("steps form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A step names a participant that is not registered (checked by the coordinator, not by
    /// [`WorkflowSpec::validate`]).
    #[error("step {step:?}: unknown participant {participant:?}")]
    UnknownParticipant {
        /// The step that names it.
        step: String,
        /// The participant name that is not registered.
        participant: String,
    },
    /// A step names an action its participant does not offer (checked by the coordinator).
    #[error("step {step:?}: participant {participant:?} has no action {action:?}")]
    UnknownAction {
        /// The step that names it.
        step: String,
        /// The step's participant.
        participant: String,
        /// The action name the participant does not offer.
        action: String,
    },
    /// A workflow file is not JSON/YAML, or does not fit [`WorkflowSpec`] (e.g. an unknown
    /// field).
    #[error("cannot parse workflow file {file}: {message}")]
    Parse {
        /// The file name given to [`WorkflowSpec::from_yaml_or_json`].
        file: String,
        /// The parser's error, with line and column when known.
        message: String,
    },
}

pub use crate::limits::is_valid_name;

impl WorkflowSpec {
    /// Parses a workflow file: JSON when `file` ends in `.json` (read as the API reads a
    /// body, so a file and a `PUT` of the same text give the same workflow), else YAML.
    ///
    /// Errors: [`WorkflowError::Parse`] naming `file`, with the parser's line and column.
    pub fn from_yaml_or_json(text: &str, file: &str) -> Result<WorkflowSpec, WorkflowError> {
        let parse_error = |message: String| WorkflowError::Parse {
            file: file.to_string(),
            message,
        };
        // YAML would also read JSON, but not always the same: it folds some characters of a
        // quoted string (U+0085, U+2028) into spaces, and refuses others JSON allows raw.
        if file.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))
        } else {
            serde_yaml::from_str(text).map_err(|e| parse_error(e.to_string()))
        }
    }

    /// Dependencies of every step, by index, with the sequential default applied.
    pub fn dependencies(&self) -> Vec<Vec<usize>> {
        let index: BTreeMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| match &step.after {
                None if i == 0 => vec![],
                None => vec![i - 1],
                Some(names) => {
                    let set: BTreeSet<usize> = names
                        .iter()
                        .filter_map(|n| index.get(n.as_str()).copied())
                        .collect();
                    set.into_iter().collect()
                }
            })
            .collect()
    }

    /// Structural validation: non-empty, names that follow [`limits::NAME_RULE`], durations
    /// and retry policies within their documented ranges, unique step names, known `after`
    /// targets, no cycles.
    pub fn validate(&self) -> Result<(), WorkflowError> {
        if self.steps.is_empty() {
            return Err(WorkflowError::Empty);
        }
        if self.steps.len() > limits::MAX_STEPS {
            return Err(FieldError::new(
                "steps",
                format!(
                    "must have at most {} steps (got {})",
                    limits::MAX_STEPS,
                    self.steps.len()
                ),
            )
            .into());
        }
        if let Some(ms) = self.timeout_ms {
            check_range("timeout_ms", ms, &limits::SAGA_TIMEOUT_MS)?;
        }
        if let Some(pointer) = &self.business_key {
            limits::check_json_pointer("business_key", pointer)?;
        }
        let mut seen = BTreeSet::new();
        for (index, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{index}].{field}");
            check_name(&at("name"), &step.name)?;
            check_name(&at("participant"), &step.participant)?;
            check_name(&at("action"), &step.action)?;
            if !seen.insert(step.name.as_str()) {
                return Err(WorkflowError::DuplicateStep(step.name.clone()));
            }
            if let Some(ms) = step.timeout_ms {
                check_range(&at("timeout_ms"), ms, &limits::CALL_TIMEOUT_MS)?;
            }
            if let Some(retry) = &step.retry {
                retry.validate().map_err(|e| e.within(&at("retry")))?;
            }
        }
        for step in &self.steps {
            for after in step.after.iter().flatten() {
                if after == &step.name {
                    return Err(WorkflowError::SelfDependency(step.name.clone()));
                }
                if !seen.contains(after.as_str()) {
                    return Err(WorkflowError::UnknownAfter {
                        step: step.name.clone(),
                        after: after.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            return Err(WorkflowError::Cycle(cycle));
        }
        Ok(())
    }

    /// A cycle as step names (first name repeated at the end), if any.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let deps = self.dependencies();
        let mut marks = vec![Mark::New; deps.len()];
        let mut path = Vec::new();

        fn visit(
            node: usize,
            deps: &[Vec<usize>],
            marks: &mut [Mark],
            path: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            marks[node] = Mark::Open;
            path.push(node);
            for &next in &deps[node] {
                match marks[next] {
                    Mark::Open => {
                        let start = path.iter().position(|&n| n == next).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Mark::New => {
                        if let Some(c) = visit(next, deps, marks, path) {
                            return Some(c);
                        }
                    }
                    Mark::Done => {}
                }
            }
            path.pop();
            marks[node] = Mark::Done;
            None
        }

        for start in 0..deps.len() {
            if marks[start] != Mark::New {
                continue;
            }
            if let Some(cycle) = visit(start, &deps, &mut marks, &mut path) {
                // Dependencies point backwards ("runs after"); show the cycle in run order.
                return Some(
                    cycle
                        .iter()
                        .rev()
                        .map(|&i| self.steps[i].name.clone())
                        .collect(),
                );
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, after: Option<&[&str]>) -> StepSpec {
        StepSpec {
            name: name.into(),
            participant: "p".into(),
            action: "a".into(),
            after: after.map(|a| a.iter().map(|s| s.to_string()).collect()),
            timeout_ms: None,
            retry: None,
        }
    }

    fn wf(steps: Vec<StepSpec>) -> WorkflowSpec {
        WorkflowSpec {
            steps,
            ..WorkflowSpec::default()
        }
    }

    #[test]
    fn sequential_by_default_dag_when_after_is_given() {
        let w = wf(vec![
            step("a", None),
            step("b", None),
            step("c", Some(&["a"])),
            step("d", Some(&[])),
        ]);
        w.validate().unwrap();
        assert_eq!(w.dependencies(), vec![vec![], vec![0], vec![0], vec![]]);
    }

    #[test]
    fn rejects_duplicates_unknown_after_self_and_cycles() {
        assert_eq!(wf(vec![]).validate(), Err(WorkflowError::Empty));
        assert_eq!(
            wf(vec![step("a", None), step("a", None)]).validate(),
            Err(WorkflowError::DuplicateStep("a".into()))
        );
        assert_eq!(
            wf(vec![step("a", Some(&["zz"]))]).validate(),
            Err(WorkflowError::UnknownAfter {
                step: "a".into(),
                after: "zz".into()
            })
        );
        assert_eq!(
            wf(vec![step("a", Some(&["a"]))]).validate(),
            Err(WorkflowError::SelfDependency("a".into()))
        );
        let err = wf(vec![
            step("a", Some(&["c"])),
            step("b", Some(&["a"])),
            step("c", Some(&["b"])),
        ])
        .validate()
        .unwrap_err();
        let WorkflowError::Cycle(names) = &err else {
            panic!("expected a cycle, got {err:?}")
        };
        assert_eq!(names.first(), names.last());
        assert_eq!(names.len(), 4);
        assert!(err.to_string().contains("->"));
    }

    #[test]
    fn rejects_bad_names_and_out_of_range_numbers_naming_the_field() {
        let invalid = |spec: WorkflowSpec| match spec.validate() {
            Err(WorkflowError::Invalid(e)) => e,
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut s = step("a", None);
        s.participant = " ".into();
        assert_eq!(invalid(wf(vec![s])).field, "steps[0].participant");
        // What a YAML block scalar (`name: |`) produces.
        let e = invalid(wf(vec![step("a", None), step("reserve\n", None)]));
        assert_eq!(e.field, "steps[1].name");
        assert!(e.rule.contains("letters, digits"), "{e}");

        let mut s = step("a", None);
        s.retry = Some(RetryPolicy {
            multiplier: 0.5,
            ..RetryPolicy::default()
        });
        assert_eq!(invalid(wf(vec![s])).field, "steps[0].retry.multiplier");
        let mut s = step("a", None);
        s.retry = Some(RetryPolicy {
            initial_ms: u64::MAX,
            max_ms: u64::MAX,
            ..RetryPolicy::default()
        });
        assert_eq!(invalid(wf(vec![s])).field, "steps[0].retry.initial_ms");
        let mut s = step("a", None);
        s.timeout_ms = Some(0);
        assert_eq!(invalid(wf(vec![s])).field, "steps[0].timeout_ms");
        let mut w = wf(vec![step("a", None)]);
        w.timeout_ms = Some(u64::MAX);
        assert_eq!(invalid(w).field, "timeout_ms");
    }

    #[test]
    fn a_yaml_block_scalar_name_is_refused() {
        let yaml = "steps:\n  - name: |\n      reserve\n    participant: p\n    action: x\n";
        let w = WorkflowSpec::from_yaml_or_json(yaml, "w.yaml").unwrap();
        assert_eq!(w.steps[0].name, "reserve\n");
        assert!(
            matches!(w.validate(), Err(WorkflowError::Invalid(e)) if e.field == "steps[0].name")
        );
    }

    #[test]
    fn parses_yaml_and_json_and_rejects_unknown_fields() {
        let yaml = "steps:\n  - name: a\n    participant: p\n    action: x\n";
        let w = WorkflowSpec::from_yaml_or_json(yaml, "w.yaml").unwrap();
        assert_eq!(w.steps[0].name, "a");
        let json =
            r#"{"steps": [{"name": "a", "participant": "p", "action": "x"}], "timeout_ms": 5}"#;
        assert_eq!(
            WorkflowSpec::from_yaml_or_json(json, "w.json")
                .unwrap()
                .timeout_ms,
            Some(5)
        );
        let err = WorkflowSpec::from_yaml_or_json(
            "steps: [{name: a, participant: p, action: x, bogus: 1}]",
            "f",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
