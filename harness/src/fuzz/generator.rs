//! The workload generator: `.vmw` text from a seed, using only statements
//! the profile has.

use vmemu_mm::KernelProfile;
use vmemu_mm::profile::{Knobs, PipeAdvanceRelease};

use super::Dice;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IterKind {
    User,
    Kvec,
    Bvec,
    Pipe,
    Ubuf,
}

struct Gen {
    d: Dice,
    lines: Vec<String>,
    /// The profile's knobs: which functions and iterator kinds exist.
    k: Knobs,
    revert: bool,
    portable: bool,
    maps: Vec<(String, u64)>,
    kbufs: Vec<(String, u64)>,
    files: Vec<String>,
    iters: Vec<(String, IterKind, bool)>,
    pipes: Vec<String>,
    held: Vec<String>,
    next: u32,
    in_set_fs: bool,
    /// Profiles with `+pipe-advance-fencepost`: also procfs-like files and
    /// `splice_read` (only there, so other profiles' seeds are unchanged).
    splice_files: bool,
    /// The profile has a narrow `_refcount` (`+small-refcount`): also
    /// generate `tee`, `repeat` blocks and refcount probes (CVE-2019-11487).
    refcount: bool,
    /// Processes: fork, switch_to, exit, user stores (GUP pins vs fork).
    fork: bool,
    /// Forked children still alive.
    procs: Vec<String>,
}

const OFFSETS: [&str; 6] = ["", "", " + 1", " + 0x10", " + 100", " + 4000"];

impl Gen {
    fn fresh(&mut self, p: &str) -> String {
        self.next += 1;
        format!("{p}{}", self.next)
    }

    fn emit(&mut self, l: String) {
        self.lines.push(l);
    }

    fn len_expr(&mut self, max_pages: u64) -> String {
        let q = self.d.below(max_pages + 1);
        let r = if self.portable {
            *self.d.pick(&["0", "1", "10", "100", "0"])
        } else {
            *self.d.pick(&["0", "1", "10", "100", "4000", "0"])
        };
        match (q, r) {
            (0, "0") => "0".into(),
            (0, r) => r.into(),
            (q, "0") => format!("{q} * PAGE_SIZE"),
            (q, r) => format!("{q} * PAGE_SIZE + {r}"),
        }
    }

    fn map(&mut self) {
        let name = self.fresh("m");
        let pages = 1 + self.d.below(6);
        let mut l = format!("map {name} {pages} pages");
        // PROT_NONE is not portable: v4.10's generic gup-fast takes a
        // PROT_NONE page where NUMA balancing is off (arm64, ppc64), x86's
        // pte_allows_gup does not.
        let prot = if self.portable {
            *self.d.pick(&["rw", "rw", "rw", "r"])
        } else {
            *self
                .d
                .pick(&["rw", "rw", "rw", "r", "none", "rx", "x", "rwx"])
        };
        let kind = self.d.below(10);
        let mut fixed = true;
        match kind {
            0 | 1 if !self.files.is_empty() => {
                let f = self.d.pick(&self.files).clone();
                l = format!("map {name} {pages} pages {prot}");
                if self.d.chance(50) {
                    l.push_str(" shared");
                }
                l.push_str(&format!(" file {f}"));
            }
            2 if !self.portable => {
                // A THP-capable mapping: two PMDs' worth.
                l = format!("map {name} PMD_SIZE * 2 {prot} huge");
                fixed = false;
            }
            3 if !self.portable => l = format!("map {name} {pages} pages {prot} growsdown"),
            4 if self.d.chance(30) => l = format!("map {name} {pages} pages {prot} device"),
            _ => {
                l = format!("map {name} {pages} pages {prot}");
                if self.d.chance(15) {
                    l.push_str(" shared");
                }
            }
        }
        if fixed && !self.maps.is_empty() && self.d.chance(15) {
            let (m, p) = self.d.pick(&self.maps).clone();
            let j = self.d.below(p);
            l.push_str(&format!(" at page({m}, {j})"));
        }
        let npages = if l.contains("PMD_SIZE") { 1024 } else { pages };
        self.maps.push((name, npages));
        self.emit(l);
    }

    fn addr(&mut self) -> String {
        if self.maps.is_empty() {
            self.map();
        }
        if !self.portable && self.d.chance(3) {
            // Kernel addresses and their user aliases, the thread's subject;
            // and just below a mapping (stack growth).
            let k = self.d.below(64);
            let (m, _) = self.d.pick(&self.maps).clone();
            return match self.d.below(4) {
                0 => format!("kdirect({k})"),
                1 => format!("user_alias(kdirect({k}))"),
                2 => format!("{m} - PAGE_SIZE"),
                _ => "TASK_SIZE - PAGE_SIZE".to_string(),
            };
        }
        let (m, p) = self.d.pick(&self.maps).clone();
        let j = self.d.below(p.min(8) + 1);
        // Portable workloads keep offset + remainder far below 4 KiB, so no
        // access crosses a page boundary on one arch and not on another.
        let off = if self.portable {
            *self.d.pick(&OFFSETS[..5])
        } else {
            *self.d.pick(&OFFSETS)
        };
        if j == 0 && off.is_empty() {
            m
        } else {
            format!("page({m}, {j}){off}")
        }
    }

    fn page_addr(&mut self) -> String {
        if self.maps.is_empty() {
            self.map();
        }
        let (m, p) = self.d.pick(&self.maps).clone();
        let j = self.d.below(p.min(8));
        format!("page({m}, {j})")
    }

    fn flags(&mut self) -> String {
        let mut v = Vec::new();
        if self.d.chance(50) {
            v.push("FOLL_WRITE");
        }
        if self.d.chance(10) {
            v.push("FOLL_FORCE");
        }
        if self.d.chance(10) {
            v.push("FOLL_LONGTERM");
        }
        if v.is_empty() {
            "0".into()
        } else {
            v.join("|")
        }
    }

    fn gup(&mut self) {
        let fast = [
            "get_user_pages_fast",
            "__get_user_pages_fast",
            "get_user_pages_fast_only",
            "pin_user_pages_fast",
        ];
        let slow = ["get_user_pages", "get_user_pages_unlocked"];
        let nr = if self.d.chance(5) {
            "0".to_string()
        } else {
            (1 + self.d.below(4)).to_string()
        };
        let args = format!("{}, {nr}, {}", self.addr(), self.flags());
        let pair = self.d.chance(40);
        let f = if pair || self.d.chance(60) {
            *self.d.pick(&fast)
        } else {
            *self.d.pick(&slow)
        };
        let f = if f == "pin_user_pages_fast" && !self.k.foll_pin {
            "get_user_pages_fast"
        } else {
            f
        };
        let v = self.fresh("r");
        self.emit(format!("{v} = {f}({args})"));
        self.held.push(v);
        if pair {
            let w = self.fresh("r");
            let s = *self.d.pick(&slow);
            self.emit(format!("{w} = {s}({args})"));
            self.held.push(w);
        }
    }

    fn uaccess(&mut self) {
        let f = *self
            .d
            .pick(&["copy_to_user", "copy_from_user", "clear_user"]);
        let a = self.addr();
        let l = self.len_expr(3);
        self.emit(format!("{f}({a}, {l})"));
    }

    fn vma_op(&mut self) {
        let a = self.page_addr();
        let n = 1 + self.d.below(3);
        match self.d.below(3) {
            0 => self.emit(format!("munmap({a}, {n} * PAGE_SIZE)")),
            1 => self.emit(format!("madvise_dontneed({a}, {n} * PAGE_SIZE)")),
            _ => {
                let prots = [
                    "PROT_READ",
                    "PROT_READ|PROT_WRITE",
                    "PROT_WRITE",
                    "PROT_NONE",
                ];
                let p = if self.portable {
                    *self.d.pick(&prots[..3])
                } else {
                    *self.d.pick(&prots)
                };
                self.emit(format!("mprotect({a}, {n} * PAGE_SIZE, {p})"));
            }
        }
    }

    fn touch(&mut self) {
        if self.maps.is_empty() {
            self.map();
        }
        let (m, p) = self.d.pick(&self.maps).clone();
        if p > 64 {
            return;
        }
        let how = *self.d.pick(&["", " read", " write"]);
        self.emit(format!("touch {m}{how}"));
    }

    fn kbuf(&mut self) {
        let k = self.fresh("k");
        let n = 1 + self.d.below(3);
        self.emit(format!("kbuf {k} {n} pages"));
        self.kbufs.push((k, n));
    }

    fn iter(&mut self) {
        let name = self.fresh("v");
        let read = self.d.chance(50);
        let dir = if read { "READ" } else { "WRITE" };
        let mut kinds = vec![IterKind::User, IterKind::User, IterKind::User];
        if !self.portable {
            kinds.extend([IterKind::Kvec, IterKind::Bvec]);
            if self.k.pipe_iter && !self.pipes.is_empty() {
                kinds.push(IterKind::Pipe);
            }
        }
        if self.k.ubuf_iter {
            kinds.push(IterKind::Ubuf);
        }
        let kind = *self.d.pick(&kinds);
        let kind = if matches!(kind, IterKind::Kvec | IterKind::Bvec) && self.kbufs.is_empty() {
            self.kbuf();
            kind
        } else {
            kind
        };
        match kind {
            IterKind::User | IterKind::Ubuf => {
                let n = if kind == IterKind::Ubuf {
                    1
                } else {
                    1 + self.d.below(4)
                };
                let segs: Vec<String> = (0..n)
                    .map(|_| {
                        let a = self.addr();
                        let l = self.len_expr(2);
                        format!("{a} : {l}")
                    })
                    .collect();
                let k = if kind == IterKind::Ubuf {
                    "ubuf"
                } else {
                    "iovec"
                };
                self.emit(format!("iter {name} {k} {dir} [{}]", segs.join(", ")));
            }
            IterKind::Kvec | IterKind::Bvec => {
                let n = 1 + self.d.below(3);
                let segs: Vec<String> = (0..n)
                    .map(|_| {
                        let (k, p) = self.d.pick(&self.kbufs).clone();
                        let j = self.d.below(p);
                        let off = *self.d.pick(&["0", "1", "100", "4000"]);
                        // Within the page: a bvec must not run into the next frame.
                        let l = *self.d.pick(&["1", "96", "0", "96"]);
                        format!("page({k}, {j}) + {off} : {l}")
                    })
                    .collect();
                let k = if kind == IterKind::Kvec {
                    "kvec"
                } else {
                    "bvec"
                };
                self.emit(format!("iter {name} {k} {dir} [{}]", segs.join(", ")));
            }
            IterKind::Pipe => {
                let p = self.d.pick(&self.pipes).clone();
                self.emit(format!("iter {name} pipe {p}"));
            }
        }
        let read = read || kind == IterKind::Pipe;
        self.iters.push((name, kind, read));
    }

    fn iter_op(&mut self) {
        if self.iters.is_empty() {
            self.iter();
        }
        let (it, kind, _) = self.d.pick(&self.iters).clone();
        let n = self.len_expr(3);
        let mut ops: Vec<&str> = vec![
            "copy_to_iter",
            "copy_to_iter",
            "copy_from_iter",
            "iov_iter_zero",
            "iov_iter_advance",
            "copy_from_iter_full",
            "iov_iter_npages",
            "iov_iter_alignment",
        ];
        if self.revert {
            ops.push("iov_iter_revert");
        }
        if self.k.get_pages2 {
            ops.extend([
                "iov_iter_get_pages2",
                "iov_iter_get_pages_alloc2",
                "iov_iter_extract_pages",
            ]);
        } else {
            ops.extend(["iov_iter_get_pages", "iov_iter_get_pages_alloc"]);
            ops.extend(["iov_iter_get_pages_alloc", "iov_iter_get_pages"]);
        }
        if !self.portable {
            ops.extend([
                "iov_iter_gap_alignment",
                "iov_iter_single_seg_count",
                "iov_iter_for_each_page",
                "iov_iter_fill_bvecs",
            ]);
        }
        if kind == IterKind::Pipe {
            ops.retain(|o| !o.starts_with("copy_from_iter"));
        }
        let op = *self.d.pick(&ops);
        let pages = 1 + self.d.below(4);
        match op {
            "iov_iter_get_pages" | "iov_iter_get_pages2" | "iov_iter_extract_pages" => {
                let v = self.fresh("r");
                self.emit(format!("{v} = {op}({it}, {n}, {pages})"));
                self.held.push(v);
            }
            "iov_iter_get_pages_alloc" | "iov_iter_get_pages_alloc2" => {
                let v = self.fresh("r");
                self.emit(format!("{v} = {op}({it}, {n})"));
                self.held.push(v);
            }
            "iov_iter_npages" => self.emit(format!("{op}({it}, {pages})")),
            "iov_iter_for_each_page" => {
                let v = self.fresh("r");
                let stop = self.d.below(3);
                self.emit(format!("{v} = {op}({it}, {n}, {pages}, {stop})"));
                self.held.push(v);
            }
            "iov_iter_fill_bvecs" => {
                let v = self.fresh("r");
                self.emit(format!("{v} = {op}({it}, {pages}, {n})"));
                self.held.push(v);
            }
            "iov_iter_alignment" | "iov_iter_gap_alignment" | "iov_iter_single_seg_count" => {
                self.emit(format!("{op}({it})"));
            }
            _ => self.emit(format!("{op}({it}, {n})")),
        }
    }

    fn pipe_op(&mut self) {
        if self.pipes.is_empty() || self.d.chance(10) {
            let p = self.fresh("p");
            self.emit(format!("pipe {p}"));
            self.pipes.push(p);
            return;
        }
        let p = self.d.pick(&self.pipes).clone();
        // The call uses the pipe: its ITER_PIPE iterators end here.
        self.iters.retain(|(_, k, _)| *k != IterKind::Pipe);
        if self.splice_files && !self.files.is_empty() && self.d.chance(40) {
            let f = self.d.pick(&self.files).clone();
            let pos = *self.d.pick(&[
                "0",
                "100",
                "PAGE_SIZE",
                "3 * PAGE_SIZE + 10",
                "8 * PAGE_SIZE",
            ]);
            let l = self.len_expr(20);
            let v = self.fresh("s");
            self.emit(format!("{v} = splice_read({f}, {pos}, {p}, {l})"));
            return;
        }
        let users: Vec<(String, bool)> = self
            .iters
            .iter()
            .filter(|(_, k, _)| *k == IterKind::User)
            .map(|(n, _, r)| (n.clone(), *r))
            .collect();
        if users.is_empty() || self.d.chance(20) {
            let l = self.len_expr(3);
            self.emit(format!("splice_write({p}, {l})"));
            return;
        }
        let (it, read) = self.d.pick(&users).clone();
        let f = if read {
            "readv"
        } else if self.d.chance(50) {
            "writev"
        } else {
            "vmsplice"
        };
        self.emit(format!("{f}({p}, {it})"));
    }

    fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let i = self.d.below(self.held.len() as u64) as usize;
        let v = self.held.remove(i);
        self.emit(format!("release {v}"));
    }

    /// Statements that take many references on few pages (only under
    /// `+small-refcount`, so that seeds of other profiles are unchanged).
    fn refcount_op(&mut self) {
        if self.pipes.len() < 2 || self.d.chance(15) {
            let p = self.fresh("p");
            self.emit(format!("pipe {p}"));
            self.pipes.push(p);
            return;
        }
        let a = self.d.pick(&self.pipes).clone();
        let pages = 1 + self.d.below(16);
        match self.d.below(4) {
            0 => {
                let b = self.d.pick(&self.pipes).clone();
                self.emit(format!("tee({a}, {b}, {pages} * PAGE_SIZE)"));
            }
            1 => {
                let k = *self.d.pick(&[2u64, 8, 16, 32, 64, 128, 255]);
                let b = self.fresh("p");
                self.emit(format!("repeat {k} {{"));
                self.emit(format!("pipe {b}"));
                self.emit(format!("tee({a}, {b}, {pages} * PAGE_SIZE)"));
                self.emit("}".into());
                self.pipes.push(b);
            }
            2 if !self.maps.is_empty() => {
                let (m, mp) = self.d.pick(&self.maps).clone();
                let i = self.d.below(mp.max(1));
                let k = 1 + self.d.below(16);
                let step = *self.d.pick(&["0", "PAGE_SIZE"]);
                let v = self.fresh("v");
                self.emit(format!(
                    "iter {v} iovec WRITE [page({m}, {i}) : PAGE_SIZE] repeat {k} step {step}"
                ));
                self.emit(format!("vmsplice({a}, {v})"));
            }
            _ if !self.maps.is_empty() => {
                let (m, mp) = self.d.pick(&self.maps).clone();
                let i = self.d.below(mp.max(1));
                match self.d.below(3) {
                    0 => self.emit(format!("page_ref_count(page({m}, {i}))")),
                    1 => self.emit(format!("get_user(page({m}, {i}))")),
                    _ => {
                        let b = self.d.below(256);
                        self.emit(format!("put_user(page({m}, {i}), {b})"));
                    }
                }
            }
            _ => self.emit(format!("tee({a}, {a}, PAGE_SIZE)")),
        }
    }

    /// fork, switch_to, exit, and user-space stores and loads: what GUP
    /// pins vs fork needs (`fork` workloads only).
    fn process_op(&mut self) {
        if self.procs.is_empty() || (self.procs.len() < 3 && self.d.chance(25)) {
            if self.procs.is_empty() && !self.lines.iter().any(|l| l == "me = getpid()") {
                self.emit("me = getpid()".into());
            }
            let c = self.fresh("c");
            self.emit(format!("{c} = fork()"));
            self.procs.push(c);
            return;
        }
        match self.d.below(10) {
            0..=2 => {
                let who = if self.d.chance(50) {
                    "me".to_string()
                } else {
                    self.d.pick(&self.procs).clone()
                };
                self.emit(format!("switch_to({who})"));
            }
            3 => {
                let i = self.d.below(self.procs.len() as u64) as usize;
                let c = self.procs.remove(i);
                self.emit("switch_to(me)".into());
                self.emit(format!("exit({c})"));
            }
            4..=7 => {
                let a = self.addr();
                let b = self.d.below(256);
                let l = self.len_expr(2);
                self.emit(format!("memset({a}, {b}, {l})"));
            }
            // A byte's value depends on the page size (copies write a
            // pattern): not portable.
            _ if !self.portable => {
                let a = self.addr();
                self.emit(format!("get_user({a})"));
            }
            _ => {
                let who = self.d.pick(&self.procs).clone();
                self.emit(format!("switch_to({who})"));
            }
        }
    }

    fn statement(&mut self) {
        if self.refcount && !self.in_set_fs && self.d.chance(15) {
            return self.refcount_op();
        }
        // Only fork workloads draw here: the others keep their dice.
        if self.fork && !self.in_set_fs && self.d.chance(15) {
            self.process_op();
            return;
        }
        match self.d.below(100) {
            0..=11 => self.map(),
            12..=19 => self.touch(),
            20..=37 => self.gup(),
            38..=45 => self.uaccess(),
            46..=53 => self.vma_op(),
            54..=61 => self.iter(),
            62..=77 => self.iter_op(),
            78..=83 => self.pipe_op(),
            84..=90 => self.release(),
            91..=93 if !self.portable => self.bug_op(),
            91..=93 => self.release(),
            94..=96 if !self.portable => {
                if self.d.chance(50) {
                    self.kbuf()
                } else {
                    self.file()
                }
            }
            97..=99 if !self.portable && !self.in_set_fs => self.set_fs(),
            _ => self.gup(),
        }
    }

    /// The statements of the known-bug replays, with ordinary arguments:
    /// `/proc/pid/mem` writes, a second task's `MADV_DONTNEED` at a gup
    /// retry point, reads of a file through the page cache, and (v4.x)
    /// splices from a file into a pipe. Nothing here aims at a bug: the
    /// generator knows the statements, the kernel decides what they do.
    fn bug_op(&mut self) {
        match self.d.below(5) {
            4 => self.thp_bug_op(),
            0 => {
                let a = self.addr();
                let n = *self.d.pick(&["1", "16", "100", "PAGE_SIZE"]);
                self.emit(format!("access_remote_vm({a}, {n}, FOLL_WRITE|FOLL_FORCE)"));
            }
            1 => {
                // Two tasks racing: a second task's MADV_DONTNEED lands at a
                // retry point of the gup that the next call makes on the
                // same page (the generator picks the call, the walk number
                // and the flags; it does not know which ones matter).
                let a = self.page_addr();
                let n = 1 + self.d.below(2);
                let walk = self.d.below(5);
                self.emit(format!("interleave_dontneed({a}, {n} * PAGE_SIZE, {walk})"));
                let off = *self.d.pick(&OFFSETS);
                let len = *self.d.pick(&["1", "16", "100"]);
                if self.d.chance(50) {
                    self.emit(format!(
                        "access_remote_vm({a}{off}, {len}, FOLL_WRITE|FOLL_FORCE)"
                    ));
                } else {
                    let v = self.fresh("r");
                    let fl = self.flags();
                    self.emit(format!("{v} = get_user_pages({a}{off}, 1, {fl})"));
                    self.held.push(v);
                }
            }
            2 if !self.files.is_empty() => {
                let f = self.d.pick(&self.files).clone();
                let v = self.fresh("b");
                let pos = *self.d.pick(&["0", "1", "100", "PAGE_SIZE + 1"]);
                self.emit(format!("{v} = file_byte({f}, {pos})"));
            }
            3 if !self.files.is_empty() && self.k.pipe_iter && !self.pipes.is_empty() => {
                let f = self.d.pick(&self.files).clone();
                let p = self.d.pick(&self.pipes).clone();
                self.iters.retain(|(_, k, _)| *k != IterKind::Pipe);
                let pos = *self.d.pick(&["0", "1", "99", "PAGE_SIZE - 1"]);
                let n = *self.d.pick(&["1", "10", "PAGE_SIZE", "4 * PAGE_SIZE"]);
                let v = self.fresh("s");
                self.emit(format!("{v} = splice_read({f}, {pos}, {p}, {n})"));
            }
            _ => self.file(),
        }
    }

    /// The Huge Dirty COW statements (CVE-2017-1000405): a `/proc/pid/mem`
    /// read (a FOLL_TOUCH gup), or a second task that zaps a range, reads
    /// it back in and reads it through `/proc/pid/mem` at a gup retry
    /// point, followed by a `/proc/pid/mem` write or a gup there. THP
    /// mappings are zapped at PMD granularity as often as by pages.
    fn thp_bug_op(&mut self) {
        let huge: Vec<String> = self
            .maps
            .iter()
            .filter(|(_, p)| *p == 1024)
            .map(|(m, _)| m.clone())
            .collect();
        let (a, len) = if !huge.is_empty() && self.d.chance(50) {
            let m = self.d.pick(&huge).clone();
            (
                format!("{m} + PMD_SIZE - {m} % PMD_SIZE"),
                "PMD_SIZE".to_string(),
            )
        } else {
            let n = 1 + self.d.below(2);
            (self.page_addr(), format!("{n} * PAGE_SIZE"))
        };
        let off = *self.d.pick(&OFFSETS);
        let n = *self.d.pick(&["1", "16", "100"]);
        if self.d.chance(30) {
            let v = self.fresh("n");
            self.emit(format!("{v} = access_remote_vm({a}{off}, {n}, FOLL_FORCE)"));
            return;
        }
        let walk = self.d.below(5);
        self.emit(format!("interleave_dontneed_touch({a}, {len}, {walk})"));
        self.emit(format!(
            "access_remote_vm({a}{off}, {n}, FOLL_WRITE|FOLL_FORCE)"
        ));
    }

    fn file(&mut self) {
        let f = self.fresh("f");
        let pages = 1 + self.d.below(4);
        let extra = *self
            .d
            .pick(&["", "", " mkwrite=ok", " mkwrite=ENOSPC", " fault_retry"]);
        let size = if self.d.chance(30) {
            format!("{pages} * PAGE_SIZE - 100")
        } else {
            format!("{pages} * PAGE_SIZE")
        };
        let proc = if self.splice_files && self.d.chance(50) {
            " proc"
        } else {
            ""
        };
        self.emit(format!("file {f} {size}{extra}{proc}"));
        self.files.push(f);
    }

    fn set_fs(&mut self) {
        self.emit("set_fs KERNEL_DS {".into());
        self.in_set_fs = true;
        for _ in 0..1 + self.d.below(3) {
            match self.d.below(3) {
                0 => self.gup(),
                1 => self.iter_op(),
                _ => self.uaccess(),
            }
        }
        self.in_set_fs = false;
        self.emit("}".into());
    }
}

/// Whether `vmemu fuzz` generates processes (fork, ...) on `kernel` without
/// `--fork`: the profiles on the base where GUP pins vs fork is modelled in
/// its three eras ([`KernelProfile::has_gup_fork_eras`]: v4.17,
/// +cow-break-on-pin, +wp-page-count). Other kernels keep the workloads
/// their seeds always gave.
#[must_use]
pub fn forks_by_default(kernel: &KernelProfile) -> bool {
    kernel.has_gup_fork_eras()
}

/// Generates workload `seed` for `kernel` (the statements it uses exist
/// there). Returns the text and whether it is portable across arches.
#[must_use]
pub fn generate(seed: u64, kernel: &KernelProfile) -> (String, bool) {
    generate_with(seed, kernel, forks_by_default(kernel))
}

/// [`generate`], with or without processes (fork, switch_to, exit, memset,
/// get_user).
#[must_use]
pub fn generate_with(seed: u64, kernel: &KernelProfile, fork: bool) -> (String, bool) {
    let mut d = Dice::new(seed);
    let portable = d.chance(30);
    let k = &kernel.knobs;
    let mut g = Gen {
        d,
        lines: Vec::new(),
        k: *k,
        revert: k.iov_iter_revert,
        portable,
        maps: Vec::new(),
        kbufs: Vec::new(),
        files: Vec::new(),
        iters: Vec::new(),
        pipes: Vec::new(),
        held: Vec::new(),
        next: 0,
        in_set_fs: false,
        splice_files: k.pipe_advance_release == PipeAdvanceRelease::FencepostV4_9,
        refcount: k.refcount_bits < 32,
        fork,
        procs: Vec::new(),
    };
    let mut out = format!(
        "# vmemu fuzz workload, seed {seed:#018x}{}\n",
        if portable { ", portable" } else { "" }
    );
    if !portable {
        out.push_str("mem 64M\n");
    }
    if g.d.chance(40) {
        g.file();
    }
    let n = 4 + g.d.below(40);
    for _ in 0..n {
        g.statement();
    }
    while !g.held.is_empty() {
        let v = g.held.remove(0);
        g.emit(format!("release {v}"));
    }
    if !g.procs.is_empty() {
        g.emit("switch_to(me)".into());
        for c in std::mem::take(&mut g.procs) {
            g.emit(format!("exit({c})"));
        }
    }
    for l in &g.lines {
        out.push_str(l);
        out.push('\n');
    }
    (out, portable)
}
