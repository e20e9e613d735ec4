//! Questions the control thread puts to a worker about the tables only that
//! worker holds (its connections, its natOutgoing translations), and the
//! answers.
//!
//! A worker's tables are its own: no lock guards them on the fast path. So
//! the control thread leaves a question in the worker's mailbox and raises
//! a flag; the worker looks at the flag once per pass of its poll loop
//! (one relaxed load), answers between two bursts, and lowers it. Every
//! question has a number and its answer carries it, so an answer that comes
//! after its asker gave up is never taken for the next question's.

use crate::tables::conntrack::{Connection, State};
use crate::tables::nat::Binding;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the control thread may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Live connections, of one zone and in one state when given; at most
    /// `max` listed.
    Connections {
        zone: Option<u16>,
        state: Option<State>,
        max: usize,
    },
    /// Forget connections: of one zone, or all.
    FlushConnections { zone: Option<u16> },
    /// Live natOutgoing translations, at most `max` listed.
    Bindings { max: usize },
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// How many matched, and the first of them.
    Connections {
        total: usize,
        list: Vec<Connection>,
    },
    /// Live connections forgotten.
    Flushed(usize),
    Bindings {
        total: usize,
        list: Vec<Binding>,
    },
}

/// One worker's mailbox.
#[derive(Default)]
pub struct Mailbox {
    asked: AtomicBool,
    seq: AtomicU64,
    ask: Mutex<Option<(u64, Ask)>>,
    told: Mutex<Option<(u64, Told)>>,
}

impl Mailbox {
    /// Whether a question waits; the worker's one look per pass.
    #[inline(always)]
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }

    /// The worker's side: answers the waiting question with `f`.
    #[cold]
    pub fn answer(&self, f: impl FnOnce(&Ask) -> Told) {
        let Some((seq, ask)) = self.ask.lock().ok().and_then(|mut a| a.take()) else {
            self.asked.store(false, Ordering::Release);
            return;
        };
        let told = f(&ask);
        if let Ok(mut t) = self.told.lock() {
            *t = Some((seq, told));
        }
        self.asked.store(false, Ordering::Release);
    }

    fn put(&self, ask: Ask) -> Option<u64> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        *self.ask.lock().ok()? = Some((seq, ask));
        self.asked.store(true, Ordering::Release);
        Some(seq)
    }

    fn take(&self, seq: u64) -> Option<Told> {
        let mut t = self.told.lock().ok()?;
        match t.take() {
            Some((s, told)) if s == seq => Some(told),
            _ => None,
        }
    }
}

/// Asks every worker the same question; their answers in worker order, or
/// the index of a worker that did not answer within `timeout`.
pub fn ask_all(boxes: &[Mailbox], ask: &Ask, timeout: Duration) -> Result<Vec<Told>, usize> {
    let seqs: Vec<Option<u64>> = boxes.iter().map(|b| b.put(ask.clone())).collect();
    let deadline = Instant::now() + timeout;
    let mut out: Vec<Option<Told>> = boxes.iter().map(|_| None).collect();
    loop {
        for (i, b) in boxes.iter().enumerate() {
            if out[i].is_none() {
                out[i] = seqs[i].and_then(|s| b.take(s));
            }
        }
        if let Some(missing) = out.iter().position(Option::is_none) {
            if Instant::now() >= deadline {
                return Err(missing);
            }
            std::thread::sleep(Duration::from_micros(200));
        } else {
            return Ok(out.into_iter().flatten().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn workers_answer_their_own_question_only() {
        let boxes: Arc<Vec<Mailbox>> = Arc::new((0..2).map(|_| Mailbox::default()).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = |me: usize| {
            let (boxes, stop) = (boxes.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if boxes[me].asked() {
                        boxes[me].answer(|a| match a {
                            Ask::Bindings { max } => Told::Flushed(*max + me),
                            _ => Told::Flushed(0),
                        });
                    }
                    std::thread::yield_now();
                }
            })
        };
        let threads = [worker(0), worker(1)];
        let told = ask_all(&boxes, &Ask::Bindings { max: 10 }, Duration::from_secs(5));
        assert_eq!(told, Ok(vec![Told::Flushed(10), Told::Flushed(11)]));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("worker thread");
        }
        // nobody answers now: the asker gives up, and the stale question's
        // late answer is not taken for the next one
        assert_eq!(
            ask_all(
                &boxes[..1],
                &Ask::Bindings { max: 1 },
                Duration::from_millis(20)
            ),
            Err(0)
        );
        boxes[0].answer(|_| Told::Flushed(99));
        let late = std::thread::spawn({
            let boxes = boxes.clone();
            move || {
                while !boxes[0].asked() {
                    std::thread::yield_now();
                }
                boxes[0].answer(|_| Told::Flushed(7));
            }
        });
        let told = ask_all(
            &boxes[..1],
            &Ask::Bindings { max: 2 },
            Duration::from_secs(5),
        );
        late.join().expect("late worker");
        assert_eq!(told, Ok(vec![Told::Flushed(7)]));
    }
}
