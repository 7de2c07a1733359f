//! File names that come from a peer (XEP-0234 §4 `<name/>`), made safe to create in a
//! directory of ours.
//!
//! The name in an offer is only a suggestion (XEP-0234 §4: the receiver decides where the file
//! goes). [`sanitize`] keeps the last path component and removes what could escape the target
//! directory, hide the file, disguise its type or fail on another system: separators, `..`,
//! control and bidirectional-override characters, leading dots, trailing dots and spaces,
//! characters Windows forbids, Windows device names, and bytes beyond [`MAX_NAME_BYTES`].
//! [`free_name`] then picks a name that does not exist yet in the directory, unless the
//! caller asks to overwrite.

use std::path::Path;

/// Longest file name we create, in bytes of UTF-8 (the usual file-system limit, NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// The name used when nothing usable is left of the peer's name.
pub const FALLBACK_NAME: &str = "received-file";

/// Most candidate names [`free_name`] tries (`name (1).ext`, `name (2).ext`, ...).
const MAX_SUFFIX: u32 = 9999;

/// Device names Windows reserves whatever the extension.
const WINDOWS_DEVICES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Characters that change the display order of text (Unicode bidi controls): an
/// `invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A safe file name from a name a peer offered. Never empty, never a path, at most
/// [`MAX_NAME_BYTES`] bytes; [`FALLBACK_NAME`] when nothing usable is left.
pub fn sanitize(offered: &str) -> String {
    // Only the last component of whatever path the peer sent, with either separator.
    let last = offered.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .map(|c| match c {
            ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .collect();
    // No hidden files, no "." or "..", nothing Windows would silently change.
    name = name
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    if name.is_empty() {
        return FALLBACK_NAME.to_string();
    }
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    if WINDOWS_DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        name.insert(0, '_');
    }
    let cut = truncate_keeping_extension(&name, MAX_NAME_BYTES);
    let cut = cut.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if cut.is_empty() {
        FALLBACK_NAME.to_string()
    } else {
        cut.to_string()
    }
}

/// Cuts `name` to at most `max` bytes on a character boundary, keeping a short extension.
fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        // An extension worth keeping is short; a "." deep in a long name is not one.
        Some(i) if i > 0 && name.len() - i <= 16 => name.split_at(i),
        _ => (name, ""),
    };
    let room = max.saturating_sub(ext.len());
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// `name`, or `name (N).ext` for the first N that does not exist in `dir`. With `overwrite`,
/// `name` itself. `None` when every candidate exists.
///
/// The answer is only a hint (another process may create the file afterwards); the
/// receiver's final step creates the name without replacing anything (see
/// `apps::file_sink`).
pub fn free_name(dir: &Path, name: &str, overwrite: bool) -> Option<String> {
    if overwrite || !dir.join(name).exists() {
        return Some(name.to_string());
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    (1..=MAX_SUFFIX)
        .map(|n| {
            let suffix = format!(" ({n})");
            let stem_room = MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len());
            let mut cut = stem_room.min(stem.len());
            while !stem.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{suffix}{ext}", &stem[..cut])
        })
        .find(|candidate| !dir.join(candidate).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_unchanged() {
        for n in [
            "report.pdf",
            "photo 2026-11-23.jpg",
            "ünïcødé файл.txt",
            "a",
            "x.tar.gz",
        ] {
            assert_eq!(sanitize(n), n);
        }
    }

    #[test]
    fn paths_and_traversal_are_cut_to_the_last_component() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("/etc/shadow"), "shadow");
        assert_eq!(sanitize("..\\..\\Windows\\system32\\evil.dll"), "evil.dll");
        assert_eq!(sanitize("dir/"), FALLBACK_NAME);
        assert_eq!(sanitize(".."), FALLBACK_NAME);
        assert_eq!(sanitize("."), FALLBACK_NAME);
        assert_eq!(sanitize(""), FALLBACK_NAME);
        assert_eq!(sanitize("a/.."), FALLBACK_NAME);
    }

    #[test]
    fn hidden_control_and_disguising_characters_go() {
        assert_eq!(sanitize(".bashrc"), "bashrc");
        assert_eq!(sanitize("...hidden"), "hidden");
        assert_eq!(sanitize("bad\nname\r\0.txt"), "badname.txt");
        assert_eq!(sanitize("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitize("trailing. . "), "trailing");
        assert_eq!(sanitize("what?.txt"), "what_.txt");
        assert_eq!(sanitize("c:evil"), "c_evil");
        assert_eq!(sanitize("\u{7f}\u{1b}[31m"), "[31m");
    }

    #[test]
    fn windows_device_names_are_prefixed() {
        assert_eq!(sanitize("CON"), "_CON");
        assert_eq!(sanitize("nul.txt"), "_nul.txt");
        assert_eq!(sanitize("com1.tar.gz"), "_com1.tar.gz");
        assert_eq!(sanitize("console.txt"), "console.txt");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.jpeg", "é".repeat(300));
        let s = sanitize(&long);
        assert!(s.len() <= MAX_NAME_BYTES, "{}", s.len());
        assert!(s.ends_with(".jpeg"));
        let no_ext = "x".repeat(1000);
        assert_eq!(sanitize(&no_ext).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn free_name_never_picks_an_existing_file() {
        let dir = std::env::temp_dir().join(format!("jingle-ice-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"1").unwrap();
        std::fs::write(dir.join("a (1).txt"), b"2").unwrap();
        assert_eq!(free_name(&dir, "b.txt", false).as_deref(), Some("b.txt"));
        assert_eq!(
            free_name(&dir, "a.txt", false).as_deref(),
            Some("a (2).txt")
        );
        assert_eq!(free_name(&dir, "a.txt", true).as_deref(), Some("a.txt"));
        std::fs::write(dir.join("noext"), b"3").unwrap();
        assert_eq!(
            free_name(&dir, "noext", false).as_deref(),
            Some("noext (1)")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn any_name_becomes_one_safe_component(name in proptest::prelude::any::<String>()) {
            let s = sanitize(&name);
            proptest::prop_assert!(!s.is_empty() && s.len() <= MAX_NAME_BYTES);
            proptest::prop_assert!(!s.contains('/') && !s.contains('\\'));
            proptest::prop_assert!(!s.starts_with('.'));
            proptest::prop_assert!(!s.chars().any(|c| c.is_control() || is_bidi_control(c)));
            proptest::prop_assert_eq!(sanitize(&s), s.clone(), "sanitising is idempotent");
        }
    }
}
