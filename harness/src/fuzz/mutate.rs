//! Seeded mutations of workload text: byte flips, truncations, inserted
//! tokens, swapped tokens, deleted ranges, duplicated lines, and the sizes
//! an attacker of the command line writes (terabyte segments, 16 TiB
//! mappings, tens of thousands of copies of a segment list). `vmemu fuzz
//! --mutate` runs the mutants of the built-in workloads with every check;
//! the parser test mutates them too.

use super::Dice;
use crate::workloads::BUILTIN;

/// Mutant `seed` of the built-in workloads: workload `seed mod n`, mutated
/// 1 to 4 times by the dice of `seed`.
#[must_use]
pub fn mutant(seed: u64, index: u64) -> String {
    let (_, src) = BUILTIN[(index % BUILTIN.len() as u64) as usize];
    mutate(&mut Dice::new(seed), src)
}

/// Mutates `src` 1 to 4 times.
pub fn mutate(d: &mut Dice, src: &str) -> String {
    let mut b: Vec<u8> = src.as_bytes().to_vec();
    for _ in 0..1 + d.below(4) {
        if b.is_empty() {
            break;
        }
        let i = d.below(b.len() as u64) as usize;
        match d.below(9) {
            // Byte flip (kept ASCII so the input stays UTF-8 most of the time).
            0 => b[i] ^= 1 << d.below(7),
            // Truncation.
            1 => b.truncate(i),
            // Insert a "dangerous" byte or token.
            2 => {
                const TOKS: [&str; 24] = [
                    "(",
                    ")",
                    "[",
                    "]",
                    "{",
                    "}",
                    ",",
                    ":",
                    "#",
                    "\n",
                    "0x",
                    "-",
                    "*",
                    "/ 0",
                    "%",
                    "FOLL_",
                    " on ",
                    " kernel ",
                    "\u{e9}",
                    "\t",
                    "99999999999999999999999999999999999999999",
                    "page(",
                    "=",
                    "==",
                ];
                let tok = d.pick(&TOKS).as_bytes();
                b.splice(i..i, tok.iter().copied());
            }
            // Swap two whitespace-separated tokens.
            3 => {
                let s = String::from_utf8_lossy(&b).into_owned();
                let mut toks: Vec<&str> = s.split(' ').collect();
                if toks.len() > 2 {
                    let x = d.below(toks.len() as u64) as usize;
                    let y = d.below(toks.len() as u64) as usize;
                    toks.swap(x, y);
                }
                b = toks.join(" ").into_bytes();
            }
            // Delete a range.
            4 => {
                let j = (i + 1 + d.below(40) as usize).min(b.len());
                b.drain(i..j);
            }
            // Duplicate a line.
            5 => {
                let s = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let k = d.below(lines.len() as u64) as usize;
                    lines.insert(k, lines[k]);
                }
                b = lines.join("\n").into_bytes();
            }
            // A number replaced by a size an attacker of the CLI would
            // write (a terabyte segment, a 16 TiB mapping, 65536 copies).
            7 => {
                let s = String::from_utf8_lossy(&b).into_owned();
                b = blow_up_a_number(d, &s).into_bytes();
            }
            // A segment list repeated many times.
            8 => {
                let s = String::from_utf8_lossy(&b).into_owned();
                b = match s.match_indices(']').nth(d.below(4) as usize) {
                    Some((at, _)) => {
                        let n = d.pick(&["2", "1024", "4096", "65536", "1000000"]);
                        format!(
                            "{} repeat {n} step {}{}",
                            &s[..=at],
                            d.pick(&["0", "1", "PAGE_SIZE", "1G"]),
                            &s[at + 1..]
                        )
                    }
                    None => s,
                }
                .into_bytes();
            }
            // A random byte anywhere (may break UTF-8: lossily repaired).
            _ => b[i] = d.below(256) as u8,
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Replaces one number of `s` by a huge or edge size.
fn blow_up_a_number(d: &mut Dice, s: &str) -> String {
    const SIZES: [&str; 10] = [
        "1T",
        "16T",
        "64G",
        "2G",
        "4294967296",
        "65536",
        "0xffffffffffffffff",
        "0",
        "-1",
        "1M",
    ];
    let starts: Vec<usize> = s
        .char_indices()
        .filter(|&(i, c)| {
            c.is_ascii_digit() && (i == 0 || !s.as_bytes()[i - 1].is_ascii_alphanumeric())
        })
        .map(|(i, _)| i)
        .collect();
    if starts.is_empty() {
        return s.to_string();
    }
    let at = starts[d.below(starts.len() as u64) as usize];
    let end = s[at..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(s.len(), |e| at + e);
    format!("{}{}{}", &s[..at], d.pick(&SIZES), &s[end..])
}
