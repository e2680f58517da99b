//! Property tests of workflow parsing and validation (issue 13, "fuzzing"): whatever text a
//! workflow file or a `PUT /v1/workflows/{name}` body holds, parsing and validating answer
//! `Ok` or a typed error, never panic; and a workflow that validates only carries names that
//! can travel in headers and paths, and survives a JSON round trip unchanged.

use proptest::prelude::*;
use sagas::WorkflowSpec;
use sagas::limits::is_valid_name;

/// Names as a careless or hostile author writes them: mostly plain, sometimes with control
/// characters, separators, dots, unicode or far too long.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_-]{0,12}",
        1 => "[ -~]{0,20}",
        1 => ".{0,8}",
        1 => "[a-z]{1,4}[\n\r\t\u{0}/ ]{1,2}[a-z]{0,4}",
        1 => "[a-z]{129,140}",
    ]
}

fn step() -> impl Strategy<Value = serde_json::Value> {
    (
        name(),
        name(),
        name(),
        proptest::option::of(proptest::collection::vec(name(), 0..3)),
        proptest::option::of(any::<u64>()),
        proptest::option::of((any::<u64>(), any::<u64>(), any::<u32>(), -1.0e3f64..1.0e3)),
    )
        .prop_map(|(name, participant, action, after, timeout, retry)| {
            let mut step = serde_json::json!({
                "name": name, "participant": participant, "action": action,
            });
            if let Some(after) = after {
                step["after"] = serde_json::json!(after);
            }
            if let Some(timeout) = timeout {
                step["timeout_ms"] = serde_json::json!(timeout);
            }
            if let Some((initial, max, attempts, multiplier)) = retry {
                step["retry"] = serde_json::json!({
                    "initial_ms": initial, "max_ms": max,
                    "max_attempts": attempts, "multiplier": multiplier,
                });
            }
            step
        })
}

fn workflow() -> impl Strategy<Value = serde_json::Value> {
    (
        proptest::collection::vec(step(), 0..6),
        proptest::option::of(prop_oneof!["/[a-z_]{1,8}", ".{0,6}"]),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(steps, business_key, timeout)| {
            let mut workflow = serde_json::json!({ "steps": steps });
            if let Some(pointer) = business_key {
                workflow["business_key"] = serde_json::json!(pointer);
            }
            if let Some(timeout) = timeout {
                workflow["timeout_ms"] = serde_json::json!(timeout);
            }
            workflow
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in ".{0,400}") {
        if let Ok(spec) = WorkflowSpec::from_yaml_or_json(&text, "fuzz.yaml") {
            let _ = spec.validate();
        }
    }

    #[test]
    fn a_valid_workflow_carries_only_names_that_can_travel(workflow in workflow()) {
        // A body of `PUT /v1/workflows/{name}` and a `.json` workflow file read alike.
        let text = workflow.to_string();
        let from_api: WorkflowSpec = serde_json::from_str(&text)
            .expect("every generated field is a known one");
        let from_file = WorkflowSpec::from_yaml_or_json(&text, "fuzz.json")
            .expect("a .json file reads as the API reads a body");
        prop_assert_eq!(&from_file, &from_api);
        let spec = from_api;
        if spec.validate().is_ok() {
            prop_assert!(!spec.steps.is_empty());
            for step in &spec.steps {
                prop_assert!(is_valid_name(&step.name), "step {:?}", step.name);
                prop_assert!(is_valid_name(&step.participant), "participant {:?}", step.participant);
                prop_assert!(is_valid_name(&step.action), "action {:?}", step.action);
                prop_assert!(
                    !step.name.chars().any(char::is_control),
                    "a step name with a control character cannot be a header value"
                );
            }
            prop_assert_eq!(spec.dependencies().len(), spec.steps.len());
            let again: WorkflowSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap())
                .expect("a valid workflow reads back");
            prop_assert_eq!(again, spec);
        }
    }
}
