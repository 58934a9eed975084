//! The host side of a differential case: the real syscalls.
//!
//! Every host call goes through the safe API of `vmemu_host` (`host/`, the
//! host-probe crate, with `mm`'s physical memory the only home for
//! `unsafe`): system calls that take user addresses as plain integers, so
//! iovecs can point at unmapped, `PROT_NONE`, read-only and kernel
//! addresses, and
//! [`HostRegion`], an mmap'ed region whose bytes only the kernel moves.
//! Plain file and pipe I/O uses std.
//!
//! User addresses handed to the kernel are inside the case's own regions or
//! addresses no process can map (`Addr::Abs`, checked against
//! `/proc/self/maps` before the call; a case naming a mapped one is
//! skipped). The host API checks again, before every call that writes user
//! memory, that the kernel cannot write outside the regions.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Command;

use vmemu_host::{self as sys, HostProt, HostRegion, SPLICE_F_NONBLOCK, SysResult, UserIovec};

use super::{
    Addr, BDEV_SIZE, Case, Op, Outcome, PAGE, PageKind, Seg, file_byte, fill_byte, user_byte,
};

/// A syscall's result as bytes or `-errno`.
fn sysret(r: SysResult) -> i64 {
    match r {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e),
    }
}

/// Whether this host can run cases.
pub fn support() -> Result<(), String> {
    let page = sys::page_size();
    if page as u64 != PAGE {
        return Err(format!("host page size is {page}, the cases assume 4096"));
    }
    if std::fs::read_to_string("/proc/self/maps").is_err() {
        return Err("/proc/self/maps is not readable".into());
    }
    Ok(())
}

/// The loop device the O_DIRECT cases use.
#[derive(Debug)]
struct LoopDev {
    path: String,
    backing: PathBuf,
    /// Opened `O_RDWR | O_DIRECT`.
    direct: Option<File>,
    /// Opened `O_RDWR`.
    buffered: Option<File>,
    dirty: bool,
}

impl LoopDev {
    fn setup() -> Result<Self, String> {
        let backing = std::env::temp_dir().join(format!("vmemu-diff-{}.img", std::process::id()));
        let data: Vec<u8> = (0..BDEV_SIZE).map(file_byte).collect();
        std::fs::write(&backing, &data).map_err(|e| format!("backing file: {e}"))?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let _ = std::fs::remove_file(&backing);
                return Err(format!(
                    "losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&backing);
                return Err(format!("no losetup: {e}"));
            }
        };
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut dev = Self {
            path,
            backing,
            direct: None,
            buffered: None,
            dirty: false,
        };
        let open = |flags: i32| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(&dev.path)
                .map_err(|e| format!("open {}: {e}", dev.path))
        };
        let (direct, buffered) = (open(libc::O_DIRECT)?, open(0)?);
        dev.direct = Some(direct);
        dev.buffered = Some(buffered);
        // The emulated device has 512-byte logical blocks and DMA alignment
        // 511; check the loop device agrees.
        let name = dev.path.trim_start_matches("/dev/");
        let q = |f: &str| {
            std::fs::read_to_string(format!("/sys/block/{name}/queue/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        if q("logical_block_size") != "512" {
            return Err(format!(
                "{} has logical_block_size {}, not 512",
                dev.path,
                q("logical_block_size")
            ));
        }
        let size = std::fs::read_to_string(format!("/sys/block/{name}/size")).unwrap_or_default();
        if size.trim() != (BDEV_SIZE / 512).to_string() {
            return Err(format!("{} has {} sectors", dev.path, size.trim()));
        }
        Ok(dev)
    }

    fn buffered(&self) -> &File {
        self.buffered.as_ref().expect("open while the device lives")
    }

    fn direct(&self) -> &File {
        self.direct.as_ref().expect("open while the device lives")
    }

    /// Puts the pattern back after a write case.
    fn restore(&mut self) {
        if !self.dirty {
            return;
        }
        let data: Vec<u8> = (0..BDEV_SIZE).map(file_byte).collect();
        let f = self.buffered();
        f.write_all_at(&data, 0).expect("restoring the loop device");
        f.sync_all().expect("fsync of the loop device");
        self.dirty = false;
    }

    fn contents(&self) -> Vec<u8> {
        let mut buf = vec![0u8; BDEV_SIZE as usize];
        self.buffered()
            .read_exact_at(&mut buf, 0)
            .expect("reading the loop device back");
        buf
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // Close both fds before detaching.
        drop(self.direct.take());
        drop(self.buffered.take());
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// The host side.
#[derive(Debug)]
pub struct Host {
    bdev: Option<LoopDev>,
}

impl Host {
    pub fn new(with_bdev: bool) -> Result<(Self, Option<String>), String> {
        support()?;
        if !with_bdev {
            return Ok((
                Self { bdev: None },
                Some("O_DIRECT cases not asked for".into()),
            ));
        }
        match LoopDev::setup() {
            Ok(d) => Ok((Self { bdev: Some(d) }, None)),
            Err(e) => Ok((
                Self { bdev: None },
                Some(format!("no loop device for the O_DIRECT cases: {e}")),
            )),
        }
    }

    pub fn run(&mut self, c: &Case) -> Option<Outcome> {
        if !abs_addresses_unmapped(c) {
            return None;
        }
        let regions = map_regions(c);
        let addr = |s: &Seg| match s.addr {
            Addr::Region(r, off) => (regions[r].base() as u64).wrapping_add(off),
            Addr::Abs(a) => a,
        };
        let iovecs = |segs: &[Seg]| -> Vec<UserIovec> {
            segs.iter()
                .map(|s| UserIovec {
                    base: addr(s) as usize,
                    len: s.len as usize,
                })
                .collect()
        };
        let iov = iovecs(&c.iov);
        let mut after = Vec::new();
        let ret = match &c.op {
            Op::Readv | Op::Writev | Op::VmspliceToPipe | Op::VmspliceToUser => {
                let (rfd, wfd) = sys::pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).expect("pipe2");
                let (mut rd, mut wr) = (File::from(rfd), File::from(wfd));
                for (k, &n) in c.fill.iter().enumerate() {
                    if n == 0 {
                        // A write that faults at once: 6.13 leaves an empty
                        // buffer in the ring. Page 0x1000 is below
                        // mmap_min_addr, never mapped.
                        let _ = sys::write_from(wr.as_fd(), 0x1000, 10);
                        continue;
                    }
                    let buf: Vec<u8> = (0..n).map(|o| fill_byte(k, o)).collect();
                    // A full pipe gives EAGAIN (a short write is fine too).
                    let _ = wr.write(&buf);
                }
                let ret = sysret(match c.op {
                    Op::Readv => sys::readv(rd.as_fd(), &iov, &regions),
                    Op::Writev => sys::writev(wr.as_fd(), &iov),
                    Op::VmspliceToPipe => {
                        sys::vmsplice(wr.as_fd(), &iov, SPLICE_F_NONBLOCK, &regions)
                    }
                    _ => sys::vmsplice(rd.as_fd(), &iov, SPLICE_F_NONBLOCK, &regions),
                });
                let mut buf = vec![0u8; 65536];
                while let Ok(n @ 1..) = rd.read(&mut buf) {
                    after.extend_from_slice(&buf[..n]);
                }
                ret
            }
            Op::ProcessVmReadv { remote, flags } => sysret(sys::process_vm_readv_self(
                &iov,
                &iovecs(remote),
                *flags,
                &regions,
            )),
            Op::ProcessVmWritev { remote, flags } => sysret(sys::process_vm_writev_self(
                &iov,
                &iovecs(remote),
                *flags,
                &regions,
            )),
            Op::Preadv { size, pos } | Op::Pwritev { size, pos } => {
                let name = CString::new("vmemu-diff").expect("no NUL");
                let file = sys::memfd_create(&name, libc::MFD_CLOEXEC).expect("memfd_create");
                let data: Vec<u8> = (0..*size).map(file_byte).collect();
                file.write_all_at(&data, 0).expect("filling the memfd");
                let ret = sysret(if matches!(c.op, Op::Preadv { .. }) {
                    sys::preadv(file.as_fd(), &iov, *pos, &regions)
                } else {
                    sys::pwritev(file.as_fd(), &iov, *pos)
                });
                let len = file.metadata().expect("fstat of the memfd").len();
                after = vec![0u8; len as usize];
                file.read_exact_at(&mut after, 0)
                    .expect("reading the memfd back");
                ret
            }
            Op::PreadvDirect { pos } | Op::PwritevDirect { pos } => {
                let dev = self
                    .bdev
                    .as_mut()
                    .expect("the caller skips O_DIRECT cases without a device");
                dev.restore();
                let fd = dev.direct().as_fd();
                let r = if matches!(c.op, Op::PwritevDirect { .. }) {
                    let r = sys::pwritev(fd, &iov, *pos);
                    dev.dirty = true;
                    after = dev.contents();
                    r
                } else {
                    sys::preadv(fd, &iov, *pos, &regions)
                };
                sysret(r)
            }
        };
        let mem = read_regions(c, &regions);
        drop(regions);
        Some(Outcome { ret, mem, after })
    }
}

/// Whether every fixed address a case passes with a non-zero length below
/// `TASK_SIZE_MAX` is unmapped in this process (else the case is skipped:
/// the kernel could write there).
fn abs_addresses_unmapped(c: &Case) -> bool {
    let mut ranges = Vec::new();
    let mut add = |v: &[Seg]| {
        for s in v {
            if let Addr::Abs(a) = s.addr
                && s.len > 0
                && a < super::TASK_SIZE_MAX
            {
                ranges.push((a, a.saturating_add(s.len)));
            }
        }
    };
    add(&c.iov);
    if let Op::ProcessVmReadv { remote, .. } | Op::ProcessVmWritev { remote, .. } = &c.op {
        add(remote);
    }
    if ranges.is_empty() {
        return true;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines() {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            continue;
        };
        if ranges.iter().any(|&(a, b)| a < hi && lo < b) {
            return false;
        }
    }
    true
}

/// Maps the case's regions (all first, so none lands in another's hole),
/// writes the pattern into every page that is not `Untouched`, then
/// protects and punches pages.
fn map_regions(c: &Case) -> Vec<HostRegion> {
    let mut out: Vec<HostRegion> = c
        .regions
        .iter()
        .map(|kinds| HostRegion::map_anon(kinds.len()).expect("mmap of a case region"))
        .collect();
    for (r, (reg, kinds)) in out.iter_mut().zip(&c.regions).enumerate() {
        for (k, kind) in kinds.iter().enumerate() {
            if *kind == PageKind::Untouched {
                continue;
            }
            let off = k as u64 * PAGE;
            let bytes: Vec<u8> = (off..off + PAGE).map(|o| user_byte(r, o)).collect();
            reg.write(off as usize, &bytes)
                .expect("writing a fresh region page");
        }
        for (k, kind) in kinds.iter().enumerate() {
            let rc = match kind {
                PageKind::Ro => reg.protect(k, 1, HostProt::Read),
                PageKind::None => reg.protect(k, 1, HostProt::None),
                PageKind::Hole => reg.unmap(k, 1),
                PageKind::Rw | PageKind::Untouched => Ok(()),
            };
            rc.expect("mprotect/munmap of a region page");
        }
    }
    out
}

/// Every readable page of every region, in order.
fn read_regions(c: &Case, regions: &[HostRegion]) -> Vec<u8> {
    let mut mem = Vec::new();
    for (reg, kinds) in regions.iter().zip(&c.regions) {
        for (k, kind) in kinds.iter().enumerate() {
            if !kind.readable() {
                continue;
            }
            let mut buf = vec![0u8; PAGE as usize];
            reg.read(k * PAGE as usize, &mut buf)
                .expect("reading a readable region page");
            mem.extend_from_slice(&buf);
        }
    }
    mem
}
