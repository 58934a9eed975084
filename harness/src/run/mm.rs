//! The mm statements: `map`, and the gup/uaccess/mmap calls on the current
//! mm (`get_user_pages*`, `copy_*_user`, `munmap`, `mprotect`, ...).

use super::*;

impl<'w, A: Arch> Runner<'w, A> {
    pub(crate) fn exec_map(
        &mut self,
        s: &Stmt,
        name: &str,
        spec: &MapSpec,
    ) -> Result<(), ScriptError> {
        let size = self.eval(&spec.size)?;
        let bytes = if spec.in_pages {
            size.checked_mul(i128::from(A::PAGE_SIZE))
        } else {
            Some(size)
        };
        let bytes = bytes.filter(|b| *b > 0 && *b <= 1 << 44).ok_or_else(|| {
            self.err(
                s.span,
                format!("mapping size must be between 1 byte and 16 TiB, found {size}"),
            )
        })? as u64;
        let at = match &spec.at {
            Some(e) => Some(self.addr(e, s.span)?),
            None => None,
        };
        let backing = if let Some(f) = &spec.file {
            let id = *self.files.get(f).ok_or_else(|| {
                self.err(
                    s.span,
                    format!("undefined file `{f}` (declare it with `file {f} SIZE`)"),
                )
            })?;
            Backing::File { file: id, pgoff: 0 }
        } else if spec.device {
            // Device memory lies outside RAM: frames with no struct page.
            Backing::Pfnmap {
                base: Pfn(self.sys.m.phys.nr_frames() + 0x100),
            }
        } else {
            Backing::Anon
        };
        let flags = MapFlags {
            shared: spec.shared,
            growsdown: spec.growsdown,
            hugepage: spec.huge,
        };
        let mm = self.sys.m.current_mm();
        let res = self
            .sys
            .m
            .mmap(mm, at, bytes, spec.prot, flags, backing, name);
        let mut r = self.record(s, "mmap");
        match res {
            Ok(a) => {
                let n = self.sys.m.mm(mm).vmas.len();
                if n > self.opts.limits.max_mappings {
                    return Err(self.err(
                        s.span,
                        format!(
                            "`map {name}` brings the address space to {n} mappings, more than {}; raise the limit with --max-mappings",
                            self.opts.limits.max_mappings
                        ),
                    ));
                }
                self.maps
                    .insert(name.to_string(), (a, bytes.next_multiple_of(A::PAGE_SIZE)));
                r.ret = Some(a.0 as i64);
            }
            Err(e) => set_err(&mut r, e),
        }
        self.push(r);
        Ok(())
    }

    pub(crate) fn exec_call(
        &mut self,
        s: &Stmt,
        var: Option<&str>,
        call: MmCall,
        func: &str,
        args: &[Arg],
    ) -> Result<(), ScriptError> {
        let mut r = self.record(s, func);
        let a0 = to_u64(self.w, self.expr_arg(&args[0], s)?, s.span).map(VirtAddr)?;
        let mut pages = Vec::new();
        let (ret, pin, longterm) = match call {
            MmCall::GetUserPagesFast
            | MmCall::__GetUserPagesFast
            | MmCall::GetUserPagesFastOnly
            | MmCall::PinUserPagesFast
            | MmCall::GetUserPages
            | MmCall::GetUserPagesUnlocked => {
                let (ret, longterm) = self.mm_gup(s, call, a0, args, &mut pages)?;
                (ret, call == MmCall::PinUserPagesFast, longterm)
            }
            _ => (self.mm_uaccess(s, call, a0, args)?, false, false),
        };
        match ret {
            Ok(v) => r.ret = Some(v),
            Err(e) => set_err(&mut r, e),
        }
        self.set_pages(&mut r, &pages);
        let retv = r.ret.unwrap_or(0);
        if (pin || longterm) && var.is_some() {
            self.note_pins(a0, &pages);
        }
        self.push(r);
        match var {
            Some(v) => {
                let var = Var {
                    ret: retv,
                    pages,
                    pin,
                    owned: true,
                    start: 0,
                };
                self.bind(s, v, var)?;
            }
            // Pages nobody can release: give them back.
            None if !pages.is_empty() => self.give_back(pages, pin),
            None => {}
        }
        Ok(())
    }

    /// The gup calls: the result, and whether a `FOLL_LONGTERM` reference
    /// stands for a long-term pin.
    fn mm_gup(
        &mut self,
        s: &Stmt,
        c: MmCall,
        a0: VirtAddr,
        args: &[Arg],
        pages: &mut Vec<Pfn>,
    ) -> Result<(Result<i64, Errno>, bool), ScriptError> {
        let nr = self.expr_arg(&args[1], s)?;
        let nr = i64::try_from(nr)
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(|| self.err(s.span, format!("nr_pages must fit an int, found {nr}")))?;
        let flags = self.flags(s, &args[2])?;
        let m = &mut self.sys.m;
        // Where FOLL_PIN does not exist, a FOLL_LONGTERM reference
        // (get_user_pages_longterm, 4.15+) is the long-term pin.
        let longterm = flags.contains(GupFlags::FOLL_LONGTERM) && !m.knobs.foll_pin;
        let res = match c {
            MmCall::GetUserPagesFast => m.get_user_pages_fast(a0, nr, flags, pages),
            MmCall::__GetUserPagesFast | MmCall::GetUserPagesFastOnly => {
                m.__get_user_pages_fast(a0, nr, flags, pages)
            }
            MmCall::PinUserPagesFast => m.pin_user_pages_fast(a0, nr, flags, pages),
            MmCall::GetUserPages => {
                let mm = m.current_mm();
                match m.mmap_read_lock(mm) {
                    Ok(()) => {
                        let res = m.get_user_pages(a0, nr.max(0) as u64, flags, pages);
                        m.mmap_read_unlock(mm);
                        res
                    }
                    Err(e) => Err(e),
                }
            }
            _ => m.get_user_pages_unlocked(a0, nr.max(0) as u64, pages, flags),
        };
        Ok((res.map(|n| n as i64), longterm))
    }

    /// uaccess, `access_ok` and the mmap calls.
    fn mm_uaccess(
        &mut self,
        s: &Stmt,
        call: MmCall,
        a0: VirtAddr,
        args: &[Arg],
    ) -> Result<Result<i64, Errno>, ScriptError> {
        Ok(match call {
            c @ (MmCall::CopyToUser | MmCall::CopyFromUser | MmCall::ClearUser) => {
                let len = self.expr_arg(&args[1], s)?;
                let len = u64::try_from(len)
                    .ok()
                    .filter(|l| *l <= MAX_COPY)
                    .ok_or_else(|| {
                        self.err(s.span, format!("copy length must be 0..=64M, found {len}"))
                    })?;
                let left = match c {
                    MmCall::CopyToUser => {
                        let m = &mut self.sys.m;
                        super::pattern::with_pattern(len, |buf| m.copy_to_user(a0, buf))
                    }
                    MmCall::CopyFromUser => {
                        let mut buf = vec![0u8; len as usize];
                        self.sys.m.copy_from_user(&mut buf, a0)
                    }
                    _ => self.sys.m.clear_user(a0, len),
                };
                Ok(left as i64)
            }
            MmCall::AccessOk => {
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                Ok(i64::from(self.sys.m.access_ok(a0, len, SizeKind::Runtime)))
            }
            MmCall::Munmap | MmCall::MadviseDontneed | MmCall::Mprotect => {
                let len = to_u64(self.w, self.expr_arg(&args[1], s)?, s.span)?;
                let mm = self.sys.m.current_mm();
                let res = match call {
                    MmCall::Munmap => self.sys.m.munmap(mm, a0, len),
                    MmCall::MadviseDontneed => self.sys.m.madvise_dontneed(mm, a0, len),
                    _ => {
                        let prot = match &args[2] {
                            Arg::Prot(p, _) => *p,
                            Arg::Foll(_, span) => {
                                return Err(
                                    self.err(*span, "expected PROT_* protections, found flags")
                                );
                            }
                            Arg::Expr(_) => Prot::NONE,
                        };
                        self.sys.m.mprotect(mm, a0, len, prot)
                    }
                };
                res.map(|()| 0)
            }
            // The gup calls are `mm_gup`'s.
            _ => Err(Errno::EINVAL),
        })
    }
}
