//! The terminal a `tty` process gets, emulated: the line discipline on what
//! the client types (echo, Ctrl-C, Ctrl-D, CR as NL) and the output
//! translation (`\n` → `\r\n`).

use bytes::Bytes;

/// What typed bytes amount to, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Bytes to echo and to pass to the command's stdin.
    Data(Vec<u8>),
    /// Ctrl-C: interrupt the command (whatever follows is dropped).
    Interrupt,
    /// Ctrl-D: close the command's stdin.
    EndOfInput,
}

/// Applies the line discipline to bytes written to a terminal.
pub fn discipline(data: &[u8]) -> Vec<Typed> {
    let mut out = Vec::new();
    let mut pending = Vec::with_capacity(data.len());
    let flush = |out: &mut Vec<Typed>, pending: &mut Vec<u8>| {
        if !pending.is_empty() {
            out.push(Typed::Data(std::mem::take(pending)));
        }
    };
    for &b in data {
        match b {
            0x03 => {
                flush(&mut out, &mut pending);
                out.push(Typed::Interrupt);
                return out;
            }
            0x04 => {
                flush(&mut out, &mut pending);
                out.push(Typed::EndOfInput);
            }
            b'\r' => pending.push(b'\n'),
            b => pending.push(b),
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Terminal output translation: `\n` → `\r\n` (unless already `\r\n`).
/// `last_was_cr` carries the last byte's state from one chunk to the next.
pub fn crlf(data: &Bytes, last_was_cr: &mut bool) -> Bytes {
    if !data.contains(&b'\n') {
        *last_was_cr = data.last() == Some(&b'\r');
        return data.clone();
    }
    let mut out = Vec::with_capacity(data.len() + 16);
    for &b in data.iter() {
        if b == b'\n' && !*last_was_cr {
            out.push(b'\r');
        }
        out.push(b);
        *last_was_cr = b == b'\r';
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_translation_keeps_existing_crlf() {
        let mut cr = false;
        assert_eq!(&crlf(&Bytes::from_static(b"a\nb\r\nc"), &mut cr)[..], b"a\r\nb\r\nc");
        let mut cr = false;
        let _ = crlf(&Bytes::from_static(b"x\r"), &mut cr);
        assert_eq!(&crlf(&Bytes::from_static(b"\ny"), &mut cr)[..], b"\ny");
    }

    #[test]
    fn discipline_splits_at_control_characters() {
        assert_eq!(discipline(b"ls\r"), vec![Typed::Data(b"ls\n".to_vec())]);
        assert_eq!(
            discipline(b"a\x04b"),
            vec![Typed::Data(b"a".to_vec()), Typed::EndOfInput, Typed::Data(b"b".to_vec())]
        );
        assert_eq!(discipline(b"x\x03y"), vec![Typed::Data(b"x".to_vec()), Typed::Interrupt]);
    }
}
