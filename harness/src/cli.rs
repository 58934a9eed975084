//! The command line of `vmemu` (clap derive), in the library so tests can
//! render its help.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use vmemu_mm::KernelProfile;

#[derive(Parser, Debug)]
#[command(
    name = "vmemu",
    version,
    about = "Emulate the Linux kernel's user-memory access layer (page tables, access_ok/set_fs, get_user_pages, gup-fast) per arch and kernel version",
    after_help = "Examples:\n  vmemu matrix                          run every built-in workload on x86_64, arm64, ppc64\n  vmemu run harness/workloads/kernel_ds_gup_fast.vmw --kernel v4.10\n  vmemu list                            arches, kernel profiles and their knobs\n  vmemu matrix --format ktap            KTAP version 1, for kunit_parser.py and CI"
)]
pub struct Cli {
    /// When to colour the text output: auto (only on a terminal, and not when NO_COLOR is set), always, or never. JSON and KTAP output are never coloured.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub color: ColorWhen,
    #[command(subcommand)]
    /// The subcommand.
    pub cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Transcripts for people.
    Text,
    /// JSON Lines for tools.
    Json,
    /// KTAP version 1, as KUnit prints it.
    Ktap,
}

/// When to colour text output (`--color`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum ColorWhen {
    /// Colour when writing to a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorWhen {
    /// The `--color` value given on a command line, found before clap parses
    /// it so that clap's own help and errors follow it too.
    #[must_use]
    pub fn from_args(args: &[std::ffi::OsString]) -> Self {
        let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
        let mut found = Self::Auto;
        while let Some(a) = it.next() {
            let v = if a == "--" {
                break;
            } else if a == "--color" {
                it.next()
            } else {
                a.strip_prefix("--color=")
            };
            if let Some(v) = v {
                found = match v {
                    "always" => Self::Always,
                    "never" => Self::Never,
                    _ => Self::Auto,
                };
            }
        }
        found
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run workload scripts and print their transcripts.
    #[command(
        after_help = "Example:\n  vmemu run harness/workloads/kernel_ds_gup_fast.vmw --arch arm64 --kernel v4.10 --format json"
    )]
    Run {
        /// Workload files (*.vmw), or names of built-in workloads.
        #[arg(required = true, value_parser = crate::complete::workload_names(), hide_possible_values = true)]
        files: Vec<String>,
        /// Arch (repeatable, or a comma list): x86_64, arm64, ppc64, ppc64-4k, x86_64-la57, arm64-52, arm64-16k; main (x86_64, arm64, ppc64) or all (every arch).
        #[arg(long = "arch", default_value = "main", value_parser = crate::complete::arch_names(), hide_possible_values = true)]
        arches: Vec<String>,
        /// Kernel profile (repeatable), e.g. v4.10, v4.10+capper, v6.13; default: the script's `kernels` line, else the newest base (v6.18).
        #[arg(long = "kernel", value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
        kernels: Vec<KernelProfile>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Check the emulator's invariants after every statement.
        #[arg(long)]
        check_invariants: bool,
        /// After the statement of script line LINE, show the mappings and both walks of every mapping (as a `show` statement would).
        #[arg(long, value_name = "LINE")]
        show_at: Option<usize>,
        #[command(flatten)]
        limits: crate::limits::Limits,
    },
    /// Run workloads x arches x their profiles in parallel and print a summary table.
    #[command(
        after_help = "Example:\n  vmemu matrix                 all built-in workloads\n  vmemu matrix my/workloads/   every *.vmw under a directory"
    )]
    Matrix {
        /// Workloads: files, directories of `.vmw` files, or built-in workload names and globs such as 'kernel_ds_*' (default: every built-in workload).
        #[arg(value_name = "WORKLOAD", value_parser = crate::complete::workload_names(), hide_possible_values = true)]
        workloads: Vec<String>,
        /// Arches: a name, a comma list (arm64,ppc64), main (x86_64, arm64, ppc64; the default) or all (every arch, with the geometry variants); repeatable.
        #[arg(long = "arch", default_value = "main", value_parser = crate::complete::arch_names(), hide_possible_values = true)]
        arches: Vec<String>,
        /// Only the runs under these kernel profiles (repeatable): each workload runs under those of its profiles that are listed.
        #[arg(long = "kernel", value_name = "PROFILE", value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
        kernels: Vec<KernelProfile>,
        /// Run N runs at a time (default: one per CPU).
        #[arg(short = 'j', long = "jobs", value_name = "N")]
        jobs: Option<usize>,
        /// Exit 1 if any run fails (the default is to report and exit 1 too; kept for scripts).
        #[arg(long)]
        check: bool,
        /// Output format (json: every record plus one summary per run).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Check the emulator's invariants after every statement.
        #[arg(long)]
        check_invariants: bool,
        #[command(flatten)]
        limits: crate::limits::Limits,
    },
    /// List arches, kernel profiles with their knobs, and built-in workloads.
    List {
        /// List the known bugs instead: CVE, introduced, fixed, workload, and the profiles showing them.
        #[arg(long)]
        bugs: bool,
    },
    /// Show both walks of an address level by level, and the knobs that decide gup-fast and uaccess.
    #[command(
        after_help = "Example:\n  vmemu explain 'kdirect(256)' --arch arm64 --kernel v4.10 --workload harness/workloads/kernel_ds_gup_fast.vmw"
    )]
    Explain {
        /// The address: a number or an expression such as kdirect(256) or PAGE_OFFSET + 0x1000.
        addr: String,
        /// Arch.
        #[arg(long, value_parser = crate::complete::arch_names(), hide_possible_values = true)]
        arch: String,
        /// Kernel profile.
        #[arg(long, default_value_t = KernelProfile::newest(), value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
        kernel: KernelProfile,
        /// Run this workload first (its mappings are then in the address space).
        #[arg(long, value_parser = crate::complete::workload_names(), hide_possible_values = true)]
        workload: Option<String>,
    },
    /// Show an address after a workload: its VMA, both walks level by level with each entry's bits named as the arch's headers name them, and the struct page counts.
    #[command(
        after_help = "Examples:\n  vmemu show 'kdirect(256)' --arch arm64 --kernel v4.10 --workload kernel_ds_gup_fast\n  vmemu show victim --arch ppc64 --workload kernel_ds_gup_fast --svg walk.svg"
    )]
    Show {
        /// The address: a mapping name, a number or an expression such as kdirect(256); `mm` for the mappings.
        addr: String,
        /// Arch.
        #[arg(long, value_parser = crate::complete::arch_names(), hide_possible_values = true)]
        arch: String,
        /// Kernel profile.
        #[arg(long, default_value_t = KernelProfile::newest(), value_parser = crate::complete::profile_parser(), hide_possible_values = true)]
        kernel: KernelProfile,
        /// Run this workload (a file or a built-in name) first.
        #[arg(long, value_parser = crate::complete::workload_names(), hide_possible_values = true)]
        workload: Option<String>,
        /// Output format (text or json).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also draw the two walks as an SVG diagram into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Parse workload files and report errors, without running them.
    #[command(
        after_help = "Every error of every file is reported (file:line:col, the line, a caret, a\nsuggestion), for every arch and kernel profile the workload names; exit 2 if any.\n\nExample:\n  vmemu check harness/workloads"
    )]
    Check {
        /// Workload files, or directories of `.vmw` files.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Measure speed as ratios against yardsticks in the same run.
    Bench(crate::bench::BenchArgs),
    /// Generate seeded random workloads, check invariants and oracles, shrink failures.
    Fuzz(crate::fuzz::FuzzArgs),
    /// Run syscall cases on the host kernel and on the emulator (x86_64, the profile nearest the host's kernel) and print every disagreement.
    #[command(after_help = "Example:\n  vmemu diff-host --cases 300 --seed 20261125")]
    DiffHost(crate::diff_host::DiffHostArgs),
    /// Write a workload as a self-contained C program (libc only) that does
    /// what it does through real system calls and prints KTAP
    #[command(
        name = "export-c",
        after_help = "Examples:\n  vmemu export-c vmsplice_syscall > v.c && cc -O1 -Wall -o v v.c && ./v\n  vmemu export-c harness/workloads/kernel_ds_gup_fast.vmw --skip-internal --arch arm64"
    )]
    ExportC(crate::export_c::ExportArgs),
    /// Compare the emulator with a real kernel booted under QEMU: the
    /// exported workloads and random syscall cases, built for the guest arch
    #[command(
        name = "diff-kernel",
        after_help = "Examples:\n  tools/fetch-kernels --arches arm64     QEMU, cross compiler, Debian's 6.12 kernel\n  vmemu diff-kernel --arch arm64 --kernel-image ~/.cache/vmemu/kernels/linux-image-6.12.*-arm64-unsigned/boot/vmlinuz-* --cases 1000 --seed 1"
    )]
    DiffKernel(crate::diff_kernel::DiffKernelArgs),
    /// Replay the 2017 thread: run each claim's workloads and print its outcome table and verdict.
    #[command(
        after_help = "Examples:\n  vmemu report                          one verdict line per claim\n  vmemu report --markdown               every claim's generated table\n  vmemu report --write docs/thread.md   refresh the tables between the claim markers\n  vmemu report --check docs/thread.md   exit 1 if any table there is stale\n  vmemu report --html site              a static site: matrix grid, claims, page walks"
    )]
    Report {
        /// The known-bugs tables of docs/bugs.md instead of the thread's claims.
        #[arg(long)]
        bugs: bool,
        /// Print the markdown tables instead of one line per claim.
        #[arg(long)]
        markdown: bool,
        /// Replace the text between `<!-- claim:ID -->` markers in FILE.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Exit 1 if a section of FILE differs from what the code produces now.
        #[arg(long, value_name = "FILE", conflicts_with = "write")]
        check: Option<PathBuf>,
        /// Write a static HTML site into DIR: the matrix as a coloured grid linking to every transcript, the claims with their verdicts, SVG page walks.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["write", "check", "bugs", "markdown"])]
        html: Option<PathBuf>,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  vmemu completions bash > ~/.local/share/bash-completion/completions/vmemu\n  vmemu completions zsh > ~/.zfunc/_vmemu        (with fpath+=~/.zfunc before compinit)\n  vmemu completions fish > ~/.config/fish/completions/vmemu.fish"
    )]
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the vmemu(1) man page (roff), covering every subcommand.
    #[command(
        after_help = "Example:\n  mkdir -p ~/.local/share/man/man1 && vmemu man > ~/.local/share/man/man1/vmemu.1 && man vmemu"
    )]
    Man,
}
