//! Deterministic simulation of the saga engine.
//!
//! Each seed builds a random plan (1-5 steps, SAGA or TCC, chain or DAG dependencies, small
//! retry budgets, an optional deadline, sometimes a completion callback) and runs it against
//! model participants that behave exactly like the participant SDK's barrier (idempotent per
//! phase, null compensation, hanging `try`/`action` rejected), with a simulated clock. The
//! seed's RNG schedules the faults: requests and replies lost, duplicated, reordered, refused
//! locally (breaker, bulkhead), never connected, timed out while still in flight, completion
//! callbacks failed or their replies lost (some receivers never answer); operator aborts and retries;
//! illegal events thrown at the engine; and coordinator crashes.
//!
//! The coordinator is the engine's round driver (`engine::Driver`), the same code the runtime
//! runs: each round `step`s it and carries out its `Ready` as the runtime does (append what it
//! hands out; flush when it says so, which makes the whole log so far durable; then send its
//! calls and callback). The simulation checks the driver against the durability rules: a
//! confirm/cancel/compensate sent before the decision is durable, or a callback before the
//! terminal state is, fails the seed. A crash loses what the driver had not handed out, keeps
//! the durable part of the log plus any prefix of the rest (sled recovers a prefix), rebuilds
//! the saga with `Saga::replay` and resumes it (`Driver::resumed`). Participants keep whatever they applied; requests still in the network
//! may reach them after the crash (their replies are lost). After a while the faults stop, and
//! every saga must then end committed or aborted, with the participants' books consistent with
//! that outcome and its callback (if any) delivered or abandoned.
//!
//! `the_simulation_holds_for_many_seeds` runs seeds `0..10_000` (`ENGINE_SIM_RUNS=N` runs N,
//! `ENGINE_SIM_SEED=S` replays exactly seed S and prints its trace). A failure prints
//! `ENGINE_SIM_SEED=<seed>` and the full trace: every recorded event as JSON, interleaved with
//! `#` lines saying what the simulation did.

use std::collections::HashSet;

use std::sync::Arc;

use coordinator::engine::{
    CALLBACK_MAX_ATTEMPTS, CallOutcome, CallRef, CallbackStatus, Command, Created, Decision,
    Driver, Event, Lifecycle, Millis, Plan, PlanStep, Saga, StepStatus, decide,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sagas::api::Resolution;
use sagas::{Phase, RetryPolicy, StepKind};

/// The simulation stops (and the seed fails) after this many scheduling rounds.
const MAX_ROUNDS: u32 = 5_000;
const START: Millis = 1_000;
const DEFAULT_RUNS: u64 = 10_000;

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
    seed: u64,
    steps: Vec<StepSpec>,
    timeout_ms: Option<u64>,
    /// Scheduling rounds during which faults (crashes, operator aborts) may happen.
    fault_rounds: u32,
    callback: Option<ReceiverKind>,
    crash_p: f64,
    fault_p: f64,
    /// How often a call cannot connect at all (`NotSent`) while faults last.
    not_sent_p: f64,
    illegal_p: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReceiverKind {
    Healthy,
    /// Never answers 2xx: the callback must be abandoned.
    Dead,
}

impl Scenario {
    fn generate(seed: u64, rng: &mut StdRng) -> Scenario {
        let n = rng.random_range(1..=5usize);
        // 0: sequential chain, 1: random DAG, 2: all independent.
        let topology = rng.random_range(0..3u8);
        let clean = rng.random_bool(0.08);
        let steps = (0..n)
            .map(|i| {
                let mask: u8 = rng.random();
                let deps = match topology {
                    0 if i > 0 => vec![i - 1],
                    1 => (0..i).filter(|d| mask & (1 << d) != 0).collect(),
                    _ => Vec::new(),
                };
                StepSpec {
                    kind: if rng.random_bool(0.5) {
                        StepKind::Tcc
                    } else {
                        StepKind::Saga
                    },
                    deps,
                    max_attempts: rng.random_range(1..=4),
                    settle_max_attempts: rng.random_range(1..=5),
                    rejects: !clean && rng.random_bool(0.12),
                }
            })
            .collect();
        let timeout_ms = (!clean && rng.random_bool(0.3)).then(|| rng.random_range(20..2_000));
        let fault_rounds = if clean { 0 } else { rng.random_range(0..400) };
        let callback = rng.random_bool(0.4).then(|| {
            if rng.random_bool(0.1) {
                ReceiverKind::Dead
            } else {
                ReceiverKind::Healthy
            }
        });
        Scenario {
            seed,
            steps,
            timeout_ms,
            fault_rounds,
            callback,
            crash_p: [0.0, 0.02, 0.1][rng.random_range(0..3)],
            fault_p: [0.1, 0.3, 0.6][rng.random_range(0..3)],
            not_sent_p: [0.0, 0.0, 0.05, 0.3][rng.random_range(0..4)],
            illegal_p: [0.0, 0.1, 0.3][rng.random_range(0..3)],
        }
    }

    /// No faults, no rejections, no deadline: the saga must commit.
    fn is_clean(&self) -> bool {
        self.fault_rounds == 0 && self.timeout_ms.is_none() && !self.steps.iter().any(|s| s.rejects)
    }

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
            input: serde_json::json!({"n": 1}).into(),
            callback_url: self.callback.map(|_| "http://127.0.0.1:9/done".into()),
            idempotency_key: Some("k".into()),
            business_key: None,
            callback_max_attempts: coordinator::engine::CALLBACK_MAX_ATTEMPTS,
            trace: None,
            plan: Plan {
                steps,
                timeout_ms: self.timeout_ms,
            }
            .into(),
            at: START,
        }
    }
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

/// The completion callback's receiver.
#[derive(Debug, Clone, Default)]
struct Receiver {
    /// Requests that reached it.
    received: u32,
    /// The state it was told, every time.
    told: Vec<Lifecycle>,
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
    /// The connection could not be opened: never sent.
    NotSent,
    /// The coordinator times out while the request is still in the network; it reaches the
    /// participant later (possibly after its undo: a hanging request).
    TimeoutInFlight,
    /// The participant answers 5xx without doing anything.
    ServerError,
}

/// Something the coordinator sent and waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flight {
    Call(CallRef),
    Callback(u32),
}

#[derive(Debug, Clone)]
enum Trace {
    Event(Event),
    Note(String),
}

macro_rules! stats {
    ($($name:ident),* $(,)?) => {
        /// What runs went through, to check that the simulation reaches the interesting paths.
        #[derive(Debug, Clone, Copy, Default)]
        struct Stats { $($name: u32),* }

        impl Stats {
            fn add(&mut self, o: &Stats) {
                $(self.$name += o.$name;)*
            }

            fn named(&self) -> Vec<(&'static str, u32)> {
                vec![$((stringify!($name), self.$name)),*]
            }
        }
    };
}

stats!(
    committed,
    aborted,
    clean_commits,
    deadline_aborts,
    operator_aborts,
    crashes,
    crashes_mid_round,
    crashes_while_stuck,
    crashes_while_notifying,
    crash_lost_unflushed_events,
    crash_lost_start_of_sent_call,
    stuck,
    operator_retries,
    operator_retry_now,
    operator_resolves,
    hanging_rejected,
    null_compensations,
    late_deliveries,
    refused_forward,
    refused_settle,
    not_sent,
    callbacks_delivered,
    callbacks_abandoned,
    callback_replies_lost,
    callback_redelivered,
    illegal_checked,
);

struct Sim {
    scenario: Scenario,
    rng: StdRng,
    now: Millis,
    /// The coordinator: the saga's state, with what it has not handed out for the log yet.
    driver: Driver,
    /// The log as appended; `log[..durable]` is on disk.
    log: Vec<Event>,
    /// The fold of `log`: what a restart would rebuild if nothing were lost.
    logged: Saga,
    durable: usize,
    /// Sent and waiting for their replies, each with the round before which it cannot
    /// complete (a hung participant).
    in_flight: Vec<(Flight, u32)>,
    /// Calls that went on the wire (whether or not they arrived).
    sent: HashSet<CallRef>,
    /// Requests in the network whose replies nobody waits for any more.
    network: Vec<(usize, Phase)>,
    parts: Vec<Participant>,
    receiver: Receiver,
    /// Callback attempts sent while the terminal state was durable.
    notified_durable: u32,
    trace: Vec<Trace>,
    round: u32,
    stats: Stats,
}

type SimResult<T = ()> = Result<T, String>;

impl Sim {
    fn new(seed: u64) -> SimResult<Sim> {
        let mut rng = StdRng::seed_from_u64(seed);
        let scenario = Scenario::generate(seed, &mut rng);
        let created = scenario.created();
        let saga = Saga::create(&created).map_err(|e| format!("create failed: {e}"))?;
        let driver = Driver::new(Arc::new(saga.clone()), 0, 0);
        let parts = scenario
            .steps
            .iter()
            .map(|s| Participant {
                rejects: s.rejects,
                ..Default::default()
            })
            .collect();
        let created = Event::Created(Box::new(created));
        Ok(Sim {
            scenario,
            rng,
            now: START,
            driver,
            logged: saga,
            trace: vec![Trace::Event(created.clone())],
            // Rule 1: the submission is flushed before the saga's first round.
            log: vec![created],
            durable: 1,
            in_flight: Vec::new(),
            sent: HashSet::new(),
            network: Vec::new(),
            parts,
            receiver: Receiver::default(),
            notified_durable: 0,
            round: 0,
            stats: Stats::default(),
        })
    }

    fn faults(&self) -> bool {
        self.round < self.scenario.fault_rounds
    }

    fn note(&mut self, s: String) {
        self.trace.push(Trace::Note(s));
    }

    /// The coordinator's current view of the saga.
    fn saga(&self) -> &Saga {
        self.driver.saga()
    }

    /// Records a call's or callback's answer, or an operator's event, in the driver.
    fn record(&mut self, event: Event) -> SimResult {
        self.note(format!("recorded {}", json(&event)));
        if let Event::RetryRequested { .. } = event {
            self.stats.operator_retries += 1;
        }
        self.driver.record_result(event.clone()).map_err(|e| {
            format!(
                "engine refused an event the runtime records: {e}\nevent: {}",
                json(&event)
            )
        })
    }

    /// Appends what the driver handed out, checking each event against the log's fold.
    fn append(&mut self, events: Vec<Event>) -> SimResult {
        for event in events {
            let before = self.logged.lifecycle;
            if let Err(e) = self.logged.apply(&event) {
                return Err(format!(
                    "the log does not replay: {e}\nevent: {}",
                    json(&event)
                ));
            }
            match &event {
                Event::Stuck { .. } => self.stats.stuck += 1,
                Event::Decided {
                    decision: Decision::Abort { reason },
                    ..
                } if reason.contains("deadline") => self.stats.deadline_aborts += 1,
                Event::Decided {
                    decision: Decision::Commit,
                    ..
                } => {
                    for (i, p) in self.parts.iter().enumerate() {
                        if p.forward != Some(CallOutcome::Ok) || p.applied != 1 || p.undo {
                            return Err(format!(
                                "commit decided but step {i} is not applied at its participant: {p:?}"
                            ));
                        }
                    }
                }
                _ => {}
            }
            if before.is_terminal() {
                let callback_event = matches!(
                    event,
                    Event::CallbackStarted { .. }
                        | Event::CallbackEnded { .. }
                        | Event::CallbackAbandoned { .. }
                        | Event::Resumed { .. }
                );
                if !callback_event || self.logged.lifecycle != before {
                    return Err(format!("a terminal saga changed with {}", json(&event)));
                }
            }
            self.trace.push(Trace::Event(event.clone()));
            self.log.push(event);
        }
        Ok(())
    }

    fn durable_has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.log[..self.durable].iter().any(pred)
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

    /// One round of the coordinator: the driver's step, its `Ready` carried out as the
    /// runtime does. Returns when to wake up, or `None` with `crashed` set if the coordinator
    /// crashed during the round.
    fn run_round(&mut self) -> SimResult<(Option<Millis>, bool)> {
        let ready = self
            .driver
            .step(self.now, self.in_flight.len())
            .map_err(|e| format!("the driver failed: {e}"))?;
        if ready.notify.is_some() && self.scenario.callback.is_none() {
            return Err("a callback attempt without a callback URL".into());
        }
        if let Some(t) = ready.wake
            && t <= self.now
        {
            return Err(format!("asked to wake at {t}, not after now {}", self.now));
        }
        let recorded =
            !ready.append.is_empty() || !ready.calls.is_empty() || ready.notify.is_some();
        self.append(ready.append)?;
        if recorded && self.faults() && self.rng.random_bool(self.scenario.crash_p / 2.0) {
            // The crash hits before the round's calls leave, perhaps after its flush.
            if ready.must_flush && self.rng.random_bool(0.5) {
                self.durable = self.log.len();
                self.note("flushed".into());
            }
            self.crash(true)?;
            return Ok((None, true));
        }
        if ready.must_flush {
            self.durable = self.log.len();
            self.note("flushed".into());
        }
        for call in ready.calls {
            // Rule 2: the decision is durable before the first confirm/cancel/compensate.
            if call.phase.must_settle() && !self.durable_has(|e| matches!(e, Event::Decided { .. }))
            {
                return Err(format!("{call} sent before the decision was durable"));
            }
            let hung_until = if self.faults() && self.rng.random_bool(self.scenario.fault_p / 4.0) {
                self.round + self.rng.random_range(1..=30)
            } else {
                0
            };
            self.sent.insert(call);
            self.in_flight.push((Flight::Call(call), hung_until));
        }
        if let Some(attempt) = ready.notify {
            // Rule 3: the terminal state is durable before anyone is told.
            if !self.durable_has(|e| matches!(e, Event::Finished { .. })) {
                return Err(format!(
                    "callback attempt {attempt} sent before the terminal state was durable"
                ));
            }
            self.notified_durable += 1;
            self.in_flight.push((Flight::Callback(attempt), 0));
        }
        Ok((ready.wake, false))
    }

    fn pick_delivery(&mut self) -> Delivery {
        if !self.faults() {
            return Delivery::Normal;
        }
        if self.rng.random_bool(self.scenario.not_sent_p) {
            return Delivery::NotSent;
        }
        if !self.rng.random_bool(self.scenario.fault_p) {
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

    /// One call in flight ends.
    fn complete(&mut self, call: CallRef) -> SimResult {
        let mode = self.pick_delivery();
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
            // Never sent: refused by the breaker or bulkhead, or no connection.
            Delivery::Refused => {
                if call.phase.is_forward() {
                    self.stats.refused_forward += 1;
                } else {
                    self.stats.refused_settle += 1;
                }
                CallOutcome::Refused
            }
            Delivery::NotSent => {
                self.stats.not_sent += 1;
                CallOutcome::NotSent
            }
            Delivery::TimeoutInFlight => {
                self.network.push((call.step, call.phase));
                CallOutcome::Transient
            }
        };
        if matches!(outcome, CallOutcome::Refused | CallOutcome::NotSent) {
            // It never reached the wire after all.
            self.sent.remove(&call);
        }
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

    /// One callback attempt in flight ends.
    fn complete_callback(&mut self, attempt: u32) -> SimResult {
        let dead = self.scenario.callback == Some(ReceiverKind::Dead);
        let fault = if self.faults() && self.rng.random_bool(self.scenario.fault_p) {
            self.rng.random_range(0..3)
        } else {
            3
        };
        let (reached, delivered, status, what) = match fault {
            _ if dead => (false, false, Some(503), "dead receiver"),
            0 => (false, false, None, "request lost"),
            1 => (false, false, Some(500), "receiver error"),
            2 => (true, false, None, "reply lost"),
            _ => (true, true, Some(204), "delivered"),
        };
        if reached {
            self.receiver.received += 1;
            self.receiver.told.push(self.saga().lifecycle);
            if !delivered {
                self.stats.callback_replies_lost += 1;
            }
        }
        self.note(format!("callback attempt {attempt}: {what}"));
        self.now += self.rng.random_range(0..=30);
        let retry_at = self.now + self.rng.random_range(1..=300);
        self.record(Event::CallbackEnded {
            attempt,
            delivered,
            http_status: status,
            error: (!delivered).then(|| what.into()),
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

    /// The coordinator crashes and restarts from what sled recovers of its log.
    fn crash(&mut self, mid_round: bool) -> SimResult {
        self.stats.crashes += 1;
        if mid_round {
            self.stats.crashes_mid_round += 1;
        }
        if matches!(self.saga().lifecycle, Lifecycle::Stuck { .. }) {
            self.stats.crashes_while_stuck += 1;
        }
        self.note(format!(
            "coordinator crashes{}",
            if mid_round {
                " before the round's calls leave"
            } else {
                ""
            }
        ));
        for (flight, _) in std::mem::take(&mut self.in_flight) {
            match (flight, self.rng.random_range(0..3)) {
                (Flight::Call(call), 0) => {
                    let reply = self.deliver(call.step, call.phase)?;
                    self.note(format!(
                        "{call} was applied before the crash -> {reply:?} (lost)"
                    ));
                }
                (Flight::Call(call), 1) => {
                    self.note(format!("{call} is still in the network"));
                    self.network.push((call.step, call.phase));
                }
                (Flight::Call(call), _) => {
                    self.sent.remove(&call);
                    self.note(format!("{call} never left"));
                }
                (Flight::Callback(attempt), fate) => {
                    self.stats.crashes_while_notifying += 1;
                    if fate == 0 && self.scenario.callback == Some(ReceiverKind::Healthy) {
                        self.receiver.received += 1;
                        self.receiver.told.push(self.saga().lifecycle);
                        self.note(format!("callback attempt {attempt} arrived (reply lost)"));
                    }
                }
            }
        }
        // A crash-free point: the live state is the fold of everything recorded, handed out
        // or not.
        let recorded: Vec<Event> = self
            .log
            .iter()
            .chain(self.driver.unlogged())
            .cloned()
            .collect();
        let replayed =
            Saga::replay(&recorded).map_err(|e| format!("replay of the full log failed: {e}"))?;
        if replayed != *self.saga() {
            return Err(format!(
                "replay differs from the live state:\nlive: {:?}\nreplayed: {replayed:?}",
                self.saga()
            ));
        }
        let unlogged = self.driver.unlogged().len();
        if unlogged > 0 {
            self.note(format!(
                "{unlogged} events not handed out for the log are lost"
            ));
        }
        // sled recovers everything flushed and any prefix of what was appended since.
        let cut = self.rng.random_range(self.durable..=self.log.len());
        if cut < self.log.len() {
            self.stats.crash_lost_unflushed_events += 1;
            let lost_sent = self.log[cut..].iter().any(|e| match e {
                Event::CallStarted { call, .. } => self.sent.contains(call),
                _ => false,
            });
            if lost_sent {
                self.stats.crash_lost_start_of_sent_call += 1;
            }
            self.note(format!(
                "sled recovers {cut} of {} events ({} were flushed); {} unflushed events are lost",
                self.log.len(),
                self.durable,
                self.log.len() - cut
            ));
            self.log.truncate(cut);
        }
        // Through the embedded store's on-disk format (version 2), as a restart reads it.
        let plans = coordinator::testing::format::PlanTable::default();
        let encoded = plans.encode(&self.log);
        let decoded = coordinator::testing::format::decode_round(&encoded, &plans)
            .map_err(|e| format!("log does not decode: {e}"))?;
        if decoded != self.log {
            return Err("log changed through the on-disk format".into());
        }
        let saga = Saga::replay(&decoded).map_err(|e| format!("recovery replay failed: {e}"))?;
        self.logged = saga.clone();
        self.durable = self.log.len();
        self.now += self.rng.random_range(1..=500);
        let seq = self.log.len() as u64 - 1;
        if saga.is_settled() {
            // The runtime resumes only sagas that are not settled.
            self.note("recovered settled; not resumed".into());
            self.driver = Driver::new(Arc::new(saga), seq, seq);
            return Ok(());
        }
        self.note("resumed".into());
        self.driver = Driver::resumed(Arc::new(saga), seq, self.now)
            .map_err(|e| format!("resume refused: {e}"))?;
        Ok(())
    }

    /// An operator hurries a forward call waiting on its backoff (retry now), or settles it by
    /// hand (resolve as succeeded). Whether they did anything.
    fn hurry_or_resolve_forward(&mut self) -> SimResult<bool> {
        let waiting =
            self.saga().steps.iter().any(
                |s| matches!(s.status, StepStatus::Waiting { phase, .. } if phase.is_forward()),
            );
        if !waiting {
            return Ok(false);
        }
        if self.rng.random_bool(0.5) {
            self.stats.operator_retry_now += 1;
            self.note("the operator asks for a waiting call now".into());
            self.record(operated("retry_now", self.now))?;
            self.record(Event::RetryNow { at: self.now })?;
            return Ok(true);
        }
        self.resolve_by_hand(|phase| phase.is_forward())
    }

    /// A person settles a waiting step whose phase `fits` by hand: they do at its participant
    /// what the call would have done, and resolve the step. Whether they did.
    fn resolve_by_hand(&mut self, fits: impl Fn(Phase) -> bool) -> SimResult<bool> {
        let candidate = self
            .saga()
            .steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| match s.status {
                StepStatus::Waiting { phase, .. } if fits(phase) => Some((i, phase)),
                _ => None,
            });
        let Some((step, phase)) = candidate else {
            return Ok(false);
        };
        let part = &self.parts[step];
        if phase.is_forward() && (part.rejects || part.undo) {
            // Nobody can make a rejected or cancelled forward phase happen by hand.
            return Ok(false);
        }
        let resolution = match phase {
            Phase::Confirm => Resolution::Confirmed,
            p if p.is_undo() => Resolution::Compensated,
            _ => Resolution::Succeeded,
        };
        self.stats.operator_resolves += 1;
        self.note(format!("a person settles step {step} {phase} by hand"));
        self.deliver(step, phase)?;
        self.record(operated("resolve", self.now))?;
        self.record(Event::StepResolved {
            step,
            resolution,
            at: self.now,
        })?;
        Ok(true)
    }

    /// Throws an event at the engine that must be refused, and a random one that, if refused,
    /// must leave the state as it was.
    fn poke(&mut self) -> SimResult {
        let candidates = self.illegal_candidates();
        let event = candidates[self.rng.random_range(0..candidates.len())].clone();
        let mut copy = self.saga().clone();
        match copy.apply(&event) {
            Ok(()) => {
                return Err(format!(
                    "engine accepted an illegal event while {:?}: {}",
                    self.saga().lifecycle,
                    json(&event)
                ));
            }
            Err(_) if copy != *self.saga() => {
                return Err(format!(
                    "a refused event changed the state: {}",
                    json(&event)
                ));
            }
            Err(_) => {}
        }
        self.stats.illegal_checked += 1;

        let event = self.random_event();
        let mut copy = self.saga().clone();
        if copy.apply(&event).is_err() && copy != *self.saga() {
            return Err(format!(
                "a refused event changed the state: {}",
                json(&event)
            ));
        }
        Ok(())
    }

    fn illegal_candidates(&mut self) -> Vec<Event> {
        let n = self.saga().steps.len();
        let at = self.now;
        let lifecycle = self.saga().lifecycle;
        let mut out = vec![
            Event::Created(Box::new(self.scenario.created())),
            call_started(
                call_ref(n + self.rng.random_range(0..3), Phase::Action, 1),
                at,
            ),
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
            out.push(call_started(call_ref(s, phase, 0), at));
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
        if self.saga().steps[s].status != (StepStatus::Calling { phase, attempt }) {
            out.push(call_ended(call_ref(s, phase, attempt), CallOutcome::Ok, at));
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
            out.push(call_started(call_ref(s, kind.forward(), 1), at));
            out.push(call_started(call_ref(s, kind.forward(), 2), at));
        } else {
            if self
                .saga()
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
            out.push(call_started(call_ref(s, kind.undo(), 1), at));
        }
        if let Some(phase) = kind.commit()
            && lifecycle != Lifecycle::Confirming
        {
            out.push(call_started(call_ref(s, phase, 1), at));
        }
        if lifecycle != Lifecycle::Compensating && lifecycle != Lifecycle::Running {
            out.push(call_started(call_ref(s, kind.undo(), 1), at));
        }
        if !matches!(lifecycle, Lifecycle::Stuck { .. }) {
            out.push(Event::RetryRequested { at });
        }
        if self.saga().is_settled() {
            out.push(Event::Resumed { at });
        }
        // Callbacks: only once terminal, attempts in order, results for the current attempt.
        let next = match self.saga().callback {
            CallbackStatus::Pending => Some(1),
            CallbackStatus::Waiting { attempt, .. } => Some(attempt + 1),
            _ => None,
        };
        let attempt = self.rng.random_range(0..=CALLBACK_MAX_ATTEMPTS + 1);
        if !lifecycle.is_terminal() || next != Some(attempt) {
            out.push(Event::CallbackStarted { attempt, at });
        }
        if self.saga().callback != (CallbackStatus::Calling { attempt }) {
            out.push(Event::CallbackEnded {
                attempt,
                delivered: true,
                http_status: Some(204),
                error: None,
                retry_at: at,
                at,
            });
        }
        if !matches!(self.saga().callback, CallbackStatus::Waiting { .. }) {
            out.push(Event::CallbackAbandoned {
                reason: "x".into(),
                at,
            });
        }
        let may_finish = match lifecycle {
            Lifecycle::Confirming => self.saga().all_confirmed(),
            Lifecycle::Compensating => self.saga().steps.iter().all(|st| st.is_undone()),
            _ => false,
        };
        if !may_finish {
            out.push(Event::Finished { at });
        }
        out
    }

    fn random_event(&mut self) -> Event {
        let n = self.saga().steps.len();
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
            CallOutcome::Refused,
        ][self.rng.random_range(0..5)];
        let attempt = self.rng.random_range(0..4);
        match self.rng.random_range(0..11) {
            8 => Event::CallbackStarted { attempt, at },
            9 => Event::CallbackEnded {
                attempt,
                delivered: self.rng.random_bool(0.5),
                http_status: None,
                error: None,
                retry_at: at,
                at,
            },
            10 => Event::CallbackAbandoned {
                reason: "r".into(),
                at,
            },
            0 => call_started(call, at),
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

    /// Runs the saga until it is settled (terminal, callback delivered or abandoned).
    fn run(&mut self) -> SimResult {
        for round in 0..MAX_ROUNDS {
            self.round = round;
            let faults = self.faults();
            let (wake, crashed) = self.run_round()?;
            if self.rng.random_bool(self.scenario.illegal_p) {
                self.poke()?;
            }
            if self.saga().is_settled() {
                return Ok(());
            }
            if crashed {
                continue;
            }
            let stuck = matches!(self.saga().lifecycle, Lifecycle::Stuck { .. });
            // Crashes are likelier while stuck: recovery of a stuck saga is the rarest path.
            let crash_p = if stuck {
                self.scenario.crash_p * 2.0
            } else {
                self.scenario.crash_p
            };
            if faults && self.rng.random_bool(crash_p) {
                self.crash(false)?;
                continue;
            }
            if !self.network.is_empty() && self.rng.random_bool(0.2) {
                self.deliver_late()?;
                continue;
            }
            if faults
                && self.saga().lifecycle == Lifecycle::Running
                && self.rng.random_bool(0.02)
                && self.hurry_or_resolve_forward()?
            {
                continue;
            }
            if faults && self.saga().lifecycle == Lifecycle::Running && self.rng.random_bool(0.004)
            {
                // The operator aborts; the runtime records it between rounds and the next
                // round flushes it.
                self.stats.operator_aborts += 1;
                self.note("the operator aborts the saga".into());
                self.record(Event::Decided {
                    decision: Decision::Abort {
                        reason: "aborted by operator".into(),
                    },
                    at: self.now,
                })?;
                continue;
            }
            if stuck && !self.in_flight.is_empty() && self.rng.random_bool(0.2) {
                // The operator does not wait for the calls still outstanding.
                self.now += self.rng.random_range(1..=1_000);
                self.note("the operator retries the stuck saga while calls are outstanding".into());
                self.record(Event::RetryRequested { at: self.now })?;
                continue;
            }
            if !self.in_flight.is_empty() {
                // Hung calls wait (until the faults stop).
                let ready: Vec<usize> = (0..self.in_flight.len())
                    .filter(|&i| !faults || self.in_flight[i].1 <= round)
                    .collect();
                if ready.is_empty() || (faults && self.rng.random_bool(self.scenario.fault_p / 3.0))
                {
                    // Delayed: everything in flight stays in flight a while longer.
                    let d = self.rng.random_range(1..=200);
                    self.now += d;
                    self.note(format!(
                        "{d} ms pass with {} requests in flight",
                        self.in_flight.len()
                    ));
                    continue;
                }
                // Replies arrive in any order.
                let i = ready[self.rng.random_range(0..ready.len())];
                match self.in_flight.swap_remove(i).0 {
                    Flight::Call(call) => self.complete(call)?,
                    Flight::Callback(attempt) => self.complete_callback(attempt)?,
                }
                continue;
            }
            if stuck {
                self.now += self.rng.random_range(1..=1_000);
                if self.rng.random_bool(0.5) && self.resolve_by_hand(|phase| phase.must_settle())? {
                    continue;
                }
                self.note("the operator retries the stuck saga".into());
                self.record(Event::RetryRequested { at: self.now })?;
                continue;
            }
            match wake {
                Some(t) => self.now = t,
                None => {
                    return Err(format!(
                        "saga hangs: {:?} (callback {:?}), nothing in flight, nothing to wake for; steps: {:?}",
                        self.saga().lifecycle,
                        self.saga().callback,
                        self.saga().steps
                    ));
                }
            }
        }
        Err(format!(
            "saga not settled after {MAX_ROUNDS} rounds: {:?} (callback {:?})",
            self.saga().lifecycle,
            self.saga().callback
        ))
    }

    /// Checks the end state once the saga is settled.
    fn check_end(&mut self) -> SimResult {
        if !self.in_flight.is_empty() {
            return Err(format!(
                "settled with requests in flight: {:?}",
                self.in_flight
            ));
        }
        for now in [self.now, self.now + 10_000_000] {
            let commands = decide(self.saga(), now);
            if !commands.is_empty() {
                return Err(format!("a settled saga still has commands: {commands:?}"));
            }
        }
        // Whatever is still in the network arrives now; the books must not move.
        while !self.network.is_empty() {
            self.deliver_late()?;
        }
        self.check_participants()?;
        self.stats.hanging_rejected = self.parts.iter().map(|p| p.hanging_rejected).sum();
        match self.saga().lifecycle {
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
                if self.scenario.steps.iter().any(|s| s.rejects) {
                    return Err("committed although a step's participant rejects it".into());
                }
            }
            Lifecycle::Aborted => {
                self.stats.aborted += 1;
                for (i, p) in self.parts.iter().enumerate() {
                    if p.applied != p.undone || p.confirmed != 0 {
                        return Err(format!("aborted but step {i} has books {p:?}"));
                    }
                }
                if self.scenario.is_clean() {
                    return Err("aborted without faults, rejections or a deadline".into());
                }
            }
            l => return Err(format!("not terminal: {l:?}")),
        }
        if self.scenario.is_clean() {
            self.stats.clean_commits += 1;
        }
        match (self.scenario.callback, self.saga().callback) {
            (None, CallbackStatus::None) => {}
            (Some(_), CallbackStatus::Delivered | CallbackStatus::Abandoned) => {
                if self.notified_durable == 0 {
                    return Err(
                        "callback settled without an attempt after the terminal state was durable"
                            .into(),
                    );
                }
                if self.saga().callback == CallbackStatus::Delivered {
                    self.stats.callbacks_delivered += 1;
                    if self.receiver.received == 0 {
                        return Err("callback delivered but the receiver got nothing".into());
                    }
                } else {
                    self.stats.callbacks_abandoned += 1;
                }
                if self.receiver.received > 1 {
                    self.stats.callback_redelivered += 1;
                }
                if let Some(l) = self
                    .receiver
                    .told
                    .iter()
                    .find(|&&l| l != self.saga().lifecycle)
                {
                    return Err(format!(
                        "the receiver was told {l:?}, the saga ended {:?}",
                        self.saga().lifecycle
                    ));
                }
            }
            (want, got) => {
                return Err(format!("callback {got:?} with a receiver {want:?}"));
            }
        }
        if !self.driver.unlogged().is_empty() {
            return Err("settled with events not handed out for the log".into());
        }
        let replayed = Saga::replay(&self.log).map_err(|e| format!("final replay failed: {e}"))?;
        if replayed != *self.saga() {
            return Err(format!(
                "final replay differs:\nlive: {:?}\nreplayed: {replayed:?}",
                self.saga()
            ));
        }
        Ok(())
    }

    fn report(&self, error: &str) -> String {
        let trace: Vec<String> = self
            .trace
            .iter()
            .map(|t| match t {
                Trace::Event(e) => json(e),
                Trace::Note(n) => format!("# {n}"),
            })
            .collect();
        format!(
            "ENGINE_SIM_SEED={seed}: {error}\nreplay: ENGINE_SIM_SEED={seed} cargo test -p coordinator --test engine_properties\nscenario: {:?}\nnow: {}, round: {}, stats: {:?}\nin flight: {:?}, network: {:?}\nparticipants: {:?}\nreceiver: {:?}\nsaga: {:?}\nlog ({} events, {} durable)\ntrace ({} lines):\n{}",
            self.scenario,
            self.now,
            self.round,
            self.stats,
            self.in_flight,
            self.network,
            self.parts,
            self.receiver,
            self.saga(),
            self.log.len(),
            self.durable,
            trace.len(),
            trace.join("\n"),
            seed = self.scenario.seed,
        )
    }
}

/// Who asked for an operator action, as the runtime records it first.
fn operated(action: &str, at: Millis) -> Event {
    Event::Operated {
        action: action.into(),
        by: "sim".into(),
        reason: None,
        at,
    }
}

fn call_ref(step: usize, phase: Phase, attempt: u32) -> CallRef {
    CallRef {
        step,
        phase,
        attempt,
    }
}

fn call_started(call: CallRef, at: Millis) -> Event {
    Event::CallStarted { call, at }
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

/// Runs one seed: its stats, or the failure report (with the seed and the trace).
fn simulate(seed: u64) -> Result<(Stats, String), String> {
    let mut sim = Sim::new(seed)?;
    match sim.run().and_then(|()| sim.check_end()) {
        Ok(()) => Ok((sim.stats, sim.report("ok"))),
        Err(e) => Err(sim.report(&e)),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Under any fault schedule (that eventually stops), every saga settles: committed with every
/// step applied (and confirmed) exactly once, or aborted with every applied step undone; every
/// callback delivered or abandoned after the terminal state was durable; the decision durable
/// before any participant hears of it; illegal events refused without effect; the log replays
/// to the live state. A clean run commits; a rejected step aborts. Over all seeds, the
/// interesting paths must have been reached (so the simulation is not vacuous).
#[test]
fn the_simulation_holds_for_many_seeds() {
    if let Some(seed) = env_u64("ENGINE_SIM_SEED") {
        match simulate(seed) {
            Ok((stats, report)) => println!("{report}\n{stats:?}"),
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let runs = env_u64("ENGINE_SIM_RUNS").unwrap_or(DEFAULT_RUNS);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4)) as u64;
    let results: Vec<(Stats, Vec<(u64, String)>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut total = Stats::default();
                    let mut failures = Vec::new();
                    for seed in (t..runs).step_by(threads as usize) {
                        match simulate(seed) {
                            Ok((stats, _)) => total.add(&stats),
                            Err(report) => failures.push((seed, report)),
                        }
                    }
                    (total, failures)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("simulation thread panicked"))
            .collect()
    });
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for (stats, f) in results {
        total.add(&stats);
        failures.extend(f);
    }
    failures.sort_by_key(|(seed, _)| *seed);
    println!("{runs} seeds, {} failed: {total:?}", failures.len());
    if let Some((_, report)) = failures.first() {
        let seeds: Vec<String> = failures
            .iter()
            .take(30)
            .map(|(_, r)| format!("  {}", r.lines().next().unwrap_or("")))
            .collect();
        panic!(
            "{} of {runs} seeds failed:\n{}\n\nfirst failure:\n{report}",
            failures.len(),
            seeds.join("\n")
        );
    }
    if runs >= 2_000 {
        for (name, n) in total.named() {
            assert!(n > 0, "the simulation never reached {name}: {total:?}");
        }
    }
}

/// Same seed, same run: the simulation is deterministic, so a printed seed replays exactly.
#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 7, 42, 4_242] {
        let a = simulate(seed).map(|(_, trace)| trace);
        let b = simulate(seed).map(|(_, trace)| trace);
        assert_eq!(a, b, "seed {seed} ran differently twice");
    }
}

/// A TCC or SAGA step of participant `p` with no dependencies and a budget of `attempts` for
/// both the forward and the settle phases.
fn plan_step(name: &str, kind: StepKind, attempts: u32) -> PlanStep {
    PlanStep {
        name: name.into(),
        participant: "p".into(),
        action: "/x".into(),
        kind,
        deps: vec![],
        timeout_ms: None,
        retry: RetryPolicy {
            max_attempts: attempts,
            settle_max_attempts: attempts,
            ..RetryPolicy::default()
        },
    }
}

/// The first event of saga `s` of workflow `w` running `steps`, created at 0.
fn created_event(steps: Vec<PlanStep>) -> Event {
    Event::Created(Box::new(Created {
        id: "s".into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({}).into(),
        callback_url: None,
        idempotency_key: None,
        business_key: None,
        callback_max_attempts: coordinator::engine::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan: Plan {
            steps,
            timeout_ms: None,
        }
        .into(),
        at: 0,
    }))
}

/// Found by the simulation: a coordinator restart while the
/// saga is stuck on a rollback leaves a forward call that was outstanding in `Waiting`, and
/// after the operator's retry nothing ever settles it. The saga stays `compensating` forever
/// (`decide` returns nothing) and the forward phase, which may have applied, is never undone.
#[test]
fn restart_while_stuck_rolling_back_still_undoes_outstanding_forward_calls() {
    let a_try = call_ref(0, Phase::Try, 1);
    let b_try = call_ref(1, Phase::Try, 1);
    let b_cancel = call_ref(1, Phase::Cancel, 1);
    let log = [
        created_event(vec![
            plan_step("a", StepKind::Tcc, 1),
            plan_step("b", StepKind::Tcc, 1),
        ]),
        call_started(a_try, 0),
        call_started(b_try, 0),
        call_ended(b_try, CallOutcome::Rejected, 1),
        Event::Decided {
            decision: Decision::Abort {
                reason: "b rejected".into(),
            },
            at: 1,
        },
        call_started(b_cancel, 1),
        call_ended(b_cancel, CallOutcome::Transient, 2),
        Event::Stuck {
            step: 1,
            reason: "b cancel failed".into(),
            at: 2,
        },
        // The coordinator restarts; a's try was outstanding (it may have applied).
        Event::Resumed { at: 3 },
        Event::RetryRequested { at: 4 },
        call_started(b_cancel, 4),
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
                saga.apply(&call_started(*call, now)).unwrap();
                saga.apply(&call_ended(*call, CallOutcome::Ok, now))
                    .unwrap();
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

/// Found by the simulation (seed 1152 with `not_sent_p`): a forward step whose first attempt
/// never left (`NotSent`, so nothing marks it sent) starts attempt 2, which is applied, and
/// the crash loses that lazily written `CallStarted`. After `Resumed` the step looks like it
/// waits for attempt 2 with nothing sent; if the saga then rolls back (here attempt 2 is
/// refused locally), the step is skipped and the participant keeps the effect of the attempt
/// the log lost.
#[test]
fn a_lost_call_start_after_a_never_sent_attempt_is_still_undone() {
    let attempt = |attempt| call_ref(0, Phase::Action, attempt);
    // What sled recovered. Before the crash the log also had `CallStarted` for attempt 2,
    // which was sent and applied by the participant, but never flushed.
    let log = [
        created_event(vec![plan_step("a", StepKind::Saga, 3)]),
        call_started(attempt(1), 0),
        call_ended(attempt(1), CallOutcome::NotSent, 1),
        Event::Resumed { at: 10 },
        call_started(attempt(2), 10),
        call_ended(attempt(2), CallOutcome::Refused, 11),
    ];
    let mut saga = Saga::replay(&log).expect("every event applies");
    let decided = decide(&saga, 11);
    let [
        Command::Record(
            abort @ Event::Decided {
                decision: Decision::Abort { .. },
                ..
            },
        ),
    ] = decided.as_slice()
    else {
        panic!("expected an abort to record, got {decided:?}")
    };
    saga.apply(abort).unwrap();
    assert!(
        saga.steps[0].needs_undo(),
        "attempt 2 may have applied before the crash, so a rollback must compensate step a; \
         it is {:?} (sent: {}) and decide says {:?}",
        saga.steps[0].status,
        saga.steps[0].sent,
        decide(&saga, 12)
    );
}
