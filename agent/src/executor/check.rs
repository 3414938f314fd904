//! The executor's side of `check`: a check looks at every live namespace in slices of
//! [`CHECK_SLICE`], one slice between batches of commands, so that a check of thousands never
//! holds commands up for more than one slice. Checks asked for while one runs wait their turn;
//! the periodic one (`--check-interval`) repairs and tells watchers `repaired`.

use super::{Executor, Replier};
use crate::cmd::{CheckReport, Drift, Response};
use crate::driver::Driver;
use crate::events::Event;
use crate::model::{Namespace, Problem};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Most namespaces looked at between two batches of commands.
pub const CHECK_SLICE: usize = 128;
/// ... and for about this long at most: one look inside costs ~0.3 ms here, so a command waits
/// for a slice of ~15 namespaces (the host's dumps come once per check, at its start).
pub const CHECK_SLICE_TIME: Duration = Duration::from_millis(5);
/// Namespaces per driver call within a slice.
const CHECK_STEP: usize = 8;

/// A check under way.
pub(super) struct Checking {
    repair: bool,
    /// Still to look at (the next slice is taken off the end).
    names: Vec<String>,
    checked: usize,
    drift: Vec<Drift>,
    /// Whom to answer; `None` for the periodic check.
    reply: Option<Replier>,
    started: Instant,
    /// Whether the driver's host dumps must be taken again before the next look.
    fresh: bool,
    /// Namespaces changed by commands since those dumps: their expected state may differ from
    /// what the dumps saw, so this check skips them.
    touched: HashSet<String>,
}

/// Checks: the one running, those waiting, and when the periodic one is due.
#[derive(Default)]
pub(super) struct Checks {
    running: Option<Checking>,
    waiting: VecDeque<(bool, Option<String>, Replier)>,
    /// `None`: no periodic check.
    every: Option<Duration>,
    next: Option<Instant>,
}

impl Checks {
    pub(super) fn new(every: Option<Duration>) -> Self {
        Checks {
            every,
            next: every.map(|d| Instant::now() + d),
            ..Checks::default()
        }
    }

    pub(super) fn running(&self) -> bool {
        self.running.is_some()
    }

    /// Queues a check of every namespace, or of `only` that one.
    pub(super) fn ask(&mut self, repair: bool, only: Option<String>, reply: Replier) {
        self.waiting.push_back((repair, only, reply));
    }

    /// A command changed `name` while a check runs.
    pub(super) fn touched(&mut self, name: &str) {
        if let Some(c) = &mut self.running {
            c.touched.insert(name.to_string());
        }
    }
}

impl<D: Driver> Executor<D> {
    /// Starts the next check if none runs: one asked for, else the periodic one when due.
    pub(super) fn start_check(&mut self) {
        if self.checks.running() {
            return;
        }
        let (repair, only, reply) = match self.checks.waiting.pop_front() {
            Some((repair, only, reply)) => (repair, only, Some(reply)),
            None => match (self.checks.next, self.checks.every) {
                (Some(next), Some(every)) if Instant::now() >= next => {
                    self.checks.next = Some(Instant::now() + every);
                    (true, None, None)
                }
                _ => return,
            },
        };
        let mut names: Vec<String> = match only {
            Some(n) => vec![n],
            None => self.live.keys().cloned().collect(),
        };
        // Descending: slices come off the end, in name order.
        names.sort_unstable_by(|a, b| b.cmp(a));
        self.checks.running = Some(Checking {
            repair,
            names,
            checked: 0,
            drift: vec![],
            reply,
            started: Instant::now(),
            fresh: true,
            touched: HashSet::new(),
        });
    }

    /// Checks (and repairs) one slice; answers once the last is done.
    pub(super) fn check_slice(&mut self) {
        let Some(mut c) = self.checks.running.take() else {
            return;
        };
        let started = Instant::now();
        let mut drifted: Vec<(Namespace, Vec<Problem>)> = vec![];
        let mut looked = 0;
        while !c.names.is_empty() && looked < CHECK_SLICE && started.elapsed() < CHECK_SLICE_TIME {
            let from = c.names.len().saturating_sub(CHECK_STEP);
            let step: Vec<Namespace> = c
                .names
                .split_off(from)
                .iter()
                .rev()
                .filter(|n| !c.touched.contains(*n))
                .filter_map(|n| self.live.get(n).map(|b| Namespace::clone(b)))
                .collect();
            looked += step.len();
            if step.is_empty() {
                continue;
            }
            let found = self.driver.check(&step, std::mem::take(&mut c.fresh));
            c.checked += step.len();
            drifted.extend(step.into_iter().zip(found).filter(|(_, p)| !p.is_empty()));
        }
        for p in drifted.iter().flat_map(|(_, p)| p) {
            self.metrics
                .drift_total
                .with_label_values(&[p.as_str()])
                .inc();
        }
        let after = if c.repair && !drifted.is_empty() {
            // The look after the repair dumps the host again: newer than every change so far.
            c.touched.clear();
            self.repair(&drifted)
        } else {
            drifted.iter().map(|(_, p)| p.clone()).collect()
        };
        for ((ns, problems), left) in drifted.into_iter().zip(after) {
            c.drift.extend(problems.into_iter().map(|problem| Drift {
                name: ns.name.clone(),
                problem,
                repaired: c.repair && !left.contains(&problem),
            }));
        }
        if c.names.is_empty() {
            self.finish_check(c);
        } else {
            self.checks.running = Some(c);
        }
    }

    /// Repairs the drifted namespaces of a slice, then looks again: what is still wrong, per
    /// namespace. A namespace that is gone is let go like one removed from outside.
    fn repair(&mut self, drifted: &[(Namespace, Vec<Problem>)]) -> Vec<Vec<Problem>> {
        let mut again = vec![];
        for (ns, problems) in drifted {
            if problems.iter().any(|p| p.is_gone()) {
                let link_gone = problems.contains(&Problem::HostLinkMissing);
                self.external_removal(&ns.name, link_gone);
            } else if let Err(e) = self.driver.repair(ns) {
                tracing::warn!(name = %ns.name, error = %e, "repair failed");
            } else {
                again.push(ns.clone());
            }
        }
        let mut left = self.driver.check(&again, true).into_iter();
        let mut again = again.iter();
        drifted
            .iter()
            .map(|(ns, problems)| {
                if problems.iter().any(|p| p.is_gone()) {
                    return problems.clone();
                }
                match again.as_slice().first() {
                    Some(a) if a.name == ns.name => {
                        again.next();
                        let left = left.next().unwrap_or_default();
                        if left.len() < problems.len() {
                            tracing::info!(name = %ns.name, ?problems, still = ?left, "repaired drift");
                            self.events.emit(Event::Repaired, ns);
                        }
                        left
                    }
                    _ => problems.clone(),
                }
            })
            .collect()
    }

    fn finish_check(&mut self, mut c: Checking) {
        c.drift
            .sort_by(|a, b| (&a.name, a.problem).cmp(&(&b.name, b.problem)));
        self.metrics
            .check_duration_seconds
            .observe(c.started.elapsed().as_secs_f64());
        if !c.drift.is_empty() {
            tracing::info!(
                checked = c.checked,
                problems = c.drift.len(),
                repaired = c.drift.iter().filter(|d| d.repaired).count(),
                periodic = c.reply.is_none(),
                "check found drift"
            );
        }
        let report = CheckReport {
            clean: c.drift.is_empty(),
            checked: c.checked,
            drift: c.drift,
        };
        if let Some(reply) = c.reply {
            reply.send(Ok(Response::Check(report)));
        }
    }
}
