//! The one table of workload functions: for every `[VAR =] FUNCTION(ARGS)`
//! statement its name, the kinds of its arguments, the shape of its result,
//! the profiles where it exists and the executor family that runs it.
//!
//! This module is data and types only: the parser (`lang`) resolves every
//! name against [`CALLS`] and builds typed statements, the linter
//! (`lint`) checks arguments and availability from it without running, and
//! the runner dispatches on [`CallDef::family`]. Nothing here imports an
//! executor.

use vmemu_mm::profile::Knobs;

/// What an argument must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArgKind {
    /// A user or kernel address expression.
    Addr,
    /// A length, size, position or count expression.
    Count,
    /// A page count (`nr_pages`): an `int`, not negative.
    NrPages,
    /// A byte value expression.
    Byte,
    /// `FOLL_*` names joined with `|`, or `0`.
    Foll,
    /// `PROT_*` names joined with `|`, or `0`.
    Prot,
    /// The name of an iterator (`iter NAME ...`).
    Iter,
    /// The name of a pipe (`pipe NAME`).
    Pipe,
    /// The name of a file (`file NAME ...`).
    File,
    /// A descriptor: a pipe, a file or a result variable holding one.
    Fd,
    /// A process: a result variable holding a pid, or an expression.
    Pid,
    /// A result variable holding pages (a gup result).
    Result,
    /// A fuse request id: a number or a result variable.
    Req,
    /// `O_DIRECT`, `SPLICE_F_*` or a number.
    OpenFlags,
    /// One of a fixed set of words.
    Word(&'static [&'static str]),
}

impl ArgKind {
    /// How an error message names the kind.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            ArgKind::Addr => "an address",
            ArgKind::Count => "a number",
            ArgKind::NrPages => "a page count",
            ArgKind::Byte => "a byte value",
            ArgKind::Foll => "FOLL_* flags joined with `|`, or 0",
            ArgKind::Prot => "PROT_* protections joined with `|`, or 0",
            ArgKind::Iter => "an iterator name",
            ArgKind::Pipe => "a pipe name",
            ArgKind::File => "a file name",
            ArgKind::Fd => "a pipe, a file or a descriptor variable",
            ArgKind::Pid => "a process (a pid variable)",
            ArgKind::Result => "a gup result variable",
            ArgKind::Req => "a request id",
            ArgKind::OpenFlags => "O_DIRECT, SPLICE_F_* or a number",
            ArgKind::Word(_) => "a word",
        }
    }
}

/// What a call's result variable holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// A return value (`-errno` on failure).
    Ret,
    /// Pages taken (references or pins) and the return value.
    Pages,
    /// Pages, the return value and `.start` (iov_iter page gathering).
    PagesStart,
    /// A descriptor or pid.
    Handle,
}

/// Which executor runs a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    /// gup and uaccess on the current mm (`mm/gup.c`, `lib/usercopy.c`, mmap).
    Mm,
    /// `iov_iter` primitives on one iterator (`lib/iov_iter.c`).
    Iter,
    /// The pipe-buffer paths of `fs/splice.c` and `fs/pipe.c`.
    Pipe,
    /// The `sys_*` system calls and processes.
    Syscall,
    /// Caller models: kernel code consuming iov_iter pages.
    Caller,
    /// Statements of the known-bug replays.
    Bug,
}

/// Where a call exists: a profile knob the linter and the runner evaluate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exists {
    /// In every profile (a call that fails in some returns an errno there).
    Always,
    /// Only where the non-advancing `iov_iter_get_pages*` exist (before 6.0).
    GetPages1,
    /// Only where `iov_iter_get_pages2` and friends exist (6.0+).
    GetPages2,
    /// Only where `iov_iter_revert` exists (4.11+).
    IovIterRevert,
}

impl Exists {
    /// Whether the call exists in a profile with these knobs.
    #[must_use]
    pub fn holds(self, k: &Knobs) -> bool {
        match self {
            Exists::Always => true,
            Exists::GetPages1 => !k.get_pages2,
            Exists::GetPages2 => k.get_pages2,
            Exists::IovIterRevert => k.iov_iter_revert,
        }
    }
}

/// One workload function.
#[derive(PartialEq, Eq, Debug)]
pub struct CallDef {
    /// The kernel's name.
    pub name: &'static str,
    /// Its arguments, in order.
    pub args: &'static [ArgKind],
    /// What `VAR =` receives.
    pub result: Shape,
    /// Who runs it.
    pub family: Family,
    /// Where it exists.
    pub exists: Exists,
}

use ArgKind as K;
use Exists::{Always, GetPages1, GetPages2, IovIterRevert};
use Family as F;
use Shape as S;

const fn c(
    name: &'static str,
    args: &'static [ArgKind],
    result: Shape,
    family: Family,
    exists: Exists,
) -> CallDef {
    CallDef {
        name,
        args,
        result,
        family,
        exists,
    }
}

const GUP: &[ArgKind] = &[K::Addr, K::NrPages, K::Foll];
const ADDR_LEN: &[ArgKind] = &[K::Addr, K::Count];
const IT_N: &[ArgKind] = &[K::Iter, K::Count];
const IT_N_N: &[ArgKind] = &[K::Iter, K::Count, K::Count];
const PIPE_IT: &[ArgKind] = &[K::Pipe, K::Iter];
const NONE: &[ArgKind] = &[];
const ABORT_AT: &[&str] = &["fill", "copy"];
const ABORT_COPY: &[&str] = &["fr_locked", "copy_iter", "args_kept"];

/// Every workload function (`docs/workloads.md` documents each).
pub static CALLS: &[CallDef] = &[
    // mm: gup and uaccess.
    c("get_user_pages_fast", GUP, S::Pages, F::Mm, Always),
    c("__get_user_pages_fast", GUP, S::Pages, F::Mm, Always),
    c("get_user_pages_fast_only", GUP, S::Pages, F::Mm, Always),
    c("pin_user_pages_fast", GUP, S::Pages, F::Mm, Always),
    c("get_user_pages", GUP, S::Pages, F::Mm, Always),
    c("get_user_pages_unlocked", GUP, S::Pages, F::Mm, Always),
    c("copy_to_user", ADDR_LEN, S::Ret, F::Mm, Always),
    c("copy_from_user", ADDR_LEN, S::Ret, F::Mm, Always),
    c("clear_user", ADDR_LEN, S::Ret, F::Mm, Always),
    c("munmap", ADDR_LEN, S::Ret, F::Mm, Always),
    c(
        "mprotect",
        &[K::Addr, K::Count, K::Prot],
        S::Ret,
        F::Mm,
        Always,
    ),
    c("madvise_dontneed", ADDR_LEN, S::Ret, F::Mm, Always),
    c("access_ok", ADDR_LEN, S::Ret, F::Mm, Always),
    // Pipes: splice paths.
    c("vmsplice", PIPE_IT, S::Ret, F::Pipe, Always),
    c("readv", PIPE_IT, S::Ret, F::Pipe, Always),
    c("writev", PIPE_IT, S::Ret, F::Pipe, Always),
    c(
        "splice_write",
        &[K::Pipe, K::Count],
        S::Ret,
        F::Pipe,
        Always,
    ),
    // iov_iter primitives.
    c("copy_to_iter", IT_N, S::Ret, F::Iter, Always),
    c("copy_from_iter", IT_N, S::Ret, F::Iter, Always),
    c("copy_from_iter_full", IT_N, S::Ret, F::Iter, Always),
    c("iov_iter_zero", IT_N, S::Ret, F::Iter, Always),
    c("iov_iter_advance", IT_N, S::Ret, F::Iter, Always),
    c("iov_iter_revert", IT_N, S::Ret, F::Iter, IovIterRevert),
    c(
        "iov_iter_get_pages",
        IT_N_N,
        S::PagesStart,
        F::Iter,
        GetPages1,
    ),
    c(
        "iov_iter_get_pages_alloc",
        IT_N,
        S::PagesStart,
        F::Iter,
        GetPages1,
    ),
    c(
        "iov_iter_get_pages2",
        IT_N_N,
        S::PagesStart,
        F::Iter,
        GetPages2,
    ),
    c(
        "iov_iter_get_pages_alloc2",
        IT_N,
        S::PagesStart,
        F::Iter,
        GetPages2,
    ),
    c(
        "iov_iter_extract_pages",
        IT_N_N,
        S::PagesStart,
        F::Iter,
        GetPages2,
    ),
    c("iov_iter_npages", IT_N, S::Ret, F::Iter, Always),
    c("iov_iter_alignment", &[K::Iter], S::Ret, F::Iter, Always),
    c(
        "iov_iter_gap_alignment",
        &[K::Iter],
        S::Ret,
        F::Iter,
        Always,
    ),
    c(
        "iov_iter_single_seg_count",
        &[K::Iter],
        S::Ret,
        F::Iter,
        Always,
    ),
    c(
        "iov_iter_for_each_page",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        F::Iter,
        Always,
    ),
    c("iov_iter_fill_bvecs", IT_N_N, S::Ret, F::Iter, Always),
    // System calls and processes.
    c("sys_readv", &[K::Fd, K::Iter], S::Ret, F::Syscall, Always),
    c("sys_writev", &[K::Fd, K::Iter], S::Ret, F::Syscall, Always),
    c(
        "sys_preadv",
        &[K::Fd, K::Iter, K::Count],
        S::Ret,
        F::Syscall,
        Always,
    ),
    c(
        "sys_pwritev",
        &[K::Fd, K::Iter, K::Count],
        S::Ret,
        F::Syscall,
        Always,
    ),
    c(
        "sys_vmsplice",
        &[K::Fd, K::Iter, K::OpenFlags],
        S::Ret,
        F::Syscall,
        Always,
    ),
    c(
        "sys_process_vm_readv",
        &[K::Pid, K::Iter, K::Iter],
        S::Ret,
        F::Syscall,
        Always,
    ),
    c(
        "sys_process_vm_writev",
        &[K::Pid, K::Iter, K::Iter],
        S::Ret,
        F::Syscall,
        Always,
    ),
    c(
        "open_blkdev",
        &[K::Count, K::OpenFlags],
        S::Handle,
        F::Syscall,
        Always,
    ),
    c("new_process", NONE, S::Handle, F::Syscall, Always),
    c("switch_to", &[K::Pid], S::Ret, F::Syscall, Always),
    c("getpid", NONE, S::Handle, F::Syscall, Always),
    c("fork", NONE, S::Handle, F::Syscall, Always),
    c("exit", &[K::Pid], S::Ret, F::Syscall, Always),
    // Caller models.
    c(
        "blockdev_direct_IO",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        F::Caller,
        Always,
    ),
    c(
        "blockdev_direct_IO_viro",
        &[K::Iter, K::Count, K::Count, K::Count],
        S::Ret,
        F::Caller,
        Always,
    ),
    c("blkdev_direct_IO", IT_N, S::Ret, F::Caller, Always),
    c("iomap_dio_rw", IT_N, S::Ret, F::Caller, Always),
    c("bio_iov_iter_get_pages", IT_N, S::Ret, F::Caller, Always),
    c("nfs_direct_write", IT_N, S::Ret, F::Caller, Always),
    c("nfs_direct_read", IT_N, S::Ret, F::Caller, Always),
    c("nfs_direct_write_viro", IT_N, S::Ret, F::Caller, Always),
    c("nfs_direct_read_viro", IT_N, S::Ret, F::Caller, Always),
    c("ceph_direct_read_write", IT_N, S::Ret, F::Caller, Always),
    c(
        "ceph_splice_write",
        &[K::Pipe, K::Count],
        S::Ret,
        F::Caller,
        Always,
    ),
    c("zerocopy_sg_from_iter", IT_N, S::Ret, F::Caller, Always),
    c(
        "zerocopy_sg_from_iter_viro",
        IT_N,
        S::Ret,
        F::Caller,
        Always,
    ),
    c("af_alg_make_sg", IT_N, S::Ret, F::Caller, Always),
    c("hash_sendmsg", IT_N, S::Ret, F::Caller, Always),
    c("fuse_direct_io", IT_N, S::Ret, F::Caller, Always),
    c("fuse_direct_io_viro", IT_N, S::Ret, F::Caller, Always),
    c("iter_to_pipe", PIPE_IT, S::Ret, F::Caller, Always),
    c("iter_to_pipe_viro", PIPE_IT, S::Ret, F::Caller, Always),
    c("fuse_mount", NONE, S::Ret, F::Caller, Always),
    c(
        "fuse_filemap_fault",
        &[K::Addr],
        S::Handle,
        F::Caller,
        Always,
    ),
    c("fuse_lookup", NONE, S::Handle, F::Caller, Always),
    c("fuse_dev_read", NONE, S::Handle, F::Caller, Always),
    c(
        "fuse_dev_write",
        &[K::Req, K::Iter],
        S::Ret,
        F::Caller,
        Always,
    ),
    c(
        "fuse_dev_write_abort",
        &[K::Req, K::Iter, K::Word(ABORT_AT), K::Word(ABORT_COPY)],
        S::Ret,
        F::Caller,
        Always,
    ),
    c("fuse_abort_conn", NONE, S::Ret, F::Caller, Always),
    c("fuse_fault_result", &[K::Req], S::Ret, F::Caller, Always),
    c(
        "fuse_dev_write_result",
        &[K::Req],
        S::Ret,
        F::Caller,
        Always,
    ),
    c("callback_under_mmap_sem", IT_N, S::Ret, F::Caller, Always),
    c("callback_for_each_page", IT_N, S::Ret, F::Caller, Always),
    // Known-bug replays.
    c(
        "interleave_dontneed",
        &[K::Addr, K::Count, K::Count],
        S::Ret,
        F::Bug,
        Always,
    ),
    c(
        "interleave_dontneed_touch",
        &[K::Addr, K::Count, K::Count],
        S::Ret,
        F::Bug,
        Always,
    ),
    c(
        "access_remote_vm",
        &[K::Addr, K::Count, K::Foll],
        S::Ret,
        F::Bug,
        Always,
    ),
    c("file_byte", &[K::File, K::Count], S::Ret, F::Bug, Always),
    c(
        "splice_read",
        &[K::File, K::Count, K::Pipe, K::Count],
        S::Ret,
        F::Bug,
        Always,
    ),
    c("tee", &[K::Pipe, K::Pipe, K::Count], S::Ret, F::Bug, Always),
    c("page_ref_count", &[K::Addr], S::Ret, F::Bug, Always),
    c("get_user", &[K::Addr], S::Ret, F::Bug, Always),
    c("put_user", &[K::Addr, K::Byte], S::Ret, F::Bug, Always),
    c(
        "memset",
        &[K::Addr, K::Byte, K::Count],
        S::Ret,
        F::Bug,
        Always,
    ),
    c(
        "page_byte",
        &[K::Result, K::Count, K::Count],
        S::Ret,
        F::Bug,
        Always,
    ),
];

/// The forms of the `show` statement, which inspects the state at its line
/// without changing it (no call: no parentheses, no result). The parser
/// reads them (`lang::stmt::parse_show`), the linter checks their names
/// and expressions, `crate::show` prints them; `docs/workloads.md` and
/// `docs/json.md` describe the output.
pub const SHOW_FORMS: [&str; 4] = ["show ADDR", "show NAME", "show mm", "show page NAME[i]"];

/// The function called `name`.
#[must_use]
pub fn lookup(name: &str) -> Option<&'static CallDef> {
    CALLS.iter().find(|d| d.name == name)
}

/// The candidate nearest to `word` by edit distance, if it is near enough
/// to be a likely misspelling ("did you mean").
#[must_use]
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `FOLL_*` names a workload may use.
pub fn foll_names() -> impl Iterator<Item = &'static str> {
    vmemu_mm::GupFlags::all().iter_names().map(|(n, _)| n)
}

/// Words an [`ArgKind::OpenFlags`] argument may name.
pub const OPEN_FLAGS: [&str; 5] = [
    "O_DIRECT",
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "SPLICE_F_MORE",
    "SPLICE_F_GIFT",
];

/// `PROT_*` names a workload may use.
pub const PROT_NAMES: [&str; 4] = ["PROT_READ", "PROT_WRITE", "PROT_EXEC", "PROT_NONE"];

/// The protection named `name`, as a set to or into a `Prot`.
#[must_use]
pub fn prot_from_name(name: &str) -> Option<vmemu_mm::Prot> {
    let mut p = vmemu_mm::Prot::NONE;
    match name {
        "PROT_READ" => p.read = true,
        "PROT_WRITE" => p.write = true,
        "PROT_EXEC" => p.exec = true,
        "PROT_NONE" => {}
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_suggestions_find_typos() {
        let mut names: Vec<&str> = CALLS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a function is listed twice");
        let all = || CALLS.iter().map(|d| d.name);
        assert_eq!(
            suggest("get_user_pages_fsat", all()),
            Some("get_user_pages_fast")
        );
        assert_eq!(suggest("bfu", all()), None);
        assert_eq!(suggest("FOLL_WRTIE", foll_names()), Some("FOLL_WRITE"));
        assert_eq!(suggest("PROT_RAED", PROT_NAMES), Some("PROT_READ"));
    }
}
