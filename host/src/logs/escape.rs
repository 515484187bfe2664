//! Guest text made safe to show inside a log record: terminal escape
//! sequences removed. The record then prints it with `{:?}`, which quotes
//! it and escapes newlines, carriage returns, other control characters and
//! invisible format characters (bidi overrides and the like), so the text
//! can never start a line of its own or restyle the operator's terminal.

const ESC: char = '\u{1b}';
/// The C1 control introducing a CSI sequence, as `ESC [` does.
const CSI: char = '\u{9b}';
const BEL: char = '\u{7}';

/// `text` without ANSI/VT escape sequences (CSI, OSC and two-character
/// escapes); a lone ESC is dropped too.
pub fn strip_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.peek() {
                Some('[') => {
                    chars.next();
                    skip_csi(&mut chars);
                }
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                // A two-character escape (e.g. `ESC c`, a reset).
                Some(&next) if ('\u{20}'..='\u{7e}').contains(&next) => {
                    chars.next();
                }
                _ => {}
            },
            CSI => skip_csi(&mut chars),
            c => out.push(c),
        }
    }
    out
}

/// Parameters and intermediates, then one final byte.
fn skip_csi(chars: &mut impl Iterator<Item = char>) {
    for c in chars {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
        if !('\u{20}'..='\u{3f}').contains(&c) {
            // Not a CSI character: the sequence was malformed; stop here
            // (the character is dropped with it).
            break;
        }
    }
}

/// An OSC/DCS-style string, ended by BEL or `ESC \`.
fn skip_string(chars: &mut std::iter::Peekable<impl Iterator<Item = char>>) {
    while let Some(c) = chars.next() {
        if c == BEL {
            break;
        }
        if c == ESC {
            if chars.peek() == Some(&'\\') {
                chars.next();
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_colours_titles_and_resets() {
        assert_eq!(
            strip_terminal_escapes("\u{1b}[1;31mERROR\u{1b}[0m ok"),
            "ERROR ok"
        );
        assert_eq!(
            strip_terminal_escapes("a\u{1b}]0;title\u{7}b\u{1b}]8;;x\u{1b}\\c"),
            "abc"
        );
        assert_eq!(strip_terminal_escapes("\u{1b}cclear"), "clear");
        assert_eq!(strip_terminal_escapes("\u{9b}2Jx"), "x");
        assert_eq!(strip_terminal_escapes("end\u{1b}"), "end");
        assert_eq!(strip_terminal_escapes("café ✓"), "café ✓");
    }

    #[test]
    fn debug_formatting_escapes_what_is_left() {
        let shown = format!(
            "{:?}",
            strip_terminal_escapes("a\nb\rc\u{202e}d\u{2028}e\u{85}")
        );
        assert!(!shown.contains(['\n', '\r', '\u{202e}', '\u{2028}', '\u{85}']));
        assert!(shown.starts_with('"') && shown.ends_with('"'));
    }
}
