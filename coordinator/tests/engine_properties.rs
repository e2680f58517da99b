//! Property tests of the saga engine, driven by a deterministic simulation.
//!
//! Each case builds a random plan (1-5 steps, SAGA or TCC, chain or DAG dependencies, small
//! retry budgets, an optional deadline) and runs it against model participants that behave
//! exactly like the participant SDK's barrier (idempotent per phase, null compensation,
//! hanging `try`/`action` rejected). A seeded RNG schedules the faults: replies and requests
//! lost, duplicated, refused locally, delayed, timed out while still in flight; coordinator
//! crashes (the state is rebuilt by replaying the JSON round-tripped log, then `Resumed`);
//! operator retries of stuck sagas; illegal events thrown at the engine. After a while the
//! faults stop, and every saga must then end committed or aborted with the participants'
//! books consistent with that outcome.
//!
//! A failure prints the scenario (plan and seed) and the full trace: every recorded event as
//! JSON, interleaved with `#` lines saying what the simulation did.

use coordinator::engine::{
    CallOutcome, CallRef, Command, Created, Decision, Event, Lifecycle, Millis, Plan, PlanStep,
    Saga, StepStatus, decide,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sagas::{Phase, RetryPolicy, StepKind};

/// The simulation stops (and the case fails) after this many scheduling rounds.
const MAX_ROUNDS: u32 = 5_000;
const START: Millis = 1_000;

// ---------------------------------------------------------------------------------------------
// Scenario
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct StepSpec {
    kind: StepKind,
    deps: Vec<usize>,
    max_attempts: u32,
    settle_max_attempts: u32,
    /// The participant's business logic rejects this step's forward phase.
    rejects: bool,
}

#[derive(Debug, Clone)]
struct Scenario {
    steps: Vec<StepSpec>,
    timeout_ms: Option<u64>,
    seed: u64,
    /// Scheduling rounds during which faults (and crashes) may happen.
    fault_rounds: u32,
}

impl Scenario {
    fn created(&self) -> Created {
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| PlanStep {
                name: format!("s{i}"),
                participant: format!("p{i}"),
                action: "/x".into(),
                kind: s.kind,
                deps: s.deps.clone(),
                timeout_ms: None,
                retry: RetryPolicy {
                    max_attempts: s.max_attempts,
                    settle_max_attempts: s.settle_max_attempts,
                    ..RetryPolicy::default()
                },
            })
            .collect();
        Created {
            id: "saga-1".into(),
            workflow: "wf".into(),
            workflow_version: 1,
            input: serde_json::json!({"n": 1}),
            callback_url: None,
            idempotency_key: Some("k".into()),
            plan: Plan {
                steps,
                timeout_ms: self.timeout_ms,
            },
            at: START,
        }
    }
}

fn scenario_strategy(
    fault_rounds: impl Strategy<Value = u32> + Clone + 'static,
) -> impl Strategy<Value = Scenario> {
    (1usize..=5).prop_flat_map(move |n| {
        (
            prop::collection::vec(
                (
                    any::<bool>(),
                    any::<u8>(),
                    1u32..=4,
                    1u32..=5,
                    prop::bool::weighted(0.15),
                ),
                n,
            ),
            // 0: sequential chain, 1: random DAG, 2: all independent.
            0u8..3,
            prop::option::weighted(0.3, 20u64..2_000),
            any::<u64>(),
            fault_rounds.clone(),
        )
            .prop_map(|(raw, topology, timeout_ms, seed, fault_rounds)| {
                let steps = raw
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (tcc, mask, max_attempts, settle_max_attempts, rejects))| {
                            let deps = match topology {
                                0 if i > 0 => vec![i - 1],
                                1 => (0..i).filter(|d| mask & (1 << d) != 0).collect(),
                                _ => Vec::new(),
                            };
                            StepSpec {
                                kind: if tcc { StepKind::Tcc } else { StepKind::Saga },
                                deps,
                                max_attempts,
                                settle_max_attempts,
                                rejects,
                            }
                        },
                    )
                    .collect();
                Scenario {
                    steps,
                    timeout_ms,
                    seed,
                    fault_rounds,
                }
            })
    })
}

// ---------------------------------------------------------------------------------------------
// Model participant: one per step, with the SDK's barrier semantics
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Participant {
    rejects: bool,
    /// Barrier records: the stored reply of each phase.
    forward: Option<CallOutcome>,
    undo: bool,
    confirm: bool,
    /// Business effects.
    applied: u32,
    undone: u32,
    confirmed: u32,
    hanging_rejected: u32,
}

impl Participant {
    /// Processes one request and returns the reply.
    fn handle(&mut self, phase: Phase) -> CallOutcome {
        if phase.is_forward() {
            if self.undo {
                // Hanging: the undo came first. The barrier refuses, nothing changes.
                self.hanging_rejected += 1;
                return CallOutcome::Rejected;
            }
            if let Some(reply) = self.forward {
                return reply;
            }
            let reply = if self.rejects {
                CallOutcome::Rejected
            } else {
                self.applied += 1;
                CallOutcome::Ok
            };
            self.forward = Some(reply);
            reply
        } else if phase.is_undo() {
            if !self.undo {
                self.undo = true;
                if self.forward == Some(CallOutcome::Ok) {
                    self.undone += 1;
                }
                // Otherwise a null compensation: nothing to undo, still a success.
            }
            CallOutcome::Ok
        } else {
            // Confirm.
            if self.confirm {
                return CallOutcome::Ok;
            }
            if self.forward == Some(CallOutcome::Ok) {
                self.confirm = true;
                self.confirmed += 1;
                CallOutcome::Ok
            } else {
                CallOutcome::Rejected
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Normal,
    /// The participant never sees the request.
    LostRequest,
    /// The participant applies the request; the reply is lost.
    LostReply,
    /// The participant processes the request twice; the coordinator sees the second reply.
    Duplicate,
    /// Refused locally (open circuit, full bulkhead): never sent.
    Refused,
    /// The coordinator times out while the request is still in the network; it reaches the
    /// participant later (possibly after its undo: a hanging request).
    TimeoutInFlight,
    /// The participant answers 5xx without doing anything.
    ServerError,
}

struct Sim {
    scenario: Scenario,
    rng: StdRng,
    now: Millis,
    saga: Saga,
    log: Vec<Event>,
    /// Calls the coordinator has started and waits for (their replies can still arrive), each
    /// with the round before which it cannot complete (a hung participant).
    outstanding: Vec<(CallRef, u32)>,
    /// Requests in the network whose replies nobody waits for any more.
    network: Vec<(usize, Phase)>,
    parts: Vec<Participant>,
    trace: Vec<String>,
    crash_p: f64,
    illegal_p: f64,
    fault_p: f64,
    round: u32,
    stats: Stats,
}

/// What a run went through, to check that the simulation reaches the interesting paths.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    committed: u32,
    aborted: u32,
    deadline_aborts: u32,
    crashes: u32,
    crashes_while_stuck: u32,
    stuck: u32,
    operator_retries: u32,
    hanging_rejected: u32,
    null_compensations: u32,
    late_deliveries: u32,
    illegal_checked: u32,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.committed += o.committed;
        self.aborted += o.aborted;
        self.deadline_aborts += o.deadline_aborts;
        self.crashes += o.crashes;
        self.crashes_while_stuck += o.crashes_while_stuck;
        self.stuck += o.stuck;
        self.operator_retries += o.operator_retries;
        self.hanging_rejected += o.hanging_rejected;
        self.null_compensations += o.null_compensations;
        self.late_deliveries += o.late_deliveries;
        self.illegal_checked += o.illegal_checked;
    }
}

type SimResult<T = ()> = Result<T, String>;

impl Sim {
    fn new(scenario: &Scenario) -> SimResult<Sim> {
        let created = scenario.created();
        let saga = Saga::create(&created).map_err(|e| format!("create failed: {e}"))?;
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let crash_p = [0.0, 0.02, 0.1][rng.random_range(0..3)];
        let fault_p = [0.1, 0.3, 0.6][rng.random_range(0..3)];
        let illegal_p = [0.0, 0.1, 0.3][rng.random_range(0..3)];
        let parts = scenario
            .steps
            .iter()
            .map(|s| Participant {
                rejects: s.rejects,
                ..Default::default()
            })
            .collect();
        let log = vec![Event::Created(Box::new(created))];
        let trace = vec![
            format!("# crash_p={crash_p} fault_p={fault_p} illegal_p={illegal_p}"),
            json(&log[0]),
        ];
        Ok(Sim {
            scenario: scenario.clone(),
            rng,
            now: START,
            saga,
            log,
            outstanding: Vec::new(),
            network: Vec::new(),
            parts,
            trace,
            crash_p,
            illegal_p,
            fault_p,
            round: 0,
            stats: Stats::default(),
        })
    }

    fn note(&mut self, s: String) {
        self.trace.push(format!("# {s}"));
    }

    /// Applies an event the runtime would record; the engine must accept it.
    fn record(&mut self, event: Event) -> SimResult {
        let before = self.saga.clone();
        if let Err(e) = self.saga.apply(&event) {
            return Err(format!(
                "engine refused an event the runtime records: {e}\nevent: {}",
                json(&event)
            ));
        }
        self.trace.push(json(&event));
        match &event {
            Event::Stuck { .. } => self.stats.stuck += 1,
            Event::RetryRequested { .. } => self.stats.operator_retries += 1,
            Event::Decided {
                decision: Decision::Abort { reason },
                ..
            } if reason.contains("deadline") => self.stats.deadline_aborts += 1,
            _ => {}
        }
        self.log.push(event.clone());
        self.check_transition(&before, &event)
    }

    /// Safety checks at the moment an event is recorded.
    fn check_transition(&self, before: &Saga, event: &Event) -> SimResult {
        if let Event::Decided {
            decision: Decision::Commit,
            ..
        } = event
        {
            for (i, p) in self.parts.iter().enumerate() {
                if p.forward != Some(CallOutcome::Ok) || p.applied != 1 || p.undo {
                    return Err(format!(
                        "commit decided but step {i} is not applied at its participant: {p:?}"
                    ));
                }
            }
        }
        if before.lifecycle.is_terminal() {
            return Err(format!("a terminal saga changed with {}", json(event)));
        }
        Ok(())
    }

    /// Books of every participant, at every moment.
    fn check_participants(&self) -> SimResult {
        for (i, p) in self.parts.iter().enumerate() {
            let spec = &self.scenario.steps[i];
            if p.applied > 1 {
                return Err(format!(
                    "step {i}: forward effect applied {} times",
                    p.applied
                ));
            }
            if p.undone > 1 {
                return Err(format!("step {i}: undone {} times", p.undone));
            }
            if p.confirmed > 1 {
                return Err(format!("step {i}: confirmed {} times", p.confirmed));
            }
            if p.confirmed > 0 && p.undo {
                return Err(format!(
                    "step {i}: both confirmed and cancelled/compensated"
                ));
            }
            if spec.kind == StepKind::Saga && p.confirmed > 0 {
                return Err(format!("step {i}: a SAGA step was confirmed"));
            }
            if p.applied > 0 {
                // Forward order: a step applies only after its dependencies applied.
                for &d in &spec.deps {
                    if self.parts[d].applied == 0 {
                        return Err(format!("step {i} applied before its dependency {d}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The participant of `step` processes a request.
    fn deliver(&mut self, step: usize, phase: Phase) -> SimResult<CallOutcome> {
        let undone_before = self.parts[step].undone;
        let p = &self.parts[step];
        if phase.is_undo() && !p.undo && p.forward != Some(CallOutcome::Ok) {
            self.stats.null_compensations += 1;
        }
        let reply = self.parts[step].handle(phase);
        if self.parts[step].undone > undone_before {
            // Reverse order: a step is undone only after every step depending on it is.
            for (j, spec) in self.scenario.steps.iter().enumerate() {
                if spec.deps.contains(&step) && self.parts[j].applied != self.parts[j].undone {
                    return Err(format!(
                        "step {step} undone while its dependent {j} is still applied"
                    ));
                }
            }
        }
        self.check_participants()?;
        Ok(reply)
    }

    /// Runs `decide` until it has nothing more to record; starts the calls it asks for.
    fn run_decide(&mut self) -> SimResult<Option<Millis>> {
        for _ in 0..1_000 {
            let commands = decide(&self.saga, self.now);
            if let Some(Command::Record(event)) = commands.first() {
                if commands.len() != 1 {
                    return Err(format!(
                        "decide returned a record with other commands: {commands:?}"
                    ));
                }
                self.record(event.clone())?;
                continue;
            }
            let mut wake: Option<Millis> = None;
            for command in commands {
                match command {
                    Command::Record(e) => {
                        return Err(format!("record after other commands: {e:?}"));
                    }
                    Command::Call(call) => {
                        let phase = self.scenario.steps[call.step].kind;
                        let allowed = match self.saga.lifecycle {
                            Lifecycle::Running => call.phase == phase.forward(),
                            Lifecycle::Confirming => Some(call.phase) == phase.commit(),
                            Lifecycle::Compensating => call.phase == phase.undo(),
                            l => return Err(format!("decide called {call} while {l:?}")),
                        };
                        if !allowed {
                            return Err(format!(
                                "decide called {call} while {:?}",
                                self.saga.lifecycle
                            ));
                        }
                        self.record(Event::CallStarted { call, at: self.now })?;
                        let faults = self.round < self.scenario.fault_rounds;
                        let hung_until = if faults && self.rng.random_bool(self.fault_p / 4.0) {
                            self.round + self.rng.random_range(1..=30)
                        } else {
                            0
                        };
                        self.outstanding.push((call, hung_until));
                    }
                    Command::Notify { attempt } => {
                        return Err(format!("callback attempt {attempt} without a callback URL"));
                    }
                    Command::WakeAt(t) => {
                        if t <= self.now {
                            return Err(format!(
                                "decide asked to wake at {t}, not after now {}",
                                self.now
                            ));
                        }
                        wake = Some(wake.map_or(t, |w| w.min(t)));
                    }
                }
            }
            return Ok(wake);
        }
        Err("decide keeps recording events".into())
    }

    fn pick_delivery(&mut self, faults: bool) -> Delivery {
        if !faults || !self.rng.random_bool(self.fault_p) {
            return Delivery::Normal;
        }
        match self.rng.random_range(0..7) {
            0 => Delivery::LostRequest,
            1 => Delivery::LostReply,
            2 => Delivery::Duplicate,
            3 => Delivery::Refused,
            4 => Delivery::TimeoutInFlight,
            5 => Delivery::ServerError,
            _ => Delivery::Normal, // delays are scheduled separately
        }
    }

    /// One outstanding call ends.
    fn complete(&mut self, call: CallRef, mode: Delivery) -> SimResult {
        let outcome = match mode {
            Delivery::Normal => self.deliver(call.step, call.phase)?,
            Delivery::LostRequest | Delivery::ServerError => CallOutcome::Transient,
            Delivery::LostReply => {
                self.deliver(call.step, call.phase)?;
                CallOutcome::Transient
            }
            Delivery::Duplicate => {
                self.deliver(call.step, call.phase)?;
                self.deliver(call.step, call.phase)?
            }
            // Never sent: no connection, or refused by the breaker or bulkhead.
            Delivery::Refused if self.rng.random_bool(0.5) => CallOutcome::Refused,
            Delivery::Refused => CallOutcome::NotSent,
            Delivery::TimeoutInFlight => {
                self.network.push((call.step, call.phase));
                CallOutcome::Transient
            }
        };
        self.note(format!("{call}: {mode:?} -> {outcome:?}"));
        let latency = self.rng.random_range(0..=30);
        self.now += latency;
        let http_status = match (outcome, mode) {
            (CallOutcome::Ok, _) => Some(200),
            (CallOutcome::Rejected, _) => Some(409),
            (CallOutcome::Transient, Delivery::ServerError) => Some(503),
            _ => None,
        };
        let retry_at = self.now + self.rng.random_range(1..=300);
        self.record(Event::CallEnded {
            call,
            outcome,
            http_status,
            latency_ms: latency,
            error: (outcome != CallOutcome::Ok).then(|| format!("{mode:?}")),
            retry_at,
            at: self.now,
        })
    }

    /// A request still in the network reaches its participant; nobody reads the reply.
    fn deliver_late(&mut self) -> SimResult {
        let i = self.rng.random_range(0..self.network.len());
        let (step, phase) = self.network.swap_remove(i);
        self.stats.late_deliveries += 1;
        let reply = self.deliver(step, phase)?;
        self.note(format!(
            "late request step {step} {phase} reaches the participant -> {reply:?} (ignored)"
        ));
        Ok(())
    }

    /// The coordinator crashes and restarts from its log.
    fn crash(&mut self) -> SimResult {
        self.stats.crashes += 1;
        if matches!(self.saga.lifecycle, Lifecycle::Stuck { .. }) {
            self.stats.crashes_while_stuck += 1;
        }
        self.note("coordinator crashes".into());
        for (call, _) in std::mem::take(&mut self.outstanding) {
            match self.rng.random_range(0..3) {
                0 => {
                    let reply = self.deliver(call.step, call.phase)?;
                    self.note(format!(
                        "{call} was applied before the crash -> {reply:?} (lost)"
                    ));
                }
                1 => {
                    self.note(format!("{call} is still in the network"));
                    self.network.push((call.step, call.phase));
                }
                _ => self.note(format!("{call} never left")),
            }
        }
        let encoded =
            serde_json::to_string(&self.log).map_err(|e| format!("log does not serialize: {e}"))?;
        let decoded: Vec<Event> =
            serde_json::from_str(&encoded).map_err(|e| format!("log does not deserialize: {e}"))?;
        if decoded != self.log {
            return Err("log changed through JSON".into());
        }
        let rebuilt = Saga::replay(&decoded).map_err(|e| format!("replay failed: {e}"))?;
        if rebuilt != self.saga {
            return Err(format!(
                "replay differs from the live state:\nlive: {:?}\nreplayed: {rebuilt:?}",
                self.saga
            ));
        }
        self.saga = rebuilt;
        self.now += self.rng.random_range(1..=500);
        self.record(Event::Resumed { at: self.now })
    }

    /// Throws an event at the engine that must be refused, and a random one that, if refused,
    /// must leave the state as it was.
    fn poke(&mut self) -> SimResult {
        let candidates = self.illegal_candidates();
        let event = candidates[self.rng.random_range(0..candidates.len())].clone();
        let mut copy = self.saga.clone();
        match copy.apply(&event) {
            Ok(()) => {
                return Err(format!(
                    "engine accepted an illegal event while {:?}: {}",
                    self.saga.lifecycle,
                    json(&event)
                ));
            }
            Err(_) if copy != self.saga => {
                return Err(format!(
                    "a refused event changed the state: {}",
                    json(&event)
                ));
            }
            Err(_) => {}
        }
        self.stats.illegal_checked += 1;

        let event = self.random_event();
        let mut copy = self.saga.clone();
        if copy.apply(&event).is_err() && copy != self.saga {
            return Err(format!(
                "a refused event changed the state: {}",
                json(&event)
            ));
        }
        Ok(())
    }

    fn illegal_candidates(&mut self) -> Vec<Event> {
        let n = self.saga.steps.len();
        let at = self.now;
        let lifecycle = self.saga.lifecycle;
        let mut out = vec![
            Event::Created(Box::new(self.scenario.created())),
            Event::CallStarted {
                call: CallRef {
                    step: n + self.rng.random_range(0..3),
                    phase: Phase::Action,
                    attempt: 1,
                },
                at,
            },
            Event::Stuck {
                step: n,
                reason: "x".into(),
                at,
            },
        ];
        let s = self.rng.random_range(0..n);
        let kind = self.scenario.steps[s].kind;
        // Attempt 0 never exists.
        for phase in [kind.forward(), kind.undo()]
            .into_iter()
            .chain(kind.commit())
        {
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase,
                    attempt: 0,
                },
                at,
            });
        }
        // A result for a call that is not outstanding.
        let phase = [
            Phase::Try,
            Phase::Confirm,
            Phase::Cancel,
            Phase::Action,
            Phase::Compensate,
        ][self.rng.random_range(0..5)];
        let attempt = self.rng.random_range(0..6);
        if self.saga.steps[s].status != (StepStatus::Calling { phase, attempt }) {
            out.push(call_ended(
                CallRef {
                    step: s,
                    phase,
                    attempt,
                },
                CallOutcome::Ok,
                at,
            ));
        }
        if lifecycle != Lifecycle::Running {
            out.push(Event::Decided {
                decision: Decision::Commit,
                at,
            });
            out.push(Event::Decided {
                decision: Decision::Abort {
                    reason: "late".into(),
                },
                at,
            });
            // No forward phase once decided: no try after its cancel.
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase: kind.forward(),
                    attempt: 1,
                },
                at,
            });
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase: kind.forward(),
                    attempt: 2,
                },
                at,
            });
        } else {
            if self
                .saga
                .steps
                .iter()
                .any(|st| st.status != StepStatus::Done)
            {
                out.push(Event::Decided {
                    decision: Decision::Commit,
                    at,
                });
            }
            out.push(Event::Stuck {
                step: s,
                reason: "x".into(),
                at,
            });
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase: kind.undo(),
                    attempt: 1,
                },
                at,
            });
        }
        if let Some(phase) = kind.commit()
            && lifecycle != Lifecycle::Confirming
        {
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase,
                    attempt: 1,
                },
                at,
            });
        }
        if lifecycle != Lifecycle::Compensating && lifecycle != Lifecycle::Running {
            out.push(Event::CallStarted {
                call: CallRef {
                    step: s,
                    phase: kind.undo(),
                    attempt: 1,
                },
                at,
            });
        }
        if !matches!(lifecycle, Lifecycle::Stuck { .. }) {
            out.push(Event::RetryRequested { at });
        }
        if lifecycle.is_terminal() {
            out.push(Event::Resumed { at });
        }
        let may_finish = match lifecycle {
            Lifecycle::Confirming => self.saga.all_confirmed(),
            Lifecycle::Compensating => self.saga.steps.iter().all(|st| st.is_undone()),
            _ => false,
        };
        if !may_finish {
            out.push(Event::Finished { at });
        }
        out
    }

    fn random_event(&mut self) -> Event {
        let n = self.saga.steps.len();
        let at = self.now;
        let call = CallRef {
            step: self.rng.random_range(0..n + 1),
            phase: [
                Phase::Try,
                Phase::Confirm,
                Phase::Cancel,
                Phase::Action,
                Phase::Compensate,
            ][self.rng.random_range(0..5)],
            attempt: self.rng.random_range(0..4),
        };
        let outcome = [
            CallOutcome::Ok,
            CallOutcome::Rejected,
            CallOutcome::Transient,
            CallOutcome::NotSent,
        ][self.rng.random_range(0..4)];
        match self.rng.random_range(0..8) {
            0 => Event::CallStarted { call, at },
            1 => call_ended(call, outcome, at),
            2 => Event::Decided {
                decision: Decision::Commit,
                at,
            },
            3 => Event::Decided {
                decision: Decision::Abort { reason: "r".into() },
                at,
            },
            4 => Event::Stuck {
                step: call.step,
                reason: "r".into(),
                at,
            },
            5 => Event::Resumed { at },
            6 => Event::RetryRequested { at },
            _ => Event::Finished { at },
        }
    }

    /// Runs the saga to the end. Returns the number of rounds.
    fn run(&mut self) -> SimResult<u32> {
        for round in 0..MAX_ROUNDS {
            self.round = round;
            let faults = round < self.scenario.fault_rounds;
            let wake = self.run_decide()?;
            if self.rng.random_bool(self.illegal_p) {
                self.poke()?;
            }
            if self.saga.lifecycle.is_terminal() {
                return Ok(round);
            }
            let stuck = matches!(self.saga.lifecycle, Lifecycle::Stuck { .. });
            // Crashes are likelier while stuck: recovery of a stuck saga is the rarest path.
            let crash_p = if stuck {
                self.crash_p * 2.0
            } else {
                self.crash_p
            };
            if faults && self.rng.random_bool(crash_p) {
                self.crash()?;
                continue;
            }
            if !self.network.is_empty() && self.rng.random_bool(0.2) {
                self.deliver_late()?;
                continue;
            }
            if stuck && !self.outstanding.is_empty() && self.rng.random_bool(0.2) {
                // The operator does not wait for the calls still outstanding.
                self.now += self.rng.random_range(1..=1_000);
                self.note("the operator retries the stuck saga while calls are outstanding".into());
                self.record(Event::RetryRequested { at: self.now })?;
                continue;
            }
            // Hung calls wait (until the faults stop).
            let ready: Vec<usize> = (0..self.outstanding.len())
                .filter(|&i| !faults || self.outstanding[i].1 <= round)
                .collect();
            if !self.outstanding.is_empty() {
                if ready.is_empty() || (faults && self.rng.random_bool(self.fault_p / 3.0)) {
                    // Delayed: every outstanding call stays outstanding a while longer.
                    let d = self.rng.random_range(1..=200);
                    self.now += d;
                    self.note(format!(
                        "{d} ms pass with {} calls outstanding",
                        self.outstanding.len()
                    ));
                    continue;
                }
                let i = ready[self.rng.random_range(0..ready.len())];
                let (call, _) = self.outstanding.swap_remove(i);
                let mode = self.pick_delivery(faults);
                self.complete(call, mode)?;
                continue;
            }
            if stuck {
                self.now += self.rng.random_range(1..=1_000);
                self.note("the operator retries the stuck saga".into());
                self.record(Event::RetryRequested { at: self.now })?;
                continue;
            }
            match wake {
                Some(t) => self.now = t,
                None => {
                    return Err(format!(
                        "saga hangs: {:?}, nothing outstanding, nothing to wake for; steps: {:?}",
                        self.saga.lifecycle, self.saga.steps
                    ));
                }
            }
        }
        Err(format!(
            "saga not finished after {MAX_ROUNDS} rounds: {:?}",
            self.saga.lifecycle
        ))
    }

    /// Checks the end state once the saga is terminal.
    fn check_end(&mut self) -> SimResult {
        if !self.outstanding.is_empty() {
            return Err(format!(
                "terminal with calls outstanding: {:?}",
                self.outstanding
            ));
        }
        for now in [self.now, self.now + 10_000_000] {
            let commands = decide(&self.saga, now);
            if !commands.is_empty() {
                return Err(format!("a terminal saga still has commands: {commands:?}"));
            }
        }
        // Whatever is still in the network arrives now; the books must not move.
        while !self.network.is_empty() {
            self.deliver_late()?;
        }
        self.check_participants()?;
        self.stats.hanging_rejected = self.parts.iter().map(|p| p.hanging_rejected).sum();
        match self.saga.lifecycle {
            Lifecycle::Committed => {
                self.stats.committed += 1;
                for (i, (p, spec)) in self.parts.iter().zip(&self.scenario.steps).enumerate() {
                    let confirms = u32::from(spec.kind == StepKind::Tcc);
                    if p.applied != 1 || p.undone != 0 || p.confirmed != confirms {
                        return Err(format!(
                            "committed but step {i} ({:?}) has books {p:?}",
                            spec.kind
                        ));
                    }
                }
            }
            Lifecycle::Aborted => {
                self.stats.aborted += 1;
                for (i, p) in self.parts.iter().enumerate() {
                    if p.applied != p.undone || p.confirmed != 0 {
                        return Err(format!("aborted but step {i} has books {p:?}"));
                    }
                }
            }
            l => return Err(format!("not terminal: {l:?}")),
        }
        let replayed = Saga::replay(&self.log).map_err(|e| format!("final replay failed: {e}"))?;
        if replayed != self.saga {
            return Err(format!(
                "final replay differs:\nlive: {:?}\nreplayed: {replayed:?}",
                self.saga
            ));
        }
        Ok(())
    }

    fn report(&self, error: &str) -> String {
        format!(
            "{error}\nscenario: {:?}\nnow: {}, crashes: {}, outstanding: {:?}, network: {:?}\nparticipants: {:?}\nsaga: {:?}\ntrace ({} lines):\n{}",
            self.scenario,
            self.now,
            self.stats.crashes,
            self.outstanding,
            self.network,
            self.parts,
            self.saga,
            self.trace.len(),
            self.trace.join("\n")
        )
    }
}

fn call_ended(call: CallRef, outcome: CallOutcome, at: Millis) -> Event {
    Event::CallEnded {
        call,
        outcome,
        http_status: None,
        latency_ms: 0,
        error: None,
        retry_at: at,
        at,
    }
}

fn json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| format!("<unserializable {event:?}: {e}>"))
}

struct Outcome {
    lifecycle: Lifecycle,
    stats: Stats,
}

fn simulate(scenario: &Scenario) -> Result<Outcome, String> {
    let mut sim = Sim::new(scenario)?;
    let result = sim
        .run()
        .and_then(|rounds| sim.check_end().map(|()| rounds));
    match result {
        Ok(_) => Ok(Outcome {
            lifecycle: sim.saga.lifecycle,
            stats: sim.stats,
        }),
        Err(e) => Err(sim.report(&e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Under any fault schedule (that eventually stops), the saga ends committed or aborted,
    /// the participants' books match the outcome, illegal events are refused without effect,
    /// and the log replays to the same state.
    #[test]
    fn every_saga_settles_consistently_under_faults(scenario in scenario_strategy(0u32..400)) {
        if let Err(report) = simulate(&scenario) {
            prop_assert!(false, "{}", report);
        }
    }

    /// Without faults, rejections or a deadline, every saga commits.
    #[test]
    fn a_saga_without_faults_or_rejections_commits(scenario in scenario_strategy(Just(0u32))) {
        let mut scenario = scenario;
        scenario.timeout_ms = None;
        for step in &mut scenario.steps {
            step.rejects = false;
        }
        match simulate(&scenario) {
            Ok(outcome) => prop_assert_eq!(outcome.lifecycle, Lifecycle::Committed, "{:?}", scenario),
            Err(report) => prop_assert!(false, "{}", report),
        }
    }

    /// A step the business rejects always rolls the saga back.
    #[test]
    fn a_rejected_step_aborts_the_saga(scenario in scenario_strategy(0u32..200), which in any::<prop::sample::Index>()) {
        let mut scenario = scenario;
        let i = which.index(scenario.steps.len());
        scenario.steps[i].rejects = true;
        match simulate(&scenario) {
            Ok(outcome) => prop_assert_eq!(outcome.lifecycle, Lifecycle::Aborted, "{:?}", scenario),
            Err(report) => prop_assert!(false, "{}", report),
        }
    }
}

/// Guards against a vacuous simulation: over a fixed set of scenarios, every interesting path
/// (crashes, stuck sagas and operator retries, hanging requests, null compensations, late
/// requests, deadlines, illegal events) is actually reached. `ENGINE_SIM_RUNS=40000` runs more
/// scenarios; `ENGINE_SIM_DUMP=1` prints the first line of each failure (`--nocapture`).
#[test]
fn the_simulation_reaches_the_interesting_paths() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = scenario_strategy(0u32..400);
    let mut total = Stats::default();
    // Failing runs are the properties' business; here they only do not count.
    let mut failed = 0;
    let runs: usize = std::env::var("ENGINE_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for _ in 0..runs {
        let scenario = strategy.new_tree(&mut runner).unwrap().current();
        match simulate(&scenario) {
            Ok(outcome) => total.add(&outcome.stats),
            Err(r) => {
                if std::env::var("SIM_DUMP").is_ok() {
                    println!("FAIL {}", r.lines().next().unwrap());
                }
                failed += 1
            }
        }
    }
    println!("{total:?}, {failed} failed runs");
    let Stats {
        committed,
        aborted,
        deadline_aborts,
        crashes,
        crashes_while_stuck,
        stuck,
        operator_retries,
        hanging_rejected,
        null_compensations,
        late_deliveries,
        illegal_checked,
    } = total;
    for (name, n) in [
        ("committed", committed),
        ("aborted", aborted),
        ("deadline_aborts", deadline_aborts),
        ("crashes", crashes),
        ("crashes_while_stuck", crashes_while_stuck),
        ("stuck", stuck),
        ("operator_retries", operator_retries),
        ("hanging_rejected", hanging_rejected),
        ("null_compensations", null_compensations),
        ("late_deliveries", late_deliveries),
        ("illegal_checked", illegal_checked),
    ] {
        assert!(n > 0, "the simulation never reached {name}: {total:?}");
    }
}

/// Found by `every_saga_settles_consistently_under_faults`: a coordinator restart while the
/// saga is stuck on a rollback leaves a forward call that was outstanding in `Waiting`, and
/// after the operator's retry nothing ever settles it. The saga stays `compensating` forever
/// (`decide` returns nothing) and the forward phase, which may have applied, is never undone.
#[test]
fn restart_while_stuck_rolling_back_still_undoes_outstanding_forward_calls() {
    let step = |name: &str| PlanStep {
        name: name.into(),
        participant: "p".into(),
        action: "/x".into(),
        kind: StepKind::Tcc,
        deps: vec![],
        timeout_ms: None,
        retry: RetryPolicy {
            max_attempts: 1,
            settle_max_attempts: 1,
            ..RetryPolicy::default()
        },
    };
    let created = Created {
        id: "s".into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({}),
        callback_url: None,
        idempotency_key: None,
        plan: Plan {
            steps: vec![step("a"), step("b")],
            timeout_ms: None,
        },
        at: 0,
    };
    let a_try = CallRef {
        step: 0,
        phase: Phase::Try,
        attempt: 1,
    };
    let b_try = CallRef {
        step: 1,
        phase: Phase::Try,
        attempt: 1,
    };
    let b_cancel = CallRef {
        step: 1,
        phase: Phase::Cancel,
        attempt: 1,
    };
    let log = [
        Event::Created(Box::new(created)),
        Event::CallStarted { call: a_try, at: 0 },
        Event::CallStarted { call: b_try, at: 0 },
        call_ended(b_try, CallOutcome::Rejected, 1),
        Event::Decided {
            decision: Decision::Abort {
                reason: "b rejected".into(),
            },
            at: 1,
        },
        Event::CallStarted {
            call: b_cancel,
            at: 1,
        },
        call_ended(b_cancel, CallOutcome::Transient, 2),
        Event::Stuck {
            step: 1,
            reason: "b cancel failed".into(),
            at: 2,
        },
        // The coordinator restarts; a's try was outstanding (it may have applied).
        Event::Resumed { at: 3 },
        Event::RetryRequested { at: 4 },
        Event::CallStarted {
            call: b_cancel,
            at: 4,
        },
        call_ended(b_cancel, CallOutcome::Ok, 5),
    ];
    let mut saga = Saga::replay(&log).expect("every event applies");
    assert_eq!(saga.lifecycle, Lifecycle::Compensating);
    // The saga must go on: cancel a (its try may have applied), then finish aborted.
    for now in 5..100 {
        let commands = decide(&saga, now);
        match commands.first() {
            Some(Command::Record(event)) => saga.apply(event).unwrap(),
            Some(Command::Call(call)) => {
                let call = *call;
                saga.apply(&Event::CallStarted { call, at: now }).unwrap();
                saga.apply(&call_ended(call, CallOutcome::Ok, now)).unwrap();
            }
            Some(Command::WakeAt(_)) => {}
            Some(Command::Notify { .. }) => panic!("no callback URL, no callback"),
            None => break,
        }
    }
    assert_eq!(
        saga.lifecycle,
        Lifecycle::Aborted,
        "saga hangs with steps {:?}; decide: {:?}",
        saga.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        decide(&saga, 1_000_000)
    );
    assert_eq!(
        saga.steps[0].last_phase,
        Some(Phase::Cancel),
        "a's try may have applied: it must be cancelled"
    );
}
