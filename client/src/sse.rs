//! An incremental SSE parser that follows the WHATWG rules: CR, LF and CRLF
//! end lines (a CR and an LF split across chunks count once), one leading
//! BOM is skipped, a single space after the colon is stripped, comments
//! and unknown fields are ignored, `retry:` takes digits only, an id with a
//! NUL is ignored, and an event still open when the stream ends is dropped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Frame {
    /// `event:`, or `message` when absent.
    pub(crate) event: String,
    pub(crate) data: String,
    /// The `id:` of this frame, if it carried one.
    pub(crate) id: Option<String>,
}

/// What the parser found in a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Frame(Frame),
    /// A `retry:` field: the reconnection delay, in milliseconds.
    Retry(u64),
}

/// Parser state across chunks.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next
    /// belongs to it.
    after_cr: bool,
    /// Past the start of the stream (and its BOM, if any).
    started: bool,
    /// Bytes of a BOM matched so far at the start.
    bom: usize,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl Parser {
    /// Feeds a chunk; returns what it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Parsed> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut out = Vec::new();
        for &byte in chunk {
            if !self.started {
                // One leading BOM is skipped, even split across chunks.
                if byte == BOM[self.bom] {
                    self.bom += 1;
                    self.started = self.bom == BOM.len();
                    continue;
                }
                self.started = true;
                for &partial in &BOM[..self.bom] {
                    self.byte(partial, &mut out);
                }
            }
            self.byte(byte, &mut out);
        }
        out
    }

    fn byte(&mut self, byte: u8, out: &mut Vec<Parsed>) {
        {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_ended(&line, out);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
    }

    fn line_ended(&mut self, line: &[u8], out: &mut Vec<Parsed>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(Parsed::Frame(Frame {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data,
                    id: self.id.take(),
                }));
            } else {
                self.event = None;
                self.id = None;
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(Parsed::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Parsed> {
        let mut parser = Parser::default();
        chunks.iter().flat_map(|chunk| parser.feed(chunk)).collect()
    }

    fn frame(event: &str, data: &str, id: Option<&str>) -> Parsed {
        Parsed::Frame(Frame {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        })
    }

    #[test]
    fn events_split_anywhere_parse_the_same() {
        let text = b"\xEF\xBB\xBFid: a:1\r\nevent: message\r\ndata: {\"x\":1}\r\ndata:  two\r\n\r\n: c\n\nretry: 1500\nretry: 1.5\ndata: x\n";
        let whole = frames(&[text]);
        assert_eq!(
            whole,
            [
                frame("message", "{\"x\":1}\n two", Some("a:1")),
                Parsed::Retry(1500)
            ],
            "an unterminated event is dropped"
        );
        for split in 1..text.len() {
            let (a, b) = text.split_at(split);
            assert_eq!(frames(&[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn ids_with_nul_are_ignored_and_cr_alone_ends_lines() {
        assert_eq!(
            frames(&[b"id: a\0b\rdata: d\r\r"]),
            [frame("message", "d", None)]
        );
    }
}
