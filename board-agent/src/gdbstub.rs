//! A small client of the GDB remote serial protocol, enough to read and write
//! target memory through qemu's gdbstub (`-gdb tcp:127.0.0.1:PORT`).
//!
//! qemu's stub is all-stop: memory is read with the guest halted. Each access
//! batch halts the guest (0x03), reads and writes, and continues (`c`). Under
//! `-icount` the guest's clock does not advance while halted, so polling does
//! not change what is measured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::rtt::MemoryAccess;

#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("gdbstub connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("gdbstub protocol: {0}")]
    Protocol(String),
    #[error("gdbstub refused to access memory at {addr:#x}: {reply}")]
    Memory { addr: u32, reply: String },
}

/// A connection to a gdbstub.
pub struct GdbClient {
    stream: TcpStream,
    running: bool,
    buf: Vec<u8>,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decode a hex string into bytes.
pub fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(hex_nibble(p[0])? << 4 | hex_nibble(p[1])?))
        .collect()
}

fn encode_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

impl GdbClient {
    /// Connect; the guest is assumed running (qemu started without -S).
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, GdbError> {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| GdbError::Protocol(format!("bad gdbstub address {addr}")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let mut c = Self {
            stream,
            running: true,
            buf: Vec::new(),
        };
        // The stub halts the guest when a debugger attaches; query the reason
        // and carry on from there.
        c.send_packet(b"?")?;
        let _ = c.recv_packet()?;
        c.running = false;
        Ok(c)
    }

    fn send_packet(&mut self, body: &[u8]) -> Result<(), GdbError> {
        let mut pkt = Vec::with_capacity(body.len() + 4);
        pkt.push(b'$');
        pkt.extend_from_slice(body);
        pkt.extend_from_slice(format!("#{:02x}", checksum(body)).as_bytes());
        for _ in 0..3 {
            self.stream.write_all(&pkt)?;
            match self.read_byte()? {
                b'+' => return Ok(()),
                b'-' => continue,
                other => {
                    // A stop reply or output may arrive before the ack; keep it.
                    self.buf.insert(0, other);
                    return Ok(());
                }
            }
        }
        Err(GdbError::Protocol("packet not acknowledged".into()))
    }

    fn read_byte(&mut self) -> Result<u8, GdbError> {
        if !self.buf.is_empty() {
            return Ok(self.buf.remove(0));
        }
        let mut b = [0u8; 1];
        self.stream.read_exact(&mut b)?;
        Ok(b[0])
    }

    /// The next reply that is not a stop notification (`T..`/`S..`): the
    /// stub may send one more of those after a halt.
    fn recv_reply(&mut self) -> Result<Vec<u8>, GdbError> {
        loop {
            let p = self.recv_packet()?;
            if !(p.first() == Some(&b'T') || p.first() == Some(&b'S')) {
                return Ok(p);
            }
        }
    }

    fn recv_packet(&mut self) -> Result<Vec<u8>, GdbError> {
        loop {
            let c = self.read_byte()?;
            if c != b'$' {
                continue;
            }
            let mut body = Vec::new();
            loop {
                let c = self.read_byte()?;
                if c == b'#' {
                    break;
                }
                body.push(c);
            }
            let hi = self.read_byte()?;
            let lo = self.read_byte()?;
            let sum = hex_nibble(hi).zip(hex_nibble(lo)).map(|(h, l)| h << 4 | l);
            if sum == Some(checksum(&body)) {
                self.stream.write_all(b"+")?;
                return Ok(body);
            }
            self.stream.write_all(b"-")?;
        }
    }

    /// Halt the guest (no-op when halted).
    pub fn halt(&mut self) -> Result<(), GdbError> {
        if self.running {
            self.stream.write_all(&[0x03])?;
            let _stop = self.recv_packet()?;
            self.running = false;
        }
        Ok(())
    }

    /// Let the guest run again.
    pub fn resume(&mut self) -> Result<(), GdbError> {
        if !self.running {
            self.send_packet(b"c")?;
            self.running = true;
        }
        Ok(())
    }

    fn read_halted(&mut self, addr: u32, out: &mut [u8]) -> Result<(), GdbError> {
        let mut done = 0;
        while done < out.len() {
            let n = (out.len() - done).min(2048);
            let a = addr.wrapping_add(done as u32);
            self.send_packet(format!("m{a:x},{n:x}").as_bytes())?;
            let reply = self.recv_reply()?;
            let bytes =
                decode_hex(&reply)
                    .filter(|b| b.len() == n)
                    .ok_or_else(|| GdbError::Memory {
                        addr: a,
                        reply: String::from_utf8_lossy(&reply).into_owned(),
                    })?;
            out[done..done + n].copy_from_slice(&bytes);
            done += n;
        }
        Ok(())
    }

    fn write_halted(&mut self, addr: u32, data: &[u8]) -> Result<(), GdbError> {
        let pkt = format!("M{addr:x},{:x}:{}", data.len(), encode_hex(data));
        self.send_packet(pkt.as_bytes())?;
        let reply = self.recv_reply()?;
        if reply != b"OK" {
            return Err(GdbError::Memory {
                addr,
                reply: String::from_utf8_lossy(&reply).into_owned(),
            });
        }
        Ok(())
    }
}

impl MemoryAccess for GdbClient {
    type Error = GdbError;

    fn begin(&mut self) -> Result<(), GdbError> {
        self.halt()
    }

    fn end(&mut self) -> Result<(), GdbError> {
        self.resume()
    }

    fn read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), GdbError> {
        self.read_halted(addr, out)
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), GdbError> {
        self.write_halted(addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let data = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(
            decode_hex(encode_hex(&data).as_bytes()),
            Some(data.to_vec())
        );
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
    }

    #[test]
    fn checksum_is_mod_256_sum() {
        assert_eq!(
            checksum(b"m0,4"),
            (b'm' as u32 + b'0' as u32 + b',' as u32 + b'4' as u32) as u8
        );
    }
}
