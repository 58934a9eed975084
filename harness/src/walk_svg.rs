//! An SVG drawing of the two page walks of one address (`vmemu show
//! --svg`, and the walk pages of `vmemu report --html`): one column per
//! walk (the MMU's hardware walk and gup's software walk from
//! `pgd_offset(mm, addr)`), a box per level with the index used, the raw
//! entry and its named bits, an arrow to the next table, and the page
//! reached or the fault. Where the two walks read different entries
//! (arm64's and ppc64's masked pgd index turning a kernel address into a
//! user one), the boxes that differ are drawn in red.

use std::fmt::Write as _;

use serde_json::Value;

/// Escapes text for SVG/HTML.
#[must_use]
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COL_W: usize = 640;
const BOX_H: usize = 64;
const GAP: usize = 26;

/// One column: its title, the levels (JSON of `show`), the outcome line.
fn column(out: &mut String, x: usize, title: &str, walk: &Value, other: &Value) {
    let _ = writeln!(
        out,
        r##"<text x="{x}" y="44" font-weight="bold" font-size="11">{}</text>"##,
        esc(title)
    );
    let empty = Vec::new();
    let levels = walk["levels"].as_array().unwrap_or(&empty);
    let others = other["levels"].as_array().unwrap_or(&empty);
    let mut y = 60;
    for (i, l) in levels.iter().enumerate() {
        let differs = others
            .get(i)
            .is_none_or(|o| o["raw"] != l["raw"] || o["index"] != l["index"]);
        let stroke = if differs { "#c0392b" } else { "#2c3e50" };
        let bits: Vec<&str> = l["bits"]
            .as_array()
            .map(|b| b.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="6" fill="#fdfefe" stroke="{stroke}" stroke-width="2"/>"##,
            w = COL_W - 20
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-weight="bold">{}[{}] = {}</text>"##,
            x + 10,
            y + 18,
            esc(l["level"].as_str().unwrap_or("?")),
            l["index"],
            esc(l["raw"].as_str().unwrap_or("")),
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}">{}</text>"##,
            x + 10,
            y + 36,
            esc(l["kind"].as_str().unwrap_or(""))
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" font-size="9">{}</text>"##,
            x + 10,
            y + 54,
            esc(&bits.join(" | "))
        );
        y += BOX_H;
        let _ = writeln!(
            out,
            r##"<line x1="{c}" y1="{y}" x2="{c}" y2="{y2}" stroke="#2c3e50" marker-end="url(#arrow)"/>"##,
            c = x + (COL_W - 20) / 2,
            y2 = y + GAP - 2
        );
        y += GAP;
    }
    let o = &walk["outcome"];
    let end = match o.get("page") {
        Some(p) => format!(
            "page {} ({} bytes at {}, {})",
            p.as_str().unwrap_or("?"),
            o["page_size"],
            o["level"].as_str().unwrap_or("?"),
            if o["user"] == true {
                "user"
            } else {
                "kernel only"
            }
        ),
        None => format!(
            "fault at {}: {}",
            o["level"].as_str().unwrap_or("?"),
            o["fault"].as_str().unwrap_or("?")
        ),
    };
    let _ = writeln!(
        out,
        r##"<rect x="{x}" y="{y}" width="{w}" height="30" rx="15" fill="#eaf2f8" stroke="#2c3e50"/><text x="{}" y="{}">{}</text>"##,
        x + 12,
        y + 20,
        esc(&end),
        w = COL_W - 20
    );
}

/// The SVG document of the `show` JSON `view` of an address.
#[must_use]
pub fn draw(title: &str, view: &Value) -> String {
    let hw = &view["hardware"];
    let sw = &view["software"];
    let n = hw["levels"]
        .as_array()
        .map_or(0, Vec::len)
        .max(sw["levels"].as_array().map_or(0, Vec::len));
    let height = 60 + n * (BOX_H + GAP) + 50;
    let width = 2 * COL_W + 20;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">"##
    );
    let _ = writeln!(
        out,
        r##"<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="4" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#2c3e50"/></marker></defs>"##
    );
    let _ = writeln!(out, r##"<title>{}</title>"##, esc(title));
    let _ = writeln!(
        out,
        r##"<text x="10" y="20" font-weight="bold" font-size="14">{}</text>"##,
        esc(title)
    );
    let root = view["hardware_root"].as_str().unwrap_or("?");
    column(
        &mut out,
        10,
        &format!("hardware walk (root {root})"),
        hw,
        sw,
    );
    column(
        &mut out,
        10 + COL_W,
        "software walk (gup: pgd_offset(mm, addr))",
        sw,
        hw,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes of levels where the walks read different entries are red,
    /// the others not; every level gets a box and the outcome is written.
    #[test]
    fn differing_levels_are_marked() {
        let lvl = |raw: &str| serde_json::json!({"level": "pgd", "index": 1, "raw": raw, "kind": "leaf", "bits": ["PTE_USER"]});
        let v = serde_json::json!({
            "hardware_root": "TTBR1_EL1",
            "hardware": {"levels": [lvl("0x1"), lvl("0x2")], "outcome": {"fault": "NotPresent", "level": "pmd"}},
            "software": {"levels": [lvl("0x1"), lvl("0x3")], "outcome": {"page": "victim[0]", "page_size": 4096, "level": "pte", "user": true}},
        });
        let svg = draw("a <b>", &v);
        assert_eq!(svg.matches("<rect").count(), 4 + 2);
        assert_eq!(svg.matches("stroke=\"#c0392b\"").count(), 2);
        assert!(svg.contains("page victim[0] (4096 bytes at pte, user)"));
        assert!(svg.contains("fault at pmd: NotPresent"));
        assert!(svg.contains("a &lt;b&gt;"));
    }
}
