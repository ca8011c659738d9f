//! MicroPython's line-number table (`py/bc.h`), decoded on the host so the
//! target never spends time on it: bytecode offset → source line.

/// One table entry's advance: bytecode bytes and lines.
fn entries(table: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *table.get(i)?;
        if c & 0x80 == 0 {
            // 0b0LLBBBBB
            i += 1;
            Some(((c & 0x1f) as u32, (c >> 5) as u32))
        } else {
            // 0b1LLLBBBB 0bLLLLLLLL
            let lo = *table.get(i + 1)?;
            i += 2;
            Some(((c & 0x0f) as u32, (((c as u32) << 4) & 0x700) | lo as u32))
        }
    })
}

/// The source line of the opcode at `offset` (counted from the first opcode).
pub fn line_of(table: &[u8], offset: u32) -> u32 {
    let mut line = 1u32;
    let mut rest = offset;
    for (b, l) in entries(table) {
        if rest >= b {
            rest -= b;
            line = line.saturating_add(l);
        } else {
            break;
        }
    }
    line
}

/// A decoded table for repeated lookups: (first offset, line) runs, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    runs: Vec<(u32, u32)>,
}

impl LineTable {
    pub fn new(table: &[u8]) -> Self {
        let mut runs = vec![(0u32, 1u32)];
        let mut off = 0u32;
        let mut line = 1u32;
        for (b, l) in entries(table) {
            off = off.saturating_add(b);
            line = line.saturating_add(l);
            match runs.last_mut() {
                Some(last) if last.0 == off => last.1 = line,
                _ => runs.push((off, line)),
            }
        }
        Self { runs }
    }

    /// The function's first source line: the line of its first opcode, or,
    /// when that is still line 1 because the table's first entry advances
    /// the offset before the line (class bodies), the first line reached.
    pub fn first_line(&self) -> u32 {
        self.runs.iter().map(|r| r.1).find(|&l| l > 1).unwrap_or(1)
    }

    /// The line of the opcode at `offset` from the first opcode.
    pub fn line(&self, offset: u32) -> u32 {
        match self.runs.binary_search_by(|r| r.0.cmp(&offset)) {
            Ok(i) => self.runs[i].1,
            Err(0) => 1,
            Err(i) => self.runs[i - 1].1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The bit groups spell the encoding: 0b0_LL_BBBBB.
    #[allow(clippy::unusual_byte_groupings)]
    fn one_and_two_byte_entries() {
        // A function whose def is on line 3: offset 0 -> line 3 (+2 lines, 0 bytes),
        // then 4 bytes of code on line 3, then +1 line, then 6 bytes on line 4,
        // then a jump of 300 lines (two-byte entry) with 2 bytes.
        let table = [
            0b0_10_00000,        // b=0, l=2
            0b0_01_00100,        // b=4, l=1
            0b0_00_00110,        // b=6, l=0
            0x80 | (1 << 4) | 2, // b=2, l high bits 1 -> 256 +
            44,                  //      44 = 300
        ];
        let t = LineTable::new(&table);
        for (off, line) in [
            (0, 3),
            (3, 3),
            (4, 4),
            (9, 4),
            (10, 4),
            (11, 4),
            (12, 304),
            (99, 304),
        ] {
            assert_eq!(line_of(&table, off), line, "offset {off}");
            assert_eq!(t.line(off), line, "table, offset {off}");
        }
    }

    #[test]
    fn first_line_of_a_class_body() {
        // b=8, l=9 (two-byte form) then b=4, l=3: offsets 0-7 are "line 1".
        let t = LineTable::new(&[0x88, 0x09, 0x64]);
        assert_eq!(t.line(0), 1);
        assert_eq!(t.line(8), 10);
        assert_eq!(t.first_line(), 10);
    }

    #[test]
    fn truncated_and_empty_tables() {
        assert_eq!(line_of(&[], 5), 1);
        assert_eq!(line_of(&[0x80], 5), 1);
        assert_eq!(LineTable::new(&[0x85]).line(9), 1);
    }
}
