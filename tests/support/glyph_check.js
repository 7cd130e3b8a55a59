const done = arguments[arguments.length - 1];
(async () => {
  const family = getComputedStyle(document.documentElement).fontFamily;
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 64;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const draw = (font, ch) => {
    ctx.font = font;
    ctx.clearRect(0, 0, 64, 64);
    ctx.fillStyle = '#000';
    ctx.textBaseline = 'middle';
    ctx.fillText(ch, 8, 32);
    return { width: ctx.measureText(ch).width, pixels: ctx.getImageData(0, 0, 64, 64).data };
  };
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.textContent.trim() && n.parentElement) {
      const st = getComputedStyle(n.parentElement);
      texts.push([n.textContent.trim(), `${st.fontWeight} 20px ${st.fontFamily}`]);
    }
  }
  for (const lang of Object.keys(window.SEALBOX_TEXT)) {
    for (const v of Object.values(window.SEALBOX_TEXT[lang])) {
      const str = typeof v === 'function' ? v(12, 34) : v;
      for (const weight of [400, 700]) texts.push([String(str), `${weight} 20px ${family}`]);
    }
  }
  // What visitors type, beyond the UI's own strings: the hundred commonest surnames, most of them
  // only in the full faces that load after the first paint (the UI's small faces lack them).
  const names = '王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤';
  for (const weight of [400, 700]) texts.push([names, `${weight} 20px ${family}`]);
  const fonts = [...new Set(texts.map(t => t[1]))];
  for (const f of fonts) await document.fonts.load(f, texts.filter(t => t[1] === f).map(t => t[0]).join(''));
  await document.fonts.ready;
  const nothing = new Map();
  const missingLike = (font, ch) => {
    if (!nothing.has(font)) nothing.set(font, draw(font, '\u{10FFFD}').pixels);
    const got = draw(font, ch);
    return got.width === 0 || same(got.pixels, nothing.get(font));
  };
  if (!missingLike('400 20px sans-serif', '中')) {
    return done({ error: 'the check cannot see a missing glyph: a system font draws 中' });
  }
  const seen = new Set();
  const missing = [];
  for (const [text, font] of texts) {
    for (const ch of text) {
      if (/\s/.test(ch) || seen.has(font + ch)) continue;
      seen.add(font + ch);
      if (missingLike(font, ch)) missing.push({ ch, text: text.slice(0, 40), font });
    }
  }
  done({ checked: seen.size, strings: texts.length, missing: missing.slice(0, 20), missingCount: missing.length });
})().catch(e => done({ error: String(e) }));
