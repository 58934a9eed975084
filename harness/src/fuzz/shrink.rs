//! Shrinking a failing workload: delta debugging over its statements, then
//! smaller numbers, keeping the failure's signature.

/// Shrinks a failing workload: delta debugging over its statement lines,
/// then smaller numbers, keeping the failure's signature. `tries` bounds the
/// number of runs.
#[must_use]
pub fn shrink(text: &str, still_fails: &mut dyn FnMut(&str) -> bool, tries: usize) -> String {
    let mut budget = tries;
    let mut test = |t: &str, budget: &mut usize| -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        still_fails(t)
    };
    // `release` lines are not shrunk away (a workload without them fails
    // differently: with a leak); they follow the statements that remain,
    // for the results those still define.
    let all: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let releases: Vec<String> = all
        .iter()
        .filter(|l| l.starts_with("release "))
        .cloned()
        .collect();
    let with_releases = |core: &[String]| -> String {
        let mut out: Vec<String> = core.to_vec();
        for r in &releases {
            let var = r.trim_start_matches("release ").trim();
            if core
                .iter()
                .any(|l| l.split_once(" = ").is_some_and(|(v, _)| v.trim() == var))
            {
                out.push(r.clone());
            }
        }
        out.join("\n") + "\n"
    };
    let mut lines: Vec<String> = all
        .iter()
        .filter(|l| !l.starts_with("release "))
        .cloned()
        .collect();
    // ddmin over lines (comments kept: they mark portability).
    let mut n = 2usize;
    while lines.len() >= 2 && budget > 0 {
        let chunk = lines.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < lines.len() {
            let end = (start + chunk).min(lines.len());
            let mut cand: Vec<String> = lines[..start].to_vec();
            cand.extend_from_slice(&lines[end..]);
            if cand.iter().any(|l| !l.starts_with('#')) && test(&with_releases(&cand), &mut budget)
            {
                lines = cand;
                reduced = true;
                n = n.saturating_sub(1).max(2);
                break;
            }
            start = end;
        }
        if !reduced {
            if n >= lines.len() {
                break;
            }
            n = (n * 2).min(lines.len());
        }
    }
    // Numbers: try 0, 1, half and one less for every literal.
    let mut changed = true;
    while changed && budget > 0 {
        changed = false;
        for i in 0..lines.len() {
            if lines[i].starts_with('#') {
                continue;
            }
            let mut k = 0;
            while let Some((s, e)) = next_number(&lines[i], k) {
                let tok = &lines[i][s..e];
                let v = tok.parse::<u64>().ok();
                let mut cands: Vec<String> = Vec::new();
                if let Some(v) = v {
                    for c in [0, 1, v / 2, v.saturating_sub(1)] {
                        if c < v {
                            cands.push(c.to_string());
                        }
                    }
                }
                cands.dedup();
                let mut done = false;
                for c in cands {
                    let mut l = lines[i].clone();
                    l.replace_range(s..e, &c);
                    let mut cand = lines.clone();
                    cand[i] = l.clone();
                    if test(&with_releases(&cand), &mut budget) {
                        lines[i] = l;
                        changed = true;
                        done = true;
                        k = s + c.len();
                        break;
                    }
                }
                if !done {
                    k = e;
                }
            }
        }
    }
    with_releases(&lines)
}

/// The next decimal literal at or after byte `from` that is not part of an
/// identifier or a hex number: (start, end).
fn next_number(l: &str, from: usize) -> Option<(usize, usize)> {
    let b = l.as_bytes();
    let mut i = from;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let mut e = i;
            while e < b.len() && b[e].is_ascii_alphanumeric() {
                e += 1;
            }
            let tok = &l[i..e];
            if !prev_ident && tok.bytes().all(|c| c.is_ascii_digit()) {
                return Some((i, e));
            }
            i = e;
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_keeps_the_failure() {
        let text = "a 1\nb 2\nc 300\nd 4\ne 5\n";
        let mut pred = |t: &str| t.contains("c ") && t.contains("e ");
        let s = shrink(text, &mut pred, 1000);
        assert_eq!(s, "c 0\ne 0\n");
    }

    #[test]
    fn numbers_in_identifiers_are_left_alone() {
        assert_eq!(next_number("map m1 2 pages", 0), Some((7, 8)));
        assert_eq!(next_number("x 0x10 + 3", 0), Some((9, 10)));
    }
}
