//! A typed builder for workflow definitions, equivalent to the JSON/YAML files.
//!
//! ```
//! use sagas::WorkflowBuilder;
//! let spec = WorkflowBuilder::new()
//!     .step("create_order", "order", "create")
//!     .step("freeze_funds", "wallet", "freeze")
//!     .step("award_points", "points", "award")
//!     .build()
//!     .unwrap();
//! assert_eq!(spec.steps.len(), 3);
//! ```

use crate::workflow::{RetryPolicy, StepSpec, WorkflowError, WorkflowSpec};

/// Builds a [`WorkflowSpec`] step by step. The per-step setters apply to the last added step
/// and do nothing before the first; [`WorkflowBuilder::build`] checks every value.
#[derive(Debug, Clone, Default)]
pub struct WorkflowBuilder {
    spec: WorkflowSpec,
}

impl WorkflowBuilder {
    /// An empty workflow: no steps, no deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step that runs after the previous one: `name` unique within the workflow, calling
    /// `action` of `participant` (all three follow [`crate::limits::NAME_RULE`]).
    pub fn step(mut self, name: &str, participant: &str, action: &str) -> Self {
        self.spec.steps.push(StepSpec {
            name: name.into(),
            participant: participant.into(),
            action: action.into(),
            after: None,
            timeout_ms: None,
            retry: None,
        });
        self
    }

    /// Makes the last added step run after exactly `steps` (empty: a root of the DAG).
    pub fn after(mut self, steps: &[&str]) -> Self {
        if let Some(last) = self.spec.steps.last_mut() {
            last.after = Some(steps.iter().map(|s| s.to_string()).collect());
        }
        self
    }

    /// Per-call timeout of the last added step in milliseconds, overriding its participant's;
    /// range [`crate::limits::CALL_TIMEOUT_MS`].
    pub fn step_timeout_ms(mut self, ms: u64) -> Self {
        if let Some(last) = self.spec.steps.last_mut() {
            last.timeout_ms = Some(ms);
        }
        self
    }

    /// Retry schedule of the last added step, overriding its participant's.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        if let Some(last) = self.spec.steps.last_mut() {
            last.retry = Some(policy);
        }
        self
    }

    /// Global saga deadline in milliseconds from submission: a saga that has not decided by
    /// then rolls back. Range [`crate::limits::SAGA_TIMEOUT_MS`]; default none.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.spec.timeout_ms = Some(ms);
        self
    }

    /// Where a saga's default business key sits in its input: a JSON pointer such as
    /// `/order_id` (RFC 6901) naming a string or number. A submission's own `business_key`
    /// wins; an input without the field gets no key.
    pub fn business_key(mut self, pointer: &str) -> Self {
        self.spec.business_key = Some(pointer.into());
        self
    }

    /// The definition, structurally validated ([`WorkflowSpec::validate`]). Whether its
    /// participants and actions exist is checked by the coordinator: by `PUT`, and when a saga
    /// starts.
    pub fn build(self) -> Result<WorkflowSpec, WorkflowError> {
        self.spec.validate()?;
        Ok(self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_equals_the_place_order_file() {
        let built = WorkflowBuilder::new()
            .step("create_order", "order", "create")
            .step("freeze_funds", "wallet", "freeze")
            .step("award_points", "points", "award")
            .business_key("/order_id")
            .build()
            .unwrap();
        let file = include_str!("../place_order.yaml");
        let parsed = WorkflowSpec::from_yaml_or_json(file, "place_order.yaml").unwrap();
        assert_eq!(built, parsed);
    }

    #[test]
    fn builder_makes_dags_and_validates() {
        let spec = WorkflowBuilder::new()
            .step("a", "p", "x")
            .step("b", "p", "x")
            .after(&[])
            .step("c", "p", "x")
            .after(&["a", "b"])
            .timeout_ms(1000)
            .build()
            .unwrap();
        assert_eq!(spec.dependencies(), vec![vec![], vec![], vec![0, 1]]);
        let err = WorkflowBuilder::new()
            .step("a", "p", "x")
            .after(&["a"])
            .build();
        assert!(err.is_err());
    }
}
