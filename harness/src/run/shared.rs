//! [`Shared`]: the strings every record of a run repeats (workload, arch,
//! kernel, the operation's name), allocated once per run and shared, so a
//! transcript of tens of thousands of statements does not hold tens of
//! thousands of copies of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// An immutable shared string; compares, prints and serialises as its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Shared(Arc<str>);

impl Shared {
    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Shared {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for Shared {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Shared {
    fn eq(&self, o: &str) -> bool {
        *self.0 == *o
    }
}

impl PartialEq<&str> for Shared {
    fn eq(&self, o: &&str) -> bool {
        *self.0 == **o
    }
}

impl PartialEq<String> for Shared {
    fn eq(&self, o: &String) -> bool {
        *self.0 == **o
    }
}

impl serde::Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The shared strings of one run's records.
#[derive(Debug, Default)]
pub(crate) struct RecordNames {
    pub(crate) workload: Shared,
    pub(crate) arch: Shared,
    pub(crate) kernel: Shared,
    ops: HashMap<String, Shared>,
}

impl RecordNames {
    pub(crate) fn new(workload: &str, arch: &str, kernel: &str) -> Self {
        Self {
            workload: workload.into(),
            arch: arch.into(),
            kernel: kernel.into(),
            ops: HashMap::new(),
        }
    }

    /// The shared copy of operation name `op`.
    pub(crate) fn op(&mut self, op: &str) -> Shared {
        if let Some(s) = self.ops.get(op) {
            return s.clone();
        }
        let s = Shared::from(op);
        self.ops.insert(op.to_string(), s.clone());
        s
    }
}
