//! The names people and teams show each other. A name is what others read on the forum,
//! in a call and on a recording, so it must not be able to pose as another: it is put
//! in Unicode NFC, trimmed, its runs of whitespace (line breaks too) made one space, and
//! it may not hold control, format (zero-width, bidirectional overrides and isolates),
//! private-use or unassigned characters. The joiners U+200C/U+200D stay where scripts
//! and emoji need them: between two visible characters.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("Enter a name.")]
    Empty,
    #[error("A name can be at most {max} characters (this one has {length}).")]
    TooLong { max: usize, length: usize },
    #[error("A name cannot contain invisible or control characters (such as {0}).")]
    Invisible(String),
}

/// `raw` as a name of at most `max` characters, or why it cannot be one.
pub fn clean(raw: &str, max: usize) -> Result<String, NameProblem> {
    let folded = fold(raw);
    if let Some(c) = folded.iter().enumerate().find_map(|(i, &c)| (!allowed(&folded, i)).then_some(c)) {
        return Err(NameProblem::Invisible(format!("U+{:04X}", u32::from(c))));
    }
    let length = folded.len();
    match length {
        0 => Err(NameProblem::Empty),
        _ if length > max => Err(NameProblem::TooLong { max, length }),
        _ => Ok(folded.into_iter().collect()),
    }
}

/// A name from an identity provider, which Floo cannot send back for another: what
/// [`clean`] refuses is left out and the result cut to `max`; None if nothing is left.
pub fn salvage(raw: &str, max: usize) -> Option<String> {
    let folded = fold(raw);
    let kept: String =
        folded.iter().enumerate().filter(|&(i, _)| allowed(&folded, i)).map(|(_, &c)| c).take(max).collect();
    let kept = fold(&kept).into_iter().collect::<String>(); // leaving out may join spaces
    (!kept.is_empty()).then_some(kept)
}

/// NFC, trimmed, whitespace runs as one space.
fn fold(raw: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(raw.len());
    for c in raw.nfc() {
        if c.is_whitespace() {
            if out.last().is_some_and(|&last| last != ' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    if out.last() == Some(&' ') {
        out.pop();
    }
    out
}

fn allowed(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    match c.general_category() {
        GeneralCategory::Format if matches!(c, '\u{200C}' | '\u{200D}') => {
            let visible = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|&n| n != ' ' && visible(n));
            visible(i.checked_sub(1)) && visible(Some(i + 1))
        }
        _ => visible(c) || c == ' ',
    }
}

fn visible(c: char) -> bool {
    !matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(clean("  Ada \t\r\n  Lovelace  ", 100).as_deref(), Ok("Ada Lovelace"));
        // "é" as e + combining acute becomes the one precomposed character.
        assert_eq!(clean("Ame\u{301}lie", 100).as_deref(), Ok("Am\u{e9}lie"));
        assert_eq!(clean("李雷", 100).as_deref(), Ok("李雷"));
        assert_eq!(clean("Дмитрий\u{a0}Ωμέγα", 100).as_deref(), Ok("Дмитрий Ωμέγα"));
        // Joiners where scripts and emoji need them.
        assert_eq!(clean("می\u{200C}خواهم", 100).as_deref(), Ok("می\u{200C}خواهم"));
        assert_eq!(clean("👩\u{200D}💻 Dev", 100).as_deref(), Ok("👩\u{200D}💻 Dev"));
    }

    #[test]
    fn names_that_hide_or_reorder_characters_are_refused() {
        for trick in [
            "Ali\u{200B}ce",
            "Bob\u{202E}ecilA",
            "\u{2066}Alice\u{2069}",
            "Al\u{0}ice",
            "A\u{7}",
            "Ali\u{FEFF}ce",
            "A\u{E000}",
            "x \u{200D}",
        ] {
            assert!(matches!(clean(trick, 100), Err(NameProblem::Invisible(_))), "{trick:?}");
        }
        assert_eq!(clean(" \u{3000}\n", 100), Err(NameProblem::Empty));
        assert_eq!(clean(&"é".repeat(101), 100), Err(NameProblem::TooLong { max: 100, length: 101 }));
        // Decomposed characters count once they are composed.
        assert!(clean(&"e\u{301}".repeat(100), 100).is_ok());
    }

    #[test]
    fn names_from_providers_lose_what_is_refused() {
        assert_eq!(salvage("Ali\u{200B}ce \u{202E}  Smith\r\n", 100).as_deref(), Some("Alice Smith"));
        assert_eq!(salvage("\u{200B}\u{202E}", 100), None);
        assert_eq!(salvage(&"x".repeat(300), 100).map(|n| n.len()), Some(100));
    }
}
