//! Names drawn on the composed video, in any script: each name is split into runs by
//! the first installed font that has its characters (DejaVu Sans for Latin, Greek,
//! Cyrillic, Arabic, Hebrew…; Droid Sans Fallback for Chinese, Japanese and Korean),
//! each run is shaped by `rustybuzz` (joined Arabic letters, right-to-left order,
//! combining marks) and rasterised by `ab_glyph` into a coverage map that the composer
//! blends onto the picture. Written here because what ties the two crates together — a
//! fallback chain and one baseline across fonts — is a few dozen lines; a text layout
//! engine (cosmic-text, say) would bring a font database and a cache the composer does
//! not need.

use std::path::PathBuf;

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont, point};

/// Where Debian's packages (`fonts-dejavu-core`, `fonts-droid-fallback`, and Noto if
/// present) put the fonts used, in the order they are tried.
pub const INSTALLED_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
];

/// The fonts names are drawn with, in fallback order.
pub struct NameFonts {
    files: Vec<Vec<u8>>,
}

/// A name rasterised: `alpha` is `width` × `height` coverage, 0 (none) to 255 (full).
#[derive(Debug, Clone)]
pub struct Coverage {
    pub width: u32,
    pub height: u32,
    pub alpha: Vec<u8>,
}

impl NameFonts {
    /// The fonts at `paths` that can be read and parsed; the others are skipped.
    pub fn load(paths: &[PathBuf]) -> NameFonts {
        let mut files = Vec::new();
        for path in paths {
            match std::fs::read(path) {
                Ok(data) if FontRef::try_from_slice(&data).is_ok() => files.push(data),
                Ok(_) => tracing::warn!(font = %path.display(), "not a font Floo can read; names skip it"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(font = %path.display(), error = %e, "cannot read a font for names"),
            }
        }
        NameFonts { files }
    }

    /// The installed fonts of [`INSTALLED_FONTS`].
    pub fn installed() -> NameFonts {
        NameFonts::load(&INSTALLED_FONTS.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `text` in glyphs `px` pixels high (ascent to descent), or None without any font.
    pub fn render(&self, text: &str, px: f32) -> Option<Coverage> {
        let fonts: Vec<FontRef<'_>> = self.files.iter().filter_map(|d| FontRef::try_from_slice(d).ok()).collect();
        if fonts.is_empty() {
            return None;
        }
        let scale = PxScale::from(px);
        let ascent = fonts.iter().map(|f| f.as_scaled(scale).ascent()).fold(0.0_f32, f32::max);
        let descent = fonts.iter().map(|f| f.as_scaled(scale).descent()).fold(0.0_f32, f32::min);
        // Lay out every run's glyphs on one baseline.
        let mut placed = Vec::new();
        let mut pen = 0.0_f32;
        for (font_index, run) in runs(&fonts, text) {
            let font = &fonts[font_index];
            // (`load` kept only files that parse, so `fonts` and `files` line up.)
            let Some(face) = rustybuzz::Face::from_slice(&self.files[font_index], 0) else { continue };
            let mut buffer = rustybuzz::UnicodeBuffer::new();
            buffer.push_str(run);
            buffer.guess_segment_properties();
            let shaped = rustybuzz::shape(&face, &[], buffer);
            let k = font.as_scaled(scale).h_scale_factor();
            for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
                let glyph = GlyphId(info.glyph_id as u16).with_scale_and_position(
                    scale,
                    point(pen + pos.x_offset as f32 * k, ascent - pos.y_offset as f32 * k),
                );
                placed.push((font_index, glyph));
                pen += pos.x_advance as f32 * k;
            }
        }
        let (width, height) = (pen.ceil().max(1.0) as u32, (ascent - descent).ceil().max(1.0) as u32);
        let mut alpha = vec![0u8; (width * height) as usize];
        for (font_index, glyph) in placed {
            let Some(outlined) = fonts[font_index].outline_glyph(glyph) else { continue };
            let bounds = outlined.px_bounds();
            outlined.draw(|x, y, c| {
                let (px, py) = (bounds.min.x as i64 + i64::from(x), bounds.min.y as i64 + i64::from(y));
                if (0..i64::from(width)).contains(&px) && (0..i64::from(height)).contains(&py) {
                    let cell = &mut alpha[(py as u32 * width + px as u32) as usize];
                    *cell = (*cell).max((c.clamp(0.0, 1.0) * 255.0) as u8);
                }
            });
        }
        Some(Coverage { width, height, alpha })
    }
}

/// Splits `text` into runs of characters drawn by one font: the first font that has
/// a character draws it; spaces and marks stay with the run they are in; a character
/// no font has goes to the first font (which draws its "missing" box).
fn runs<'t>(fonts: &[FontRef<'_>], text: &'t str) -> Vec<(usize, &'t str)> {
    let mut runs: Vec<(usize, &str)> = Vec::new();
    let mut start = 0;
    let mut current: Option<usize> = None;
    for (at, ch) in text.char_indices() {
        let has = |f: &FontRef<'_>| f.glyph_id(ch).0 != 0;
        let keeps = current.is_some_and(|c| has(&fonts[c])) || (current.is_some() && is_joiner(ch));
        if keeps {
            continue;
        }
        let font = fonts.iter().position(has).unwrap_or(0);
        if let Some(c) = current
            && c != font
        {
            runs.push((c, &text[start..at]));
            start = at;
        }
        current = Some(font);
    }
    if let Some(c) = current {
        runs.push((c, &text[start..]));
    }
    runs
}

/// Spaces, joiners and combining marks: drawn with the run around them.
fn is_joiner(ch: char) -> bool {
    ch.is_whitespace() || matches!(ch, '\u{200C}' | '\u{200D}' | '\u{0300}'..='\u{036F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inked(c: &Coverage) -> usize {
        c.alpha.iter().filter(|&&a| a > 128).count()
    }

    #[test]
    fn names_in_every_script_are_drawn_not_boxed() {
        let fonts = NameFonts::installed();
        assert!(!fonts.is_empty(), "ops/lib.sh installs fonts-dejavu-core and fonts-droid-fallback");
        // What a character no font has looks like: the first font's missing-glyph box.
        let missing = fonts.render("\u{10FFFD}\u{10FFFD}", 32.0).expect("rendered");
        for name in ["Zoë", "Ωμέγα", "李雷", "محمد", "Дмитрий"] {
            let drawn = fonts.render(name, 32.0).expect("rendered");
            assert!(inked(&drawn) > 40, "{name} has ink");
            let boxes = fonts.render(&"\u{10FFFD}".repeat(name.chars().count()), 32.0).expect("boxes");
            assert_ne!(drawn.alpha, boxes.alpha, "{name} is not drawn as boxes");
            assert_ne!(drawn.alpha, missing.alpha);
        }
        // Arabic letters join: the word is narrower than its letters set apart.
        let word = fonts.render("محمد", 32.0).expect("word").width;
        let apart = fonts.render("م ح م د", 32.0).expect("letters").width;
        assert!(word < apart, "joined {word} px, apart {apart} px");
    }

    #[test]
    fn without_fonts_there_is_nothing_to_draw_with() {
        let none = NameFonts::load(&[PathBuf::from("/nonexistent/font.ttf")]);
        assert!(none.is_empty() && none.render("Zoë", 20.0).is_none());
    }
}
