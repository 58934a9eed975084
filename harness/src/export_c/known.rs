//! Expects of the built-in workloads that a kernel newer than their
//! profile answers differently, for a reason found and named (as
//! `diff_host::known_difference` does for the random cases). The exported
//! program reports such an expect as a skip with the reason when it fails
//! on a kernel newer than the version given, and as a failure elsewhere.

/// (workload, expect text, last version with the modelled behaviour,
/// what changed).
const KNOWN: &[(&str, &str, (u32, u32), &str)] = &[
    (
        "o_direct_blkdev",
        "expect p2 == -EINVAL",
        (6, 13),
        "6.18 O_DIRECT: per-iovec alignment no longer checked up front (7eac33186957, 5ff3f74e145a)",
    ),
    (
        "o_direct_blkdev",
        "expect p3 == -EINVAL",
        (6, 13),
        "6.18 O_DIRECT: per-iovec alignment no longer checked up front (7eac33186957, 5ff3f74e145a)",
    ),
];

/// The known difference of an expect, if it has one.
#[must_use]
pub fn for_expect(workload: &str, text: &str) -> Option<((u32, u32), &'static str)> {
    KNOWN
        .iter()
        .find(|(w, t, _, _)| *w == workload && *t == text)
        .map(|&(_, _, since, why)| (since, why))
}
