//! Sleeping locks — `mmap_sem` and the page lock — modelled so that a deadlock is an
//! outcome to report, not a hang.
//!
//! Every operation returns at once: an acquire that would sleep puts the task on the
//! lock's FIFO wait list and returns [`Acquire::Queued`]; a release hands the lock to the
//! waiters that may now run and returns them. [`LockModel::deadlock`] searches the
//! wait-for graph for a cycle among sleeping tasks.
//!
//! `mmap_sem` (`mm->mmap_sem`, renamed `mmap_lock` in 5.8) is an `rw_semaphore`. The rule
//! modelled (spec `arch-and-gup.md` §8): `down_read` is admitted at once only if no writer
//! holds the rwsem **and no waiter is queued**; otherwise the reader queues FIFO, even when
//! only readers hold it. `down_write` queues FIFO and is granted when no holder remains.
//! A release grants from the head of the queue: a run of readers together, or one writer.
//!
//! * v4.10 (`kernel/locking/rwsem-xadd.c`): adding the read bias yields a negative count
//!   when a writer is active or waiters exist, so the reader takes the slow path, joins the
//!   wait list and sleeps until granted in order.
//! * 6.13 (`kernel/locking/rwsem.c`): the fast path fails when waiters exist; in the slow
//!   path a reader may steal a reader-owned lock, but not when more than one reader is
//!   counted — which is exactly the recursive case (outer hold plus this attempt) — nor
//!   while a handoff is pending. So the recursive reader queues.
//!
//! Both therefore deadlock the same way when a task holding `mmap_sem` for read calls
//! `down_read` again after another task queued `down_write` (mmap, munmap, mprotect) in
//! between: the writer waits for the outer hold, the inner reader waits behind the writer.
//! One model serves both versions. (Later kernels may also wake readers queued behind a
//! writer; that changes no outcome modelled here and is not modelled.)
//!
//! The `_killable` variants only mark the wait as abortable by SIGKILL ([`LockModel::kill`],
//! the caller then sees `-EINTR`); they do not remove the deadlock. v4.10 has
//! `down_write_killable` but no `down_read_killable`; 6.x wraps them as
//! `mmap_{read,write}_lock_killable`.
//!
//! The page lock (`lock_page`, `trylock_page`, `unlock_page`) is one bit per page: one
//! holder, FIFO waiters. It has no owner in the kernel (I/O completion unlocks pages locked
//! by the submitter), so any task may `unlock_page`; the locker is recorded only to draw
//! the wait-for graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// An emulated task (thread).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TaskId(pub u32);

/// An emulated `mm_struct`, i.e. one address space and its `mmap_sem`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MmId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

impl fmt::Display for MmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mm{}", self.0)
    }
}

/// A sleeping lock: an mm's `mmap_sem` or the lock of one page (by frame number).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum LockId {
    /// `mm->mmap_sem` / `mm->mmap_lock`.
    MmapSem(MmId),
    /// `PG_locked` of the page with this frame number.
    Page(u64),
    /// The answer to a request one task sent and sleeps on until another
    /// task answers it (fuse `request_wait_answer` until `request_end`). The
    /// task that took the request off the queue to serve it holds it.
    Request(u64),
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockId::MmapSem(mm) => write!(f, "mmap_sem({mm})"),
            LockId::Page(pfn) => write!(f, "page lock(pfn {pfn:#x})"),
            LockId::Request(n) => write!(f, "answer to request #{n}"),
        }
    }
}

/// Shared (`down_read`) or exclusive (`down_write`, and every page lock).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Mode {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Read => "read",
            Mode::Write => "write",
        })
    }
}

/// Result of an acquire that would otherwise sleep.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Acquire {
    /// The lock is held on return.
    Granted,
    /// The task sleeps on the lock's wait list until a release grants it.
    Queued,
}

/// Misuse of the lock API; the model state is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SyncError {
    /// The task is asleep waiting for `lock` and cannot call anything.
    Blocked { task: TaskId, lock: LockId },
    /// `up_read`/`up_write` by a task not holding the rwsem in that mode.
    NotHeld {
        task: TaskId,
        lock: LockId,
        mode: Mode,
    },
    /// `unlock_page` of a page that is not locked.
    NotLocked { pfn: u64 },
    /// `kill` of a task that is not in a killable wait.
    NotKillable { task: TaskId },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Blocked { task, lock } => write!(f, "{task} is asleep waiting for {lock}"),
            SyncError::NotHeld { task, lock, mode } => {
                write!(f, "{task} releases {lock} {mode} without holding it")
            }
            SyncError::NotLocked { pfn } => write!(f, "unlock_page of unlocked pfn {pfn:#x}"),
            SyncError::NotKillable { task } => write!(f, "{task} is not in a killable wait"),
        }
    }
}

impl std::error::Error for SyncError {}

/// Why a sleeping task cannot proceed past another task.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Blocker {
    /// The other task holds the lock in this mode.
    Held(Mode),
    /// The other task is queued ahead (FIFO / rwsem fairness) wanting this mode.
    QueuedAhead(Mode),
}

/// One edge of a wait-for cycle: `task` waits for `lock` in `mode` because of `blocker`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DeadlockStep {
    /// The sleeping task.
    pub task: TaskId,
    /// The lock it sleeps on.
    pub lock: LockId,
    /// The mode it asked for (always `Write` for a page lock).
    pub mode: Mode,
    /// The wait was entered with a `_killable` variant (SIGKILL would break the cycle).
    pub killable: bool,
    /// The task it cannot get past (the next step's task).
    pub blocker: TaskId,
    /// Whether `blocker` holds the lock or is queued ahead.
    pub reason: Blocker,
}

/// Describes a wait (`mmap_sem(mm0) write (killable)`); pages have no mode.
fn describe(lock: LockId, mode: Mode, killable: bool) -> String {
    let mode = match lock {
        LockId::MmapSem(_) => format!(" {mode}"),
        LockId::Page(_) | LockId::Request(_) => String::new(),
    };
    let killable = if killable { " (killable)" } else { "" };
    format!("{lock}{mode}{killable}")
}

impl fmt::Display for DeadlockStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, mode) = match self.reason {
            Blocker::Held(m) => ("held by", m),
            Blocker::QueuedAhead(m) => ("queued behind", m),
        };
        let want = describe(self.lock, self.mode, self.killable);
        write!(f, "{} waits for {want}: {what} {}", self.task, self.blocker)?;
        match self.lock {
            LockId::MmapSem(_) => write!(f, " ({mode})"),
            LockId::Page(_) | LockId::Request(_) => Ok(()),
        }
    }
}

/// A cycle in the wait-for graph, starting at its lowest-numbered task.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Deadlock {
    /// Each step's `blocker` is the next step's `task`; the last wraps to the first.
    pub steps: Vec<DeadlockStep>,
}

impl Deadlock {
    /// The tasks in the cycle, in cycle order.
    #[must_use]
    pub fn tasks(&self) -> Vec<TaskId> {
        self.steps.iter().map(|s| s.task).collect()
    }

    /// Whether some wait in the cycle is killable (a SIGKILL would break it).
    #[must_use]
    pub fn killable(&self) -> bool {
        self.steps.iter().any(|s| s.killable)
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        write!(f, "deadlock: {}", steps.join("; "))
    }
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    task: TaskId,
    mode: Mode,
    killable: bool,
}

/// One sleeping lock: holders plus FIFO wait list. A page lock only uses `Mode::Write`.
#[derive(Clone, Debug, Default)]
struct Lock {
    /// Read holders, one entry per hold (recursion allowed).
    readers: Vec<TaskId>,
    writer: Option<TaskId>,
    queue: VecDeque<Waiter>,
}

impl Lock {
    fn compatible(&self, mode: Mode) -> bool {
        self.writer.is_none() && (mode == Mode::Read || self.readers.is_empty())
    }

    fn grant(&mut self, task: TaskId, mode: Mode) {
        match mode {
            Mode::Read => self.readers.push(task),
            Mode::Write => self.writer = Some(task),
        }
    }

    /// Grants from the head of the queue: a run of readers, or one writer.
    fn wake(&mut self) -> Vec<TaskId> {
        let mut granted = Vec::new();
        while let Some(w) = self.queue.front().copied() {
            if !self.compatible(w.mode) {
                break;
            }
            self.queue.pop_front();
            self.grant(w.task, w.mode);
            granted.push(w.task);
        }
        granted
    }

    fn idle(&self) -> bool {
        self.readers.is_empty() && self.writer.is_none() && self.queue.is_empty()
    }

    /// The tasks waiter `i` must get past, in order: conflicting holders, then conflicting
    /// waiters queued ahead of it.
    fn blockers(&self, i: usize) -> Vec<(TaskId, Blocker)> {
        let w = self.queue[i];
        let mut out: Vec<(TaskId, Blocker)> = Vec::new();
        let mut push = |t, b| {
            if !out.iter().any(|&(o, _)| o == t) {
                out.push((t, b));
            }
        };
        if let Some(t) = self.writer {
            push(t, Blocker::Held(Mode::Write));
        }
        if w.mode == Mode::Write {
            for &t in &self.readers {
                push(t, Blocker::Held(Mode::Read));
            }
        }
        for a in self.queue.iter().take(i) {
            if w.mode == Mode::Write || a.mode == Mode::Write {
                push(a.task, Blocker::QueuedAhead(a.mode));
            }
        }
        out
    }
}

/// Every `mmap_sem` and page lock of the emulation; no operation ever blocks the caller.
#[derive(Clone, Debug, Default)]
pub struct LockModel {
    locks: BTreeMap<LockId, Lock>,
}

impl LockModel {
    /// No lock held, nobody waiting.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The lock `task` sleeps on, with its wait entry.
    fn waiting(&self, task: TaskId) -> Option<(LockId, Waiter)> {
        self.locks
            .iter()
            .find_map(|(&id, l)| l.queue.iter().find(|w| w.task == task).map(|&w| (id, w)))
    }

    fn runnable(&self, task: TaskId) -> Result<(), SyncError> {
        match self.waiting(task) {
            Some((lock, _)) => Err(SyncError::Blocked { task, lock }),
            None => Ok(()),
        }
    }

    fn acquire(
        &mut self,
        task: TaskId,
        id: LockId,
        mode: Mode,
        killable: bool,
    ) -> Result<Acquire, SyncError> {
        self.runnable(task)?;
        let lock = self.locks.entry(id).or_default();
        if lock.queue.is_empty() && lock.compatible(mode) {
            lock.grant(task, mode);
            Ok(Acquire::Granted)
        } else {
            lock.queue.push_back(Waiter {
                task,
                mode,
                killable,
            });
            Ok(Acquire::Queued)
        }
    }

    fn try_acquire(&mut self, task: TaskId, id: LockId, mode: Mode) -> Result<bool, SyncError> {
        self.runnable(task)?;
        let lock = self.locks.entry(id).or_default();
        let ok = lock.queue.is_empty() && lock.compatible(mode);
        if ok {
            lock.grant(task, mode);
        }
        Ok(ok)
    }

    fn release(&mut self, task: TaskId, id: LockId, mode: Mode) -> Result<Vec<TaskId>, SyncError> {
        self.runnable(task)?;
        let not_held = match id {
            LockId::Page(pfn) => SyncError::NotLocked { pfn },
            LockId::MmapSem(_) | LockId::Request(_) => SyncError::NotHeld {
                task,
                lock: id,
                mode,
            },
        };
        let lock = self.locks.get_mut(&id).ok_or(not_held)?;
        match (id, mode) {
            (LockId::Page(_), _) if lock.writer.is_none() => return Err(not_held),
            (LockId::Page(_) | LockId::Request(_), _) => lock.writer = None,
            (_, Mode::Write) if lock.writer != Some(task) => return Err(not_held),
            (_, Mode::Write) => lock.writer = None,
            (_, Mode::Read) => {
                let i = lock
                    .readers
                    .iter()
                    .position(|&t| t == task)
                    .ok_or(not_held)?;
                lock.readers.remove(i);
            }
        }
        let granted = lock.wake();
        if lock.idle() {
            self.locks.remove(&id);
        }
        Ok(granted)
    }

    /// `down_read(&mm->mmap_sem)` / `mmap_read_lock(mm)`.
    pub fn down_read(&mut self, task: TaskId, mm: MmId) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::MmapSem(mm), Mode::Read, false)
    }

    /// `down_write(&mm->mmap_sem)` / `mmap_write_lock(mm)`.
    pub fn down_write(&mut self, task: TaskId, mm: MmId) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::MmapSem(mm), Mode::Write, false)
    }

    /// `down_read_killable` / `mmap_read_lock_killable` (not in v4.10).
    pub fn down_read_killable(&mut self, task: TaskId, mm: MmId) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::MmapSem(mm), Mode::Read, true)
    }

    /// `down_write_killable` / `mmap_write_lock_killable`.
    pub fn down_write_killable(&mut self, task: TaskId, mm: MmId) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::MmapSem(mm), Mode::Write, true)
    }

    /// `down_read_trylock` / `mmap_read_trylock`: never queues.
    pub fn down_read_trylock(&mut self, task: TaskId, mm: MmId) -> Result<bool, SyncError> {
        self.try_acquire(task, LockId::MmapSem(mm), Mode::Read)
    }

    /// `up_read`; returns the tasks granted as a result, in grant order.
    pub fn up_read(&mut self, task: TaskId, mm: MmId) -> Result<Vec<TaskId>, SyncError> {
        self.release(task, LockId::MmapSem(mm), Mode::Read)
    }

    /// `up_write`; returns the tasks granted as a result, in grant order.
    pub fn up_write(&mut self, task: TaskId, mm: MmId) -> Result<Vec<TaskId>, SyncError> {
        self.release(task, LockId::MmapSem(mm), Mode::Write)
    }

    /// `lock_page`.
    pub fn lock_page(&mut self, task: TaskId, pfn: u64) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::Page(pfn), Mode::Write, false)
    }

    /// `lock_page_killable`.
    pub fn lock_page_killable(&mut self, task: TaskId, pfn: u64) -> Result<Acquire, SyncError> {
        self.acquire(task, LockId::Page(pfn), Mode::Write, true)
    }

    /// `trylock_page`: true if the page was unlocked and is now locked by `task`.
    pub fn trylock_page(&mut self, task: TaskId, pfn: u64) -> Result<bool, SyncError> {
        self.try_acquire(task, LockId::Page(pfn), Mode::Write)
    }

    /// `unlock_page` (by any task); returns the waiter granted, if any.
    pub fn unlock_page(&mut self, task: TaskId, pfn: u64) -> Result<Vec<TaskId>, SyncError> {
        self.release(task, LockId::Page(pfn), Mode::Write)
    }

    /// The requester sleeps until request `id` is answered
    /// (`request_wait_answer`): it always queues, behind whoever serves the
    /// request (no one yet while the request is pending).
    pub fn request_wait(&mut self, task: TaskId, id: u64) -> Result<Acquire, SyncError> {
        self.runnable(task)?;
        self.locks
            .entry(LockId::Request(id))
            .or_default()
            .queue
            .push_back(Waiter {
                task,
                mode: Mode::Write,
                killable: false,
            });
        Ok(Acquire::Queued)
    }

    /// `task` takes request `id` off the queue to serve it (a read of
    /// `/dev/fuse`): until it answers, the requester waits for it.
    pub fn request_claim(&mut self, task: TaskId, id: u64) -> Result<(), SyncError> {
        self.runnable(task)?;
        self.locks.entry(LockId::Request(id)).or_default().writer = Some(task);
        Ok(())
    }

    /// Request `id` is answered (`request_end`, by any task): every task
    /// sleeping on it wakes; returns them.
    pub fn request_answer(&mut self, id: u64) -> Vec<TaskId> {
        self.locks
            .remove(&LockId::Request(id))
            .map(|l| l.queue.iter().map(|w| w.task).collect())
            .unwrap_or_default()
    }

    /// Emulator only, after a reported deadlock: takes `task` out of the model
    /// — its waits are cancelled and every lock it holds is released — so the
    /// run can go on. The kernel would stay stuck. Returns the tasks granted
    /// as a result.
    pub fn abandon(&mut self, task: TaskId) -> Vec<TaskId> {
        let mut granted = Vec::new();
        let ids: Vec<LockId> = self.locks.keys().copied().collect();
        for id in ids {
            let Some(lock) = self.locks.get_mut(&id) else {
                continue;
            };
            lock.queue.retain(|w| w.task != task);
            lock.readers.retain(|&t| t != task);
            if lock.writer == Some(task) {
                lock.writer = None;
            }
            if !matches!(id, LockId::Request(_)) {
                granted.extend(lock.wake());
            }
            if lock.idle() {
                self.locks.remove(&id);
            }
        }
        granted
    }

    /// SIGKILL to a task in a killable wait: it leaves the queue (its `_killable` call
    /// returns `-EINTR`) and waiters it held back may be granted; returns those.
    pub fn kill(&mut self, task: TaskId) -> Result<Vec<TaskId>, SyncError> {
        let not_killable = SyncError::NotKillable { task };
        let (id, w) = self.waiting(task).ok_or(not_killable)?;
        let lock = self.locks.get_mut(&id).ok_or(not_killable)?;
        if !w.killable {
            return Err(not_killable);
        }
        lock.queue.retain(|w| w.task != task);
        let granted = lock.wake();
        if lock.idle() {
            self.locks.remove(&id);
        }
        Ok(granted)
    }

    /// Whether `task` sleeps on some lock.
    #[must_use]
    pub fn is_blocked(&self, task: TaskId) -> bool {
        self.waiting(task).is_some()
    }

    /// Whether `task` holds `mm`'s `mmap_sem` in either mode.
    #[must_use]
    pub fn holds_mmap_sem(&self, task: TaskId, mm: MmId) -> bool {
        self.locks
            .get(&LockId::MmapSem(mm))
            .is_some_and(|l| l.writer == Some(task) || l.readers.contains(&task))
    }

    /// Whether `task` locked the page.
    #[must_use]
    pub fn holds_page(&self, task: TaskId, pfn: u64) -> bool {
        self.locks
            .get(&LockId::Page(pfn))
            .is_some_and(|l| l.writer == Some(task))
    }

    /// Sleeping tasks and what they wait for, by task id.
    #[must_use]
    pub fn blocked(&self) -> Vec<(TaskId, String)> {
        let mut out: Vec<(TaskId, String)> = self
            .locks
            .iter()
            .flat_map(|(&id, l)| {
                l.queue
                    .iter()
                    .map(move |w| (w.task, describe(id, w.mode, w.killable)))
            })
            .collect();
        out.sort();
        out
    }

    /// The locks `task` holds (`mmap_sem(mm0) read x2`, `page lock(pfn 0x10)`).
    #[must_use]
    pub fn held_by(&self, task: TaskId) -> Vec<String> {
        let mut out = Vec::new();
        for (&id, l) in &self.locks {
            if l.writer == Some(task) {
                out.push(describe(id, Mode::Write, false));
            }
            match l.readers.iter().filter(|&&t| t == task).count() {
                0 => {}
                1 => out.push(describe(id, Mode::Read, false)),
                n => out.push(format!("{} x{n}", describe(id, Mode::Read, false))),
            }
        }
        out
    }

    /// Finds a cycle among sleeping tasks in the wait-for graph, if any.
    #[must_use]
    pub fn deadlock(&self) -> Option<Deadlock> {
        let mut graph: BTreeMap<TaskId, Vec<DeadlockStep>> = BTreeMap::new();
        for (&lock, l) in &self.locks {
            for (i, w) in l.queue.iter().enumerate() {
                let steps = l
                    .blockers(i)
                    .into_iter()
                    .map(|(blocker, reason)| DeadlockStep {
                        task: w.task,
                        lock,
                        mode: w.mode,
                        killable: w.killable,
                        blocker,
                        reason,
                    });
                graph.entry(w.task).or_default().extend(steps);
            }
        }
        let mut done = BTreeSet::new();
        let mut path = Vec::new();
        for &start in graph.keys() {
            if let Some(mut steps) = cycle_from(&graph, start, &mut path, &mut done) {
                let first = (0..steps.len()).min_by_key(|&i| steps[i].task).unwrap_or(0);
                steps.rotate_left(first);
                return Some(Deadlock { steps });
            }
        }
        None
    }
}

/// Depth-first search; `path` holds the edges taken from the root to `task`.
fn cycle_from(
    graph: &BTreeMap<TaskId, Vec<DeadlockStep>>,
    task: TaskId,
    path: &mut Vec<DeadlockStep>,
    done: &mut BTreeSet<TaskId>,
) -> Option<Vec<DeadlockStep>> {
    if let Some(i) = path.iter().position(|s| s.task == task) {
        return Some(path[i..].to_vec());
    }
    if done.contains(&task) {
        return None;
    }
    for step in graph.get(&task).into_iter().flatten() {
        path.push(*step);
        if let Some(c) = cycle_from(graph, step.blocker, path, done) {
            return Some(c);
        }
        path.pop();
    }
    done.insert(task);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TaskId = TaskId(1);
    const B: TaskId = TaskId(2);
    const C: TaskId = TaskId(3);
    const D: TaskId = TaskId(4);
    const E: TaskId = TaskId(5);
    const MM: MmId = MmId(0);
    use Acquire::{Granted, Queued};

    #[test]
    fn recursive_reader_behind_queued_writer_deadlocks() {
        let mut m = LockModel::new();
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.down_write(B, MM), Ok(Queued));
        assert!(m.deadlock().is_none());
        assert_eq!(m.down_read(A, MM), Ok(Queued));
        let d = m.deadlock().unwrap();
        assert_eq!(d.tasks(), vec![A, B]);
        assert!(!d.killable());
        assert_eq!(
            d.to_string(),
            "deadlock: task 1 waits for mmap_sem(mm0) read: queued behind task 2 (write); \
             task 2 waits for mmap_sem(mm0) write: held by task 1 (read)"
        );
        assert_eq!(
            m.blocked(),
            vec![
                (A, "mmap_sem(mm0) read".into()),
                (B, "mmap_sem(mm0) write".into())
            ]
        );
        assert!(m.holds_mmap_sem(A, MM) && !m.holds_mmap_sem(B, MM));
    }

    #[test]
    fn recursive_read_without_writer_is_fine() {
        let mut m = LockModel::new();
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.held_by(A), vec!["mmap_sem(mm0) read x2".to_string()]);
        assert_eq!(m.down_write(B, MM), Ok(Queued));
        assert!(m.deadlock().is_none());
        assert_eq!(m.up_read(A, MM), Ok(vec![]));
        assert_eq!(m.up_read(A, MM), Ok(vec![B]));
        assert!(m.holds_mmap_sem(B, MM) && m.blocked().is_empty());
    }

    #[test]
    fn grants_in_fifo_order() {
        let mut m = LockModel::new();
        assert_eq!(m.down_write(A, MM), Ok(Granted));
        for (t, write) in [(B, false), (C, false), (D, true), (E, false)] {
            let r = if write {
                m.down_write(t, MM)
            } else {
                m.down_read(t, MM)
            };
            assert_eq!(r, Ok(Queued));
        }
        assert_eq!(m.up_write(A, MM), Ok(vec![B, C]));
        assert_eq!(m.up_read(B, MM), Ok(vec![]));
        assert_eq!(m.up_read(C, MM), Ok(vec![D]));
        assert_eq!(m.up_write(D, MM), Ok(vec![E]));
        assert_eq!(m.up_read(E, MM), Ok(vec![]));
        assert!(m.held_by(E).is_empty() && m.locks.is_empty());
    }

    #[test]
    fn reader_waits_behind_queued_writer_while_only_readers_hold() {
        let mut m = LockModel::new();
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.down_write(B, MM), Ok(Queued));
        assert_eq!(m.down_read(C, MM), Ok(Queued));
        assert_eq!(m.down_read_trylock(D, MM), Ok(false));
        assert!(m.deadlock().is_none());
        assert_eq!(m.up_read(A, MM), Ok(vec![B]));
        assert_eq!(m.up_write(B, MM), Ok(vec![C]));
    }

    #[test]
    fn page_lock_vs_mmap_sem_abba() {
        let p = 0x1234;
        let mut m = LockModel::new();
        assert_eq!(m.lock_page(A, p), Ok(Granted));
        assert_eq!(m.down_read(B, MM), Ok(Granted));
        assert_eq!(m.down_write(A, MM), Ok(Queued));
        assert!(m.deadlock().is_none());
        assert_eq!(m.lock_page(B, p), Ok(Queued));
        let d = m.deadlock().unwrap();
        assert_eq!(
            d.to_string(),
            "deadlock: task 1 waits for mmap_sem(mm0) write: held by task 2 (read); \
             task 2 waits for page lock(pfn 0x1234): held by task 1"
        );
        assert_eq!(m.held_by(A), vec!["page lock(pfn 0x1234)".to_string()]);
    }

    #[test]
    fn page_lock_fifo_and_trylock() {
        let mut m = LockModel::new();
        assert_eq!(m.lock_page(A, 7), Ok(Granted));
        assert_eq!(m.trylock_page(B, 7), Ok(false));
        assert_eq!(m.lock_page(B, 7), Ok(Queued));
        assert_eq!(m.lock_page(C, 7), Ok(Queued));
        assert_eq!(m.unlock_page(A, 7), Ok(vec![B]));
        assert_eq!(
            m.unlock_page(D, 7),
            Ok(vec![C]),
            "any task may unlock a page"
        );
        assert_eq!(m.unlock_page(C, 7), Ok(vec![]));
        assert_eq!(m.trylock_page(D, 7), Ok(true));
        assert!(m.holds_page(D, 7));
    }

    #[test]
    fn self_deadlock_and_killable() {
        let mut m = LockModel::new();
        assert_eq!(m.down_write(A, MM), Ok(Granted));
        assert_eq!(m.down_read_killable(A, MM), Ok(Queued));
        let d = m.deadlock().unwrap();
        assert!(d.killable());
        assert_eq!(
            d.to_string(),
            "deadlock: task 1 waits for mmap_sem(mm0) read (killable): held by task 1 (write)"
        );
        assert_eq!(m.kill(A), Ok(vec![]));
        assert!(m.deadlock().is_none());
        // Killing a queued writer lets the readers behind it in.
        let mut m = LockModel::new();
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.down_write_killable(B, MM), Ok(Queued));
        assert_eq!(m.down_read(C, MM), Ok(Queued));
        assert_eq!(m.kill(C), Err(SyncError::NotKillable { task: C }));
        assert_eq!(m.kill(B), Ok(vec![C]));
    }

    #[test]
    fn request_wait_and_page_lock_cycle() {
        // fuse (thread point I): task 1 faults on a fuse mapping, locks the
        // page and sleeps until its READ request is answered; task 2 takes the
        // request to serve it and, copying the reply from the same mapping,
        // waits for the page lock.
        let p = 0x42;
        let mut m = LockModel::new();
        assert_eq!(m.lock_page(A, p), Ok(Granted));
        assert_eq!(m.request_wait(A, 1), Ok(Queued));
        // Pending, nobody serves it yet: a wait, not a cycle.
        assert!(m.deadlock().is_none());
        assert_eq!(m.request_claim(B, 1), Ok(()));
        assert!(m.deadlock().is_none());
        assert_eq!(m.lock_page(B, p), Ok(Queued));
        let d = m.deadlock().unwrap();
        assert_eq!(
            d.to_string(),
            "deadlock: task 1 waits for answer to request #1: held by task 2; \
             task 2 waits for page lock(pfn 0x42): held by task 1"
        );
        // The abort answers the request: task 1 wakes, unlocks the page, and
        // task 2 is granted it.
        assert_eq!(m.request_answer(1), vec![A]);
        assert_eq!(m.unlock_page(A, p), Ok(vec![B]));
        assert!(m.deadlock().is_none() && m.blocked().is_empty());
    }

    #[test]
    fn abandon_unwinds_a_deadlocked_task() {
        let mut m = LockModel::new();
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(m.down_write(B, MM), Ok(Queued));
        assert_eq!(m.down_read(A, MM), Ok(Queued));
        assert!(m.deadlock().is_some());
        // Taking task 1 out releases its read hold: the writer is granted.
        assert_eq!(m.abandon(A), vec![B]);
        assert!(m.deadlock().is_none() && m.holds_mmap_sem(B, MM));
        assert_eq!(m.up_write(B, MM), Ok(vec![]));
        assert!(m.locks.is_empty());
    }

    #[test]
    fn misuse_is_an_error() {
        let mut m = LockModel::new();
        let lock = LockId::MmapSem(MM);
        assert_eq!(
            m.up_read(A, MM),
            Err(SyncError::NotHeld {
                task: A,
                lock,
                mode: Mode::Read
            })
        );
        assert_eq!(m.unlock_page(A, 9), Err(SyncError::NotLocked { pfn: 9 }));
        assert_eq!(m.down_read(A, MM), Ok(Granted));
        assert_eq!(
            m.up_write(A, MM),
            Err(SyncError::NotHeld {
                task: A,
                lock,
                mode: Mode::Write
            })
        );
        assert_eq!(
            m.up_read(B, MM),
            Err(SyncError::NotHeld {
                task: B,
                lock,
                mode: Mode::Read
            })
        );
        assert_eq!(m.down_write(B, MM), Ok(Queued));
        let e = m.lock_page(B, 9).unwrap_err();
        assert_eq!(e, SyncError::Blocked { task: B, lock });
        let e: &dyn std::error::Error = &e;
        assert_eq!(e.to_string(), "task 2 is asleep waiting for mmap_sem(mm0)");
        assert_eq!(m.kill(D), Err(SyncError::NotKillable { task: D }));
        assert!(m.held_by(B).is_empty() && m.holds_mmap_sem(A, MM));
    }
}
