//! Number formatting shared by the renderers.

use mpprof_profile::Profile;

/// Ticks as a human time when the clock is known, else as a tick count.
pub fn ticks(profile: &Profile, t: u64) -> String {
    let hz = profile.meta.clock.hz;
    if hz == 0 {
        return format!("{t} ticks");
    }
    let secs = t as f64 / hz as f64;
    let unit = &profile.meta.clock.unit;
    if unit != "ns" && unit != "cycles" {
        // A board's timer: show ticks, the deterministic figure.
        return format!("{} ticks", count(t));
    }
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count abbreviated to at most four significant characters and a unit
/// (`1.6M`, `594.6M`, `12.3k`, `950`), for where a whole count does not fit.
pub fn count_short(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    if n < 1000 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut unit = 0;
    // Rounded to one decimal, 999.96k would print as 1000.0k: step up first.
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// Cut text to `max` characters at a word boundary, marking the cut, so a
/// number or a name is either shown whole or not at all.
pub fn clip_words(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let room: String = s.chars().take(max - 1).collect();
    // The next character tells whether the cut fell between words.
    let next = s.chars().nth(max - 1);
    let kept = if next == Some(' ') {
        room.trim_end()
    } else {
        match room.rfind(' ') {
            Some(i) => room[..i].trim_end(),
            None => "",
        }
    };
    format!("{kept}…")
}

/// Bytes as B, KiB or MiB.
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Text made safe inside XML, HTML and SVG, attributes included.
pub fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Cut a string to `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The last path component.
/// A horizontal bar `cells` characters wide at most, `value / max` of it
/// filled, in eighths of a cell (`█▏▎▍▌▋▊▉`); empty for 0, at least an
/// eighth for anything above 0 so a small figure is not lost.
pub fn bar(value: u64, max: u64, cells: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    if value == 0 || max == 0 {
        return String::new();
    }
    let eighths = ((value.min(max) as f64 / max as f64) * (cells * 8) as f64).round() as usize;
    let eighths = eighths.max(1);
    let mut s = "█".repeat(eighths / 8);
    let part = eighths % 8;
    if part > 0 {
        s.push(PARTS[part]);
    }
    s
}

pub fn short_path(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_their_share_in_eighths() {
        assert_eq!(bar(0, 10, 4), "");
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(5, 10, 4), "██");
        assert_eq!(bar(1, 16, 2), "▏");
        assert_eq!(bar(3, 8, 1), "▍");
        // Tiny but not nothing.
        assert_eq!(bar(1, 1_000_000, 10), "▏");
        assert_eq!(bar(20, 10, 3), "███");
    }

    #[test]
    fn counts_and_bytes() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1973), "1,973");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(short_path("/a/b/c.py"), "c.py");
    }
}

#[cfg(test)]
mod abbreviation_tests {
    use super::*;

    #[test]
    fn short_counts_round_to_one_decimal_and_step_units() {
        assert_eq!(count_short(950), "950");
        assert_eq!(count_short(1_600_000), "1.6M");
        assert_eq!(count_short(594_649_490), "594.6M");
        assert_eq!(count_short(999_960), "1.0M");
        assert_eq!(count_short(12_345), "12.3k");
    }

    #[test]
    fn clipping_keeps_whole_words() {
        assert_eq!(clip_words("ran 1,600,000x now", 12), "ran…");
        assert_eq!(clip_words("ran 1,600,000x now", 15), "ran 1,600,000x…");
        assert_eq!(clip_words("short", 10), "short");
        assert_eq!(clip_words("averyverylongword", 5), "…");
    }
}
