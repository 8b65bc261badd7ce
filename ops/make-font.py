#!/usr/bin/env python3
"""Regenerates src/recording/glyphs.rs: an 8x16 bitmap of each printable Latin-1
character, rendered from DejaVu Sans Mono Bold (fonts-dejavu-core), for the names the
composer draws on recordings. Needs Pillow (pip install pillow); run from the repo root:

    python3 ops/make-font.py > src/recording/glyphs.rs
"""
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
CHARS = [chr(c) for c in list(range(0x20, 0x7F)) + list(range(0xA0, 0x100))]

font = ImageFont.truetype(FONT, 13)
print("//! 8x16 bitmaps of the printable Latin-1 characters (U+0020-U+007E, U+00A0-U+00FF),")
print("//! one byte per row, most significant bit leftmost; rendered from DejaVu Sans Mono Bold")
print("//! by `ops/make-font.py` (do not edit by hand).")
print()
print("/// The glyph rows of each character, in the order given above.")
print(f"pub const GLYPHS: [[u8; 16]; {len(CHARS)}] = [")
for ch in CHARS:
    img = Image.new("L", (8, 16), 0)
    ImageDraw.Draw(img).text((0, 0), ch, fill=255, font=font)
    rows = []
    for y in range(16):
        bits = 0
        for x in range(8):
            if img.getpixel((x, y)) >= 110:
                bits |= 0x80 >> x
        rows.append(f"0x{bits:02x}")
    print(f"    [{', '.join(rows)}], // U+{ord(ch):04X}")
print("];")
