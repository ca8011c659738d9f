//! MicroPython's line-number table (`py/bc.h`, WIRE.md "Line numbers"),
//! decoded on the host so the target never spends time on it: bytecode
//! offset → source line.
//!
//! Each entry advances the opcode offset by `b` bytes and the line by `l`:
//! one byte `0b0LLBBBBB`, or two bytes `0b1LLLBBBB 0bLLLLLLLL` (the three
//! high bits of `l` in the first byte). The line of offset `o` is 1 plus the
//! `l` of every entry, in order, whose `b` still fits in what is left of `o`.
//! A truncated last entry (a two-byte form cut after its first byte) ends
//! the table.

/// The entries of a table: (offset advance, line advance).
fn entries(table: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *table.get(i)?;
        if c & 0x80 == 0 {
            i += 1;
            Some((u32::from(c & 0x1f), u32::from(c >> 5)))
        } else {
            let low = *table.get(i + 1)?;
            i += 2;
            let high = u32::from(c & 0x70) << 4;
            Some((u32::from(c & 0x0f), high | u32::from(low)))
        }
    })
}

/// The source line of the opcode at `offset` (counted from the first
/// opcode), straight from the table as MicroPython computes it.
pub fn line_of(table: &[u8], offset: u32) -> u32 {
    let mut line = 1u32;
    let mut rest = offset;
    for (b, l) in entries(table) {
        if rest < b {
            break;
        }
        rest -= b;
        line = line.saturating_add(l);
    }
    line
}

/// Opcodes from `start` up to `end` (exclusive; `None`: to the end of the
/// code) are on `line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRun {
    pub start: u32,
    pub end: Option<u32>,
    pub line: u32,
}

/// A decoded table for repeated lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    /// (first offset, line), offsets strictly ascending, from offset 0.
    starts: Vec<(u32, u32)>,
}

impl LineTable {
    pub fn new(table: &[u8]) -> Self {
        let mut starts = vec![(0u32, 1u32)];
        let (mut offset, mut line) = (0u32, 1u32);
        for (b, l) in entries(table) {
            offset = offset.saturating_add(b);
            line = line.saturating_add(l);
            match starts.last_mut() {
                // Entries that do not advance the offset move the line of
                // the opcode already there.
                Some(last) if last.0 == offset => last.1 = line,
                _ => starts.push((offset, line)),
            }
        }
        Self { starts }
    }

    /// The line of the opcode at `offset` from the first opcode.
    pub fn line(&self, offset: u32) -> u32 {
        // `starts[0]` is offset 0, so the partition point is at least 1.
        let i = self.starts.partition_point(|s| s.0 <= offset);
        self.starts.get(i.wrapping_sub(1)).map_or(1, |s| s.1)
    }

    /// The (offset range → line) runs, in offset order; neighbouring runs
    /// may be on the same line when the table says so.
    pub fn runs(&self) -> impl Iterator<Item = LineRun> + '_ {
        self.starts
            .iter()
            .enumerate()
            .map(|(i, &(start, line))| LineRun {
                start,
                end: self.starts.get(i + 1).map(|next| next.0),
                line,
            })
    }

    /// The code's first source line: the line of its first opcode, or,
    /// when the table's first entry advances the offset before any line
    /// (a class body's `__module__`/`__qualname__` preamble, compiled before
    /// the body's first statement sets a line), the first line it reaches.
    pub fn first_line(&self) -> u32 {
        self.starts
            .iter()
            .map(|s| s.1)
            .find(|&l| l > 1)
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-byte entry `0b0LLBBBBB`.
    fn short(b: u8, l: u8) -> Vec<u8> {
        assert!(b < 32 && l < 4, "not encodable in one byte");
        vec![(l << 5) | b]
    }

    /// Two-byte entry `0b1LLLBBBB 0bLLLLLLLL`.
    fn long(b: u8, l: u16) -> Vec<u8> {
        assert!(b < 16 && l < 2048, "not encodable in two bytes");
        vec![0x80 | (((l >> 8) as u8) << 4) | b, (l & 0xff) as u8]
    }

    fn table(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn one_and_two_byte_entries() {
        // A function whose first statement is on line 3 (+2 lines before
        // any code), 4 bytes there, 6 bytes on line 4, then a jump of 300
        // lines (two-byte form, high bits used) before 2 more bytes.
        let t = table(&[short(0, 2), short(4, 1), short(6, 0), long(2, 300)]);
        assert_eq!(t, [0x40, 0x24, 0x06, 0x92, 0x2c]);
        let lt = LineTable::new(&t);
        for (offset, line) in [
            (0, 3),
            (3, 3),
            (4, 4),
            (9, 4),
            (10, 4),
            (11, 4),
            (12, 304),
            (99, 304),
        ] {
            assert_eq!(line_of(&t, offset), line, "offset {offset}");
            assert_eq!(lt.line(offset), line, "table, offset {offset}");
        }
        assert_eq!(lt.first_line(), 3);
    }

    #[test]
    fn runs_cover_every_offset_once() {
        let t = table(&[
            long(0, 41),
            short(5, 1),
            short(0, 2),
            short(7, 0),
            long(15, 2047),
        ]);
        let lt = LineTable::new(&t);
        let runs: Vec<LineRun> = lt.runs().collect();
        assert_eq!(
            runs,
            vec![
                LineRun {
                    start: 0,
                    end: Some(5),
                    line: 42
                },
                // +1 then +2 lines at offset 5: one run on line 45.
                LineRun {
                    start: 5,
                    end: Some(12),
                    line: 45
                },
                LineRun {
                    start: 12,
                    end: Some(27),
                    line: 45
                },
                LineRun {
                    start: 27,
                    end: None,
                    line: 2092
                },
            ]
        );
        for offset in 0..40 {
            let run = runs
                .iter()
                .find(|r| r.start <= offset && r.end.is_none_or(|e| offset < e))
                .expect("a run");
            assert_eq!(run.line, line_of(&t, offset), "offset {offset}");
        }
    }

    #[test]
    fn first_line_of_a_class_body() {
        // 8 bytes of preamble before line 10 is set, then 4 bytes on line 13.
        let t = table(&[long(8, 9), short(4, 3)]);
        let lt = LineTable::new(&t);
        assert_eq!(lt.line(0), 1);
        assert_eq!(lt.line(8), 10);
        assert_eq!(lt.line(12), 13);
        assert_eq!(lt.first_line(), 10);
    }

    #[test]
    fn code_on_line_one() {
        // `def f(): return 1` on line 1: no entry at all.
        assert_eq!(LineTable::new(&[]).first_line(), 1);
        assert_eq!(LineTable::new(&[]).line(7), 1);
        assert_eq!(LineTable::new(&[]).runs().count(), 1);
    }

    #[test]
    fn truncated_tables_stop_at_the_cut() {
        assert_eq!(line_of(&[], 5), 1);
        // A two-byte entry cut after its first byte.
        assert_eq!(line_of(&[0x80], 5), 1);
        assert_eq!(LineTable::new(&[0x85]).line(9), 1);
        let t = table(&[short(0, 3), vec![0x91]]);
        assert_eq!(line_of(&t, 50), 4);
        assert_eq!(LineTable::new(&t).line(50), 4);
    }

    #[test]
    fn lines_past_u32_saturate() {
        // 2.1 million entries of +2047 lines reach past u32::MAX.
        let t: Vec<u8> = (0..2_100_000).flat_map(|_| long(1, 2047)).collect();
        let lt = LineTable::new(&t);
        assert_eq!(lt.line(10), 1 + 10 * 2047);
        assert_eq!(lt.line(2_099_999), u32::MAX);
        assert_eq!(line_of(&t, 2_099_999), u32::MAX);
    }
}
