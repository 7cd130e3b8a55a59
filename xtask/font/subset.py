"""Makes the kiosk's bundled UI font: Noto Sans CJK SC (SIL OFL 1.1), subset to what the UI and
visitors' names need, as WOFF2. Run by `cargo xtask font`, which supplies the source fonts (from
Debian's fonts-noto-cjk) and a Python with fontTools and brotli.

usage: subset.py SOURCE_DIR OUT_DIR REPO_ROOT

The characters kept:
- every hanzi of GB2312 (level 1: the 3,755 most common; level 2: 3,008 more, where many given
  names' characters are), its symbols and full-width forms;
- every non-ASCII character in the UI, the example event and the messages the device and the
  shell show (so no UI string ever falls back to a system font);
- ASCII, Latin-1 and common punctuation, so Latin text looks the same on every machine.
Rarer characters a visitor types fall back to the system's fonts (the CSS stack after it).
"""
import pathlib
import subprocess
import sys
import tempfile

src, out, root = (pathlib.Path(a) for a in sys.argv[1:4])
out.mkdir(parents=True, exist_ok=True)

chars = set()
# GB2312: rows 0xA1-0xA9 symbols and full-width forms, 0xB0-0xD7 level 1, 0xD8-0xF7 level 2.
for hi in list(range(0xA1, 0xAA)) + list(range(0xB0, 0xF8)):
    for lo in range(0xA1, 0xFF):
        try:
            chars.add(bytes([hi, lo]).decode("gb2312"))
        except UnicodeDecodeError:
            pass
chars.update(chr(c) for c in range(0x20, 0x7F))
chars.update(chr(c) for c in range(0xA0, 0x100))
chars.update("‐‑–—‘’“”•…‰′″‹›€™←↑→↓✓✔✕✗·、。〈〉《》「」『』【】〔〕〖〗〜・")
sources = []
for pattern in ["ui/*.html", "ui/*.js", "examples/*.json", "src-tauri/src/*.rs",
                "crates/protocol/src/**/*.rs", "crates/device/src/**/*.rs"]:
    sources.extend(sorted(root.glob(pattern)))
ui_chars = set()
for path in sources:
    ui_chars.update(c for c in path.read_text(encoding="utf-8") if ord(c) > 0x7F)
chars |= ui_chars
chars = sorted(c for c in chars if c.isprintable() or c == "\u00a0")
text = pathlib.Path(tempfile.mkdtemp()) / "chars.txt"
text.write_text("".join(chars), encoding="utf-8")
print(f"{len(chars)} characters ({len(ui_chars)} non-ASCII from {len(sources)} source files)")

for weight in ["Regular", "Bold"]:
    dest = out / f"NotoSansSC-Sealbox-{weight}.woff2"
    subprocess.run([
        sys.executable, "-m", "fontTools.subset",
        str(src / f"NotoSansCJK-{weight}.ttc"),
        "--font-number=2",  # the collection's Noto Sans CJK SC (Simplified Chinese glyph forms)
        f"--text-file={text}",
        "--flavor=woff2",
        "--no-hinting",       # FreeType, CoreText and DirectWrite render CJK well unhinted; 20% smaller
        "--desubroutinize",   # compresses better under WOFF2's brotli
        "--name-IDs=*",       # keep the copyright and licence records
        "--name-languages=*",
        f"--output-file={dest}",
    ], check=True)
    print(f"{dest}: {dest.stat().st_size} bytes")
text.unlink()
text.parent.rmdir()
