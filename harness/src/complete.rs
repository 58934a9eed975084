//! Values the shell completions offer (`vmemu completions`): arches,
//! kernel profiles and built-in workload names, as clap value parsers
//! whose possible values the completion generators list. The parsers
//! offer these words without restricting the argument to them: a
//! workload may also be a file, a profile may carry overlays
//! (`v4.10+capper`), an arch list may have commas.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use vmemu_arch::ArchId;
use vmemu_mm::KernelProfile;

/// A value parser that offers `values` to completions and parses with
/// `parse` (whose error message is shown as clap's).
#[derive(Clone)]
pub struct Offered<T> {
    values: Vec<&'static str>,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> std::fmt::Debug for Offered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offered")
            .field("values", &self.values)
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Offered<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(|| "VALUE".to_string(), |a| a.to_string());
        let fail = |msg: String| {
            let mut cmd = cmd.clone();
            clap::Error::raw(ErrorKind::ValueValidation, msg).format(&mut cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| fail(format!("invalid UTF-8 in the value of '{name}'")))?;
        (self.parse)(s).map_err(|e| fail(format!("invalid value '{s}' for '{name}': {e}")))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.values
                .iter()
                .map(|v| PossibleValue::new(*v).hide(false)),
        ))
    }
}

/// Arch names and `all`, any string accepted (checked after parsing, so
/// that comma lists work).
#[must_use]
pub fn arch_names() -> Offered<String> {
    let mut values: Vec<&'static str> = ArchId::ALL.iter().map(|a| a.name()).collect();
    values.push("main");
    values.push("all");
    Offered {
        values,
        parse: |s| Ok(s.to_string()),
    }
}

/// The built-in kernel profiles, parsed as `--kernel` always was.
#[must_use]
pub fn profile_parser() -> Offered<KernelProfile> {
    Offered {
        values: KernelProfile::builtin_names().to_vec(),
        parse: |s| KernelProfile::parse(s).map_err(|e| e.to_string()),
    }
}

/// The built-in workload names (files are accepted too).
#[must_use]
pub fn workload_names() -> Offered<String> {
    Offered {
        values: crate::workloads::BUILTIN
            .iter()
            .map(|(f, _)| f.trim_end_matches(".vmw"))
            .collect(),
        parse: |s| Ok(s.to_string()),
    }
}
