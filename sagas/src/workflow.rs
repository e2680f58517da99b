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

/// Body of `PUT /v1/workflows/{name}` and contents of a workflow file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub steps: Vec<StepSpec>,
    /// Global saga deadline: a saga that has not decided by then rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    pub participant: String,
    pub action: String,
    /// Steps that must succeed first. Absent: the previous step in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// Per-call timeout, overriding the participant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry schedule, overriding the participant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Exponential backoff with jitter. Data, not a closure, so it can be stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial_ms: u64,
    /// Upper bound of one delay.
    pub max_ms: u64,
    pub multiplier: f64,
    /// Attempts of a forward phase (`try`/`action`) before the saga rolls back.
    pub max_attempts: u32,
    /// Attempts of `confirm`/`cancel`/`compensate` before the saga turns `stuck`.
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
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.settle_max_attempts == 0 {
            return Err("max_attempts and settle_max_attempts must be at least 1".into());
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "multiplier {} must be a number >= 1",
                self.multiplier
            ));
        }
        if self.max_ms < self.initial_ms {
            return Err(format!(
                "max_ms {} is below initial_ms {}",
                self.max_ms, self.initial_ms
            ));
        }
        Ok(())
    }
}

/// What is wrong with a workflow definition. Each variant names the offending step.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkflowError {
    #[error("workflow has no steps")]
    Empty,
    #[error("invalid workflow name {0:?}: use letters, digits, '_', '-' or '.'")]
    BadName(String),
    #[error("step {index} has an empty {field}")]
    EmptyField { index: usize, field: &'static str },
    #[error("duplicate step name {0:?}")]
    DuplicateStep(String),
    #[error("step {step:?} runs after unknown step {after:?}")]
    UnknownAfter { step: String, after: String },
    #[error("step {0:?} runs after itself")]
    SelfDependency(String),
    #[error("steps form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("step {step:?}: {message}")]
    BadStep { step: String, message: String },
    #[error("step {step:?}: unknown participant {participant:?}")]
    UnknownParticipant { step: String, participant: String },
    #[error("step {step:?}: participant {participant:?} has no action {action:?}")]
    UnknownAction {
        step: String,
        participant: String,
        action: String,
    },
    #[error("timeout_ms must be positive")]
    BadTimeout,
    #[error("cannot parse workflow file {file}: {message}")]
    Parse { file: String, message: String },
}

/// A name usable in a URL path and a file name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl WorkflowSpec {
    /// Parses a JSON or YAML document (YAML is a superset of JSON).
    pub fn from_yaml_or_json(text: &str, file: &str) -> Result<WorkflowSpec, WorkflowError> {
        serde_yaml::from_str(text).map_err(|e| WorkflowError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })
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

    /// Structural validation: non-empty, unique names, known `after` targets, no cycles.
    pub fn validate(&self) -> Result<(), WorkflowError> {
        if self.steps.is_empty() {
            return Err(WorkflowError::Empty);
        }
        if self.timeout_ms == Some(0) {
            return Err(WorkflowError::BadTimeout);
        }
        let mut seen = BTreeSet::new();
        for (index, step) in self.steps.iter().enumerate() {
            for (field, value) in [
                ("name", &step.name),
                ("participant", &step.participant),
                ("action", &step.action),
            ] {
                if value.trim().is_empty() {
                    return Err(WorkflowError::EmptyField { index, field });
                }
            }
            if !seen.insert(step.name.as_str()) {
                return Err(WorkflowError::DuplicateStep(step.name.clone()));
            }
            if step.timeout_ms == Some(0) {
                return Err(WorkflowError::BadStep {
                    step: step.name.clone(),
                    message: "timeout_ms must be positive".into(),
                });
            }
            if let Some(retry) = &step.retry {
                retry.validate().map_err(|message| WorkflowError::BadStep {
                    step: step.name.clone(),
                    message: format!("retry: {message}"),
                })?;
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
            timeout_ms: None,
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
    fn rejects_empty_fields_and_bad_retry() {
        let mut s = step("a", None);
        s.participant = " ".into();
        assert_eq!(
            wf(vec![s]).validate(),
            Err(WorkflowError::EmptyField {
                index: 0,
                field: "participant"
            })
        );
        let mut s = step("a", None);
        s.retry = Some(RetryPolicy {
            multiplier: 0.5,
            ..RetryPolicy::default()
        });
        assert!(matches!(
            wf(vec![s]).validate(),
            Err(WorkflowError::BadStep { .. })
        ));
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

    #[test]
    fn names() {
        assert!(is_valid_name("place_order.v2-x"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(""));
    }
}
