//! Registered participants and workflow versions, kept in memory and persisted in the store.
//!
//! Workflows from files load at start-up, before participants have registered, so they are
//! checked structurally then and resolved against the registry when a saga is submitted. A
//! workflow `PUT` over the API is also checked against the registered participants.
//!
//! Every registry write runs alone (one writer at a time): it reads what is stored, writes,
//! flushes and only then updates memory, so concurrent writes can neither hand out one
//! version twice nor leave memory and the store disagreeing.
//!
//! Precedence, so that an operator's change is never silently undone by a restart:
//! - a participant's registration without a `policy` keeps the stored policy (a participant
//!   sends one only when started with `--policy FILE`);
//! - a workflow file loads only when its content differs from what that file last loaded, so a
//!   definition changed through the API stays until the file itself is edited.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sagas::limits::check_name;
use sagas::{FieldError, ParticipantSpec, WorkflowError, WorkflowSpec};

use crate::engine::{Plan, PlanStep};
use crate::store::{Store, StoreError, VersionWrite};
use crate::telemetry;

/// Declares the participant's metric series (see [`telemetry`]).
fn participant_known(name: &str, spec: &ParticipantSpec) {
    telemetry::participant_known(name, spec.actions.values().map(|a| a.kind()));
}

/// Why a registration or a workflow file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field of a registration breaks a rule (`400`).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The workflow cannot work: its structure, or a participant or action that is not
    /// registered (`400`).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// Another writer stored this version first (`409`); read the workflow and try again.
    #[error("workflow {name:?} version {version} was just stored by another writer; try again")]
    VersionTaken {
        /// The workflow.
        name: String,
        /// The version it tried to write.
        version: u32,
    },
    /// A workflow file cannot work (the coordinator does not start).
    #[error("workflow file {file}: {source}")]
    File {
        /// The file's path.
        file: String,
        /// What is wrong with it.
        source: WorkflowError,
    },
    /// The workflow directory cannot be read.
    #[error("cannot read workflow files in {dir}: {message}")]
    Files {
        /// The directory.
        dir: String,
        /// Why.
        message: String,
    },
    /// The store failed (`500`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What loading one workflow file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLoad {
    /// The file was new or changed since it last loaded: it is now this version.
    Loaded {
        /// The workflow's version now.
        version: u32,
    },
    /// The file is what it was when it last loaded; the workflow stays at this version.
    Unchanged {
        /// The workflow's version, unchanged.
        version: u32,
    },
    /// Seen for the first time while the stored workflow differs (changed through the API):
    /// the stored version is kept until the file is edited.
    KeptStored {
        /// The stored version, kept.
        version: u32,
    },
}

/// One version of a workflow.
#[derive(Debug, Clone)]
pub struct WorkflowVersion {
    /// From 1; a changed definition gets the next.
    pub version: u32,
    /// The definition this version names, forever.
    pub spec: WorkflowSpec,
}

/// The participants and workflows one coordinator knows, in memory and in the store.
pub struct Registry {
    store: Arc<dyn Store>,
    /// Held by every registry write, from reading the current state to updating memory.
    writing: tokio::sync::Mutex<()>,
    participants: RwLock<HashMap<String, Arc<ParticipantSpec>>>,
    workflows: RwLock<HashMap<String, WorkflowVersion>>,
    /// Bumped on every participant change: plans resolved before it are stale.
    generation: AtomicU64,
    /// The plan of each workflow's newest version, with the generation it was resolved at,
    /// so that a submission neither clones a workflow nor resolves it again.
    plans: RwLock<HashMap<String, CachedPlan>>,
    /// Distinct plans of resumed sagas, per workflow: each saga's log holds its own copy.
    recovered_plans: Mutex<HashMap<String, Vec<Arc<Plan>>>>,
    /// Refreshes asked for (tickets) and the newest one a completed refresh covers: the
    /// store's registry generation is read once for every submission that waits meanwhile.
    refresh_tickets: AtomicU64,
    refreshed: tokio::sync::Mutex<RefreshState>,
}

/// What the last completed refresh saw.
struct RefreshState {
    /// The newest ticket it covered.
    ticket: u64,
    /// The store's registry generation it read.
    store_generation: u64,
}

struct CachedPlan {
    version: u32,
    generation: u64,
    plan: Arc<Plan>,
}

impl Registry {
    /// The registry as stored; declares each known workflow's and participant's metrics.
    pub async fn load(store: Arc<dyn Store>) -> Result<Registry, RegistryError> {
        let store_generation = store.registry_generation().await?;
        let registry = Registry {
            store,
            writing: tokio::sync::Mutex::new(()),
            participants: RwLock::new(HashMap::new()),
            workflows: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            plans: RwLock::new(HashMap::new()),
            recovered_plans: Mutex::new(HashMap::new()),
            refresh_tickets: AtomicU64::new(0),
            refreshed: tokio::sync::Mutex::new(RefreshState {
                ticket: 0,
                store_generation,
            }),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Reads every participant and workflow from the store into memory.
    async fn reload(&self) -> Result<(), RegistryError> {
        // An unchanged registration keeps its `Arc`: the dispatcher rebuilds a participant's
        // lane (breaker, bulkhead, rate limiter) when the pointer changes, and another
        // instance's registration of some other participant must not reset them all.
        let current = self
            .participants
            .read()
            .expect("registry lock poisoned")
            .clone();
        let participants = self
            .store
            .participants()
            .await?
            .into_iter()
            .inspect(|(name, spec)| participant_known(name, spec))
            .map(|(name, spec)| {
                let kept = current.get(&name).filter(|kept| ***kept == spec).cloned();
                (name, kept.unwrap_or_else(|| Arc::new(spec)))
            })
            .collect();
        let workflows = self
            .store
            .workflows()
            .await?
            .into_iter()
            .inspect(|(name, _, _)| telemetry::workflow_known(name))
            .map(|(name, version, spec)| (name, WorkflowVersion { version, spec }))
            .collect();
        *self.participants.write().expect("registry lock poisoned") = participants;
        *self.workflows.write().expect("registry lock poisoned") = workflows;
        // Plans resolved before may name changed participants.
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Makes sure memory holds every registry change another instance finished before this
    /// call (in a cluster; a single instance's store never changes behind its back). Waiters
    /// share one read of the store's registry generation that started after they asked.
    pub async fn refresh(&self) -> Result<(), RegistryError> {
        let ticket = self.refresh_tickets.fetch_add(1, Ordering::AcqRel) + 1;
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.ticket >= ticket {
            return Ok(());
        }
        let covered = self.refresh_tickets.load(Ordering::Acquire);
        let store_generation = self.store.registry_generation().await?;
        if store_generation != refreshed.store_generation {
            let _writing = self.writing.lock().await;
            self.reload().await?;
            refreshed.store_generation = store_generation;
        }
        refreshed.ticket = covered;
        Ok(())
    }

    /// Registers or updates a participant; durable when it returns. Without a policy, the
    /// stored one (or the defaults) stays. Returns what is now registered.
    pub async fn put_participant(
        &self,
        name: &str,
        mut spec: ParticipantSpec,
    ) -> Result<Arc<ParticipantSpec>, RegistryError> {
        check_name("name", name)?;
        spec.validate()?;
        let _writing = self.writing.lock().await;
        let existing = self.participant(name);
        if spec.policy.is_none() {
            spec.policy = existing.as_ref().and_then(|e| e.policy.clone());
        }
        if let Some(existing) = existing
            && *existing == spec
        {
            return Ok(existing);
        }
        self.store.put_participant(name, &spec).await?;
        participant_known(name, &spec);
        let spec = Arc::new(spec);
        self.participants
            .write()
            .expect("registry lock poisoned")
            .insert(name.into(), spec.clone());
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(spec)
    }

    /// A registered participant.
    pub fn participant(&self, name: &str) -> Option<Arc<ParticipantSpec>> {
        self.participants
            .read()
            .expect("registry lock poisoned")
            .get(name)
            .cloned()
    }

    /// Every registered participant, by name.
    pub fn participants(&self) -> Vec<(String, Arc<ParticipantSpec>)> {
        let mut all: Vec<_> = self
            .participants
            .read()
            .expect("registry lock poisoned")
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Stores a workflow. An identical definition keeps its version; a changed one gets the
    /// next. With `check_participants`, unknown participants or actions are rejected.
    pub async fn put_workflow(
        &self,
        name: &str,
        spec: WorkflowSpec,
        check_participants: bool,
    ) -> Result<WorkflowVersion, RegistryError> {
        check_name("name", name)?;
        spec.validate()?;
        if check_participants {
            self.plan(&spec)?;
        }
        let _writing = self.writing.lock().await;
        self.store_workflow(name, spec).await
    }

    /// Writes a new version unless the newest is the same; the caller holds `writing`. When
    /// another instance took the next version meanwhile, memory is reloaded and the write tried
    /// again (a few times, then `409`).
    async fn store_workflow(
        &self,
        name: &str,
        spec: WorkflowSpec,
    ) -> Result<WorkflowVersion, RegistryError> {
        let mut tries = 0;
        let version = loop {
            let version = match self.workflow(name) {
                Some(current) if current.spec == spec => return Ok(current),
                Some(current) => current.version + 1,
                None => 1,
            };
            match self.store.put_workflow(name, version, &spec).await? {
                VersionWrite::Written => break version,
                VersionWrite::Taken if tries < 3 => {
                    tries += 1;
                    self.reload().await?;
                }
                VersionWrite::Taken => {
                    return Err(RegistryError::VersionTaken {
                        name: name.into(),
                        version,
                    });
                }
            }
        };
        telemetry::workflow_known(name);
        let entry = WorkflowVersion { version, spec };
        self.workflows
            .write()
            .expect("registry lock poisoned")
            .insert(name.into(), entry.clone());
        Ok(entry)
    }

    /// The newest version of a workflow.
    pub fn workflow(&self, name: &str) -> Option<WorkflowVersion> {
        self.workflows
            .read()
            .expect("registry lock poisoned")
            .get(name)
            .cloned()
    }

    /// The newest version of every workflow, by name.
    pub fn workflows(&self) -> Vec<(String, WorkflowVersion)> {
        let mut all: Vec<_> = self
            .workflows
            .read()
            .expect("registry lock poisoned")
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The newest version of a workflow and its plan, resolved against the registered
    /// participants; `None` if no such workflow.
    pub fn resolve(&self, name: &str) -> Result<Option<(u32, Arc<Plan>)>, WorkflowError> {
        let generation = self.generation.load(Ordering::Acquire);
        let version = {
            let workflows = self.workflows.read().expect("registry lock poisoned");
            let Some(workflow) = workflows.get(name) else {
                return Ok(None);
            };
            if let Some(cached) = self.plans.read().expect("plan cache poisoned").get(name)
                && cached.version == workflow.version
                && cached.generation == generation
            {
                return Ok(Some((cached.version, cached.plan.clone())));
            }
            workflow.version
        };
        let Some(workflow) = self.workflow(name).filter(|w| w.version == version) else {
            // Replaced meanwhile: resolve the new one.
            return self.resolve(name);
        };
        let plan = Arc::new(self.plan(&workflow.spec)?);
        self.plans.write().expect("plan cache poisoned").insert(
            name.into(),
            CachedPlan {
                version,
                generation,
                plan: plan.clone(),
            },
        );
        Ok(Some((version, plan)))
    }

    /// One shared copy of equal plans: a resumed saga's plan, read from its own log, is
    /// replaced by an equal one seen before, so 100,000 resumed sagas hold a handful of plans.
    pub fn intern_plan(&self, workflow: &str, plan: Arc<Plan>) -> Arc<Plan> {
        let mut recovered = self.recovered_plans.lock().expect("plan cache poisoned");
        let seen = recovered.entry(workflow.to_string()).or_default();
        if let Some(same) = seen.iter().find(|p| ***p == *plan) {
            return same.clone();
        }
        seen.push(plan.clone());
        plan
    }

    /// Resolves a workflow against the registered participants: step kinds, dependencies and
    /// retry budgets (the step's own, else its participant's).
    pub fn plan(&self, spec: &WorkflowSpec) -> Result<Plan, WorkflowError> {
        let deps = spec.dependencies();
        let steps = spec
            .steps
            .iter()
            .zip(deps)
            .map(|(step, deps)| {
                let participant = self.participant(&step.participant).ok_or_else(|| {
                    WorkflowError::UnknownParticipant {
                        step: step.name.clone(),
                        participant: step.participant.clone(),
                    }
                })?;
                let endpoints = participant.actions.get(&step.action).ok_or_else(|| {
                    WorkflowError::UnknownAction {
                        step: step.name.clone(),
                        participant: step.participant.clone(),
                        action: step.action.clone(),
                    }
                })?;
                Ok(PlanStep {
                    name: step.name.clone(),
                    participant: step.participant.clone(),
                    action: step.action.clone(),
                    kind: endpoints.kind(),
                    deps,
                    timeout_ms: step.timeout_ms,
                    retry: step
                        .retry
                        .clone()
                        .unwrap_or_else(|| participant.effective_policy().retry.clone()),
                })
            })
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        Ok(Plan {
            steps,
            timeout_ms: spec.timeout_ms,
        })
    }

    /// Loads every `*.json`, `*.yaml` and `*.yml` file in `dir` as a workflow named after the
    /// file, each only if it changed since it last loaded (see the module's precedence).
    /// Returns what each file did, by workflow name.
    pub async fn load_dir(&self, dir: &Path) -> Result<Vec<(String, FileLoad)>, RegistryError> {
        let files_error = |e: std::io::Error| RegistryError::Files {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(files_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        paths.sort();
        let mut loaded = Vec::new();
        for path in paths {
            let file = path.display().to_string();
            let in_file = |source| RegistryError::File {
                file: file.clone(),
                source,
            };
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            check_name("file name", &name).map_err(|e| in_file(e.into()))?;
            let text = std::fs::read_to_string(&path).map_err(files_error)?;
            let spec = WorkflowSpec::from_yaml_or_json(&text, &file).map_err(in_file)?;
            spec.validate().map_err(in_file)?;
            let outcome = self.load_file(&name, spec).await?;
            loaded.push((name, outcome));
        }
        Ok(loaded)
    }

    /// One workflow file's definition, applied only if the file changed since it last loaded.
    async fn load_file(&self, name: &str, spec: WorkflowSpec) -> Result<FileLoad, RegistryError> {
        let _writing = self.writing.lock().await;
        let last_loaded = self.store.file_workflow(name).await?;
        let current = self.workflow(name);
        let outcome = match (last_loaded, current) {
            (Some(last), Some(current)) if last == spec => FileLoad::Unchanged {
                version: current.version,
            },
            // First sight of this file, but an older coordinator loaded it at every start and
            // the stored workflow differs: it was changed through the API since. Keep that.
            (None, Some(current)) if current.spec != spec => FileLoad::KeptStored {
                version: current.version,
            },
            _ => FileLoad::Loaded {
                version: self.store_workflow(name, spec.clone()).await?.version,
            },
        };
        self.store.put_file_workflow(name, &spec).await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::SledStore;

    fn participant(initial_retry_ms: u64) -> ParticipantSpec {
        serde_json::from_value(json!({
            "base_url": "http://127.0.0.1:9",
            "actions": {"book": {"action": "/book", "compensate": "/book/undo"}},
            "policy": {"retry": {"initial_ms": initial_retry_ms, "max_ms": 5_000}}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_resolved_plan_is_shared_until_a_participant_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let registry = Registry::load(store).await.unwrap();
        registry
            .put_participant("p", participant(100))
            .await
            .unwrap();
        let workflow: WorkflowSpec = serde_json::from_value(json!({
            "steps": [{"name": "book", "participant": "p", "action": "book"}]
        }))
        .unwrap();
        registry.put_workflow("w", workflow, true).await.unwrap();

        let (version, first) = registry.resolve("w").unwrap().unwrap();
        let (_, again) = registry.resolve("w").unwrap().unwrap();
        assert_eq!(version, 1);
        assert!(Arc::ptr_eq(&first, &again), "the cached plan is shared");

        registry
            .put_participant("p", participant(250))
            .await
            .unwrap();
        let (_, changed) = registry.resolve("w").unwrap().unwrap();
        assert_eq!(first.steps[0].retry.initial_ms, 100);
        assert_eq!(changed.steps[0].retry.initial_ms, 250);
        assert!(registry.resolve("unknown").unwrap().is_none());

        // Equal plans from different logs become one.
        let copy = Arc::new((*changed).clone());
        let interned = registry.intern_plan("w", copy.clone());
        assert!(Arc::ptr_eq(&interned, &copy));
        let other_copy = Arc::new((*changed).clone());
        assert!(Arc::ptr_eq(&registry.intern_plan("w", other_copy), &copy));
    }

    #[tokio::test]
    async fn a_reload_keeps_the_registrations_that_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let registry = Registry::load(store.clone()).await.unwrap();
        let p = registry
            .put_participant("p", participant(100))
            .await
            .unwrap();
        let q = registry
            .put_participant("q", participant(100))
            .await
            .unwrap();
        // Another instance changes q.
        store.put_participant("q", &participant(300)).await.unwrap();
        registry.reload().await.unwrap();
        assert!(Arc::ptr_eq(&registry.participant("p").unwrap(), &p));
        let reloaded = registry.participant("q").unwrap();
        assert!(!Arc::ptr_eq(&reloaded, &q));
        assert_eq!(*reloaded, participant(300));
    }
}
