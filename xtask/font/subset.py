"""Makes the kiosk's bundled UI font: Noto Sans CJK SC (SIL OFL 1.1), subset to what the UI and
visitors' names need, as WOFF2. Run by `cargo xtask font`, which supplies the source fonts (from
Debian's fonts-noto-cjk) and a Python with fontTools and brotli.

usage: subset.py SOURCE_DIR OUT_DIR REPO_ROOT
       subset.py --ui-only OUT_DIR REPO_ROOT   (only the UI's small faces and fonts.css, from the
                                               full faces already in OUT_DIR)

The characters kept:
- every hanzi of GB2312 (level 1: the 3,755 most common; level 2: 3,008 more, where many given
  names' characters are), its symbols and full-width forms;
- every non-ASCII character in the UI, the example event and the messages the device and the
  shell show (so no UI string ever falls back to a system font);
- ASCII, Latin-1 and common punctuation, so Latin text looks the same on every machine.
Rarer characters a visitor types fall back to the system's fonts (the CSS stack after it).

Each weight is then split once more: a small face with only the characters the UI itself shows
(ASCII, Latin-1, punctuation and the non-ASCII characters of the sources above; about 110 KB),
and the full face. `fonts.css` declares both with their `unicode-range`s, so the kiosk's first
paint waits for the small faces only; the page loads the full faces once the form is on screen.
"""
import pathlib
import subprocess
import sys
import tempfile

ui_only = sys.argv[1] == "--ui-only"
if ui_only:
    src, out, root = None, pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
else:
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
PUNCTUATION = "‐‑–—‘’“”•…‰′″‹›€™←↑→↓✓✔✕✗·、。〈〉《》「」『』【】〔〕〖〗〜・"
chars.update(PUNCTUATION)
sources = []
for pattern in ["ui/*.html", "ui/*.js", "examples/*.json", "src-tauri/src/*.rs",
                "crates/protocol/src/**/*.rs", "crates/device/src/**/*.rs"]:
    sources.extend(sorted(root.glob(pattern)))
ui_chars = set()
for path in sources:
    ui_chars.update(c for c in path.read_text(encoding="utf-8") if ord(c) > 0x7F)
latin = {chr(c) for c in range(0x20, 0x7F)} | {chr(c) for c in range(0xA0, 0x100)}
latin.update(PUNCTUATION)
chars |= ui_chars
ui_text = sorted(c for c in latin | ui_chars if c.isprintable() or c == "\u00a0")
chars = sorted(c for c in chars if c.isprintable() or c == "\u00a0")
text = pathlib.Path(tempfile.mkdtemp()) / "chars.txt"
text.write_text("".join(chars), encoding="utf-8")
print(f"{len(chars)} characters ({len(ui_chars)} non-ASCII from {len(sources)} source files)")

for weight in [] if ui_only else ["Regular", "Bold"]:
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
text.write_text("".join(ui_text), encoding="utf-8")
from fontTools.ttLib import TTFont  # noqa: E402 (the venv's, once the subsets are made)


def ranges(codepoints):
    """CSS unicode-range text for a set of code points."""
    cs, spans = sorted(codepoints), []
    for c in cs:
        if spans and c == spans[-1][1] + 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ", ".join(f"U+{a:X}" if a == b else f"U+{a:X}-{b:X}" for a, b in spans)


faces = []
for weight, css_weight in [("Regular", "100 500"), ("Bold", "600 900")]:
    full = out / f"NotoSansSC-Sealbox-{weight}.woff2"
    dest = out / f"NotoSansSC-Sealbox-UI-{weight}.woff2"
    subprocess.run([
        sys.executable, "-m", "fontTools.subset", str(full),
        f"--text-file={text}", "--flavor=woff2", "--no-hinting", "--desubroutinize",
        "--name-IDs=*", "--name-languages=*", f"--output-file={dest}",
    ], check=True)
    print(f"{dest}: {dest.stat().st_size} bytes")
    full_cmap = set(TTFont(full).getBestCmap())
    ui_cmap = set(TTFont(dest).getBestCmap())
    # The full face covers everything but control characters (such as the newlines between
    # elements, which WebKit looks up too) and the UI's characters that no face of ours has
    # (such as ⌫ or ✕): those go straight to the system's fonts instead of loading 2 MB.
    lacking = {ord(c) for c in ui_text} - full_cmap
    lacking |= set(range(0x20)) | set(range(0x7F, 0xA0))
    faces.append((full.name, css_weight, ranges(set(range(0x110000)) - lacking)))
    faces.append((dest.name, css_weight, ranges(ui_cmap)))
css = ["/* Made by `cargo xtask font` (xtask/font/subset.py); do not edit. The UI's font: Noto Sans SC",
       "   (SIL OFL 1.1, ui/fonts/OFL.txt), each weight as a full face and a small face of the UI's own",
       "   characters. Of faces that cover a character, the last declared is tried first, and a face",
       "   is fetched only when the page shows a character in its unicode-range: the first paint",
       "   waits for the small faces only. */"]
for name, css_weight, unicode_range in faces:
    css += ["@font-face {", '  font-family: "Sealbox Noto Sans SC";',
            f'  src: url("{name}") format("woff2");', f"  font-weight: {css_weight};",
            "  font-style: normal;", "  font-display: block;",
            f"  unicode-range: {unicode_range};", "}"]
(out / "fonts.css").write_text("\n".join(css) + "\n", encoding="utf-8")
print(f"{out / 'fonts.css'}: {len(faces)} faces")
text.unlink()
text.parent.rmdir()
