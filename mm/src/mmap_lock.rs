//! The mmap lock (`include/linux/mmap_lock.h`; `mmap_sem` before 5.8):
//! `mmap_read_lock`/`mmap_read_unlock` of the current task over the
//! rw-semaphore model of [`crate::sync`], which reports a task that would
//! sleep forever (a deadlock in the wait-for graph) or is merely blocked.

use vmemu_arch::Arch;

use crate::errno::Errno;
use crate::event::EventKind;
use crate::mm::Machine;
use crate::sync::{Acquire, MmId};

impl<A: Arch> Machine<A> {
    /// `mmap_read_lock(mm)` of the current task through the lock model.
    /// A task that would sleep is reported (deadlock or blocked) and the
    /// caller gets `EDEADLK`, the emulator's stand-in for "never returns".
    pub fn mmap_read_lock(&mut self, mm: MmId) -> Result<(), Errno> {
        let task = self.current;
        match self.locks.down_read(task, mm) {
            Ok(Acquire::Granted) => Ok(()),
            Ok(Acquire::Queued) => {
                match self.locks.deadlock() {
                    Some(d) => self.event(EventKind::Deadlock, d.to_string()),
                    None => self.event(
                        EventKind::Blocked,
                        format!("{task} sleeps in down_read({mm:?})"),
                    ),
                }
                Err(Errno::EDEADLK)
            }
            Err(e) => {
                self.event(EventKind::KernelBug, e.to_string());
                Err(Errno::EDEADLK)
            }
        }
    }

    /// `mmap_read_unlock(mm)` of the current task.
    pub fn mmap_read_unlock(&mut self, mm: MmId) {
        let task = self.current;
        if let Err(e) = self.locks.up_read(task, mm) {
            self.event(EventKind::KernelBug, e.to_string());
        }
    }

    /// Whether the current task holds `mmap_sem` of `mm`.
    #[must_use]
    pub fn holds_mmap_sem(&self, mm: MmId) -> bool {
        self.locks.holds_mmap_sem(self.current, mm)
    }
}
