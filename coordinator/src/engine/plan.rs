//! A plan is a workflow version resolved against the participant registry at submission. It
//! is recorded in the saga's first event, so a saga keeps the definition it started with and
//! replay never depends on today's registry.

use serde::Serialize;

use sagas::{RetryPolicy, StepKind};

use super::EngineError;

/// The steps a saga runs, resolved: kinds, dependencies and retry budgets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// In the workflow's order; dependencies refer to indices here.
    pub steps: Vec<PlanStep>,
    /// Global deadline, relative to the saga's creation.
    pub timeout_ms: Option<u64>,
}

/// One resolved step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanStep {
    /// The step's name (unique in the workflow; sent as `Saga-Step`).
    pub name: String,
    /// The participant it calls.
    pub participant: String,
    /// The participant's action it calls.
    pub action: String,
    /// SAGA or TCC, from the participant's registration of the action.
    pub kind: StepKind,
    /// Indices of the steps that must succeed before this one starts.
    pub deps: Vec<usize>,
    /// Per-call timeout override; the participant's policy applies when absent.
    pub timeout_ms: Option<u64>,
    /// Retry schedule and budgets: the step's own, else its participant's.
    pub retry: RetryPolicy,
}

impl Plan {
    /// Dependencies must point at earlier-validated indices and form no cycle; a plan built
    /// from a validated workflow always passes, a corrupted log record does not.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.steps.is_empty() {
            return Err(EngineError::InvalidPlan("no steps".into()));
        }
        if self.steps.len() > u16::MAX as usize {
            return Err(EngineError::InvalidPlan("too many steps".into()));
        }
        let n = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(&d) = step.deps.iter().find(|&&d| d >= n || d == i) {
                return Err(EngineError::InvalidPlan(format!("step {i} depends on {d}")));
            }
        }
        // Kahn's algorithm: every step must become ready.
        let mut indegree: Vec<usize> = self.steps.iter().map(|s| s.deps.len()).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = ready.pop() {
            seen += 1;
            for (j, step) in self.steps.iter().enumerate() {
                if step.deps.contains(&i) {
                    indegree[j] -= 1;
                    if indegree[j] == 0 {
                        ready.push(j);
                    }
                }
            }
        }
        if seen != n {
            return Err(EngineError::InvalidPlan("dependencies form a cycle".into()));
        }
        Ok(())
    }

    /// Steps that depend on `step` (they must be undone before it).
    pub fn dependents(&self, step: usize) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.deps.contains(&step))
            .map(|(j, _)| j)
    }
}
