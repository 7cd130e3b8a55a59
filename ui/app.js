// Sealbox kiosk: the visitor form and the manager screens. All data goes through Tauri
// commands; the page keeps a draft only in the DOM and wipes it after submit or when idle.
"use strict";

(() => {
  const invoke = (cmd, args) => window.__TAURI__.core.invoke(cmd, args || {});
  const TEXT = window.SEALBOX_TEXT;
  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (v === true) e.setAttribute(k, "");
      else if (v !== false && v != null) e.setAttribute(k, v);
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  };

  // The manager's two-minute lock is kept by the library (its clock, its check): the page
  // reports activity at most this often and asks whether the screens are still unlocked.
  const MANAGER_TOUCH_MS = 2000;
  const IDLE_COUNTDOWN_S = 10;
  // A scan is at least this many characters, at least SCAN_FAST_SHARE of their gaps under the
  // event's scan_max_gap_ms (a scanner's radio or USB hub may hold a key back now and then),
  // none longer than SCAN_PAUSE times it.
  const MIN_SCAN_CHARS = 6;
  const SCAN_FAST_SHARE = 0.8;
  const SCAN_PAUSE = 4;

  let lang = "zh";
  let event = null;
  let screen = null;
  let thanksTimer = null;
  let idleTimer = null;
  let countdownTimer = null;
  let lastTouch = 0;
  let managerTab = "overview";
  let pinPurpose = "unlock";
  let pinDigits = "";
  let lastSync = null;
  // Promoter mode: the staff code's id (never a name), and how many entries it saved here.
  let promoter = null;
  let promoterSaved = 0;
  let promoterTouched = 0;
  // The scanner's burst being read: its text only in this variable, never logged or stored.
  const scan = { keys: [], buf: "", last: 0, snap: null, active: false, timer: null };

  const t = (key, ...args) => {
    const v = TEXT[lang][key];
    return typeof v === "function" ? v(...args) : v != null ? v : key;
  };
  const pick = (text) => (text ? text[lang] : "");

  // ---- lockdown: no context menu, zoom, reload, drops or navigation ------------------------
  document.addEventListener("contextmenu", (e) => e.preventDefault());
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => e.preventDefault());
  document.addEventListener("wheel", (e) => { if (e.ctrlKey) e.preventDefault(); }, { passive: false });
  document.addEventListener("gesturestart", (e) => e.preventDefault());
  document.addEventListener("keydown", (e) => {
    const k = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    if (k === "f5" || k === "f11" || k === "f12" || (mod && ["r", "p", "s", "o", "f", "g", "u", "+", "-", "=", "0"].includes(k)) ||
        (e.altKey && (k === "arrowleft" || k === "arrowright" || k === "home"))) {
      e.preventDefault();
    }
  }, true);
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a");
    if (a) e.preventDefault();
  });

  // ---- screens --------------------------------------------------------------------------------
  function show(name) {
    screen = name;
    for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== `screen-${name}`;
    document.body.dataset.screen = name;
  }

  function applyText() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll("[data-i18n-label]")) e.setAttribute("aria-label", t(e.dataset.i18nLabel));
    $("lang-zh").setAttribute("aria-pressed", String(lang === "zh"));
    $("lang-en").setAttribute("aria-pressed", String(lang === "en"));
    $("event-name").textContent = event ? pick(event.name) : "Sealbox";
  }

  function setLang(l) {
    lang = l;
    applyText();
    if (screen === "form") renderFormText();
    if (screen === "manager") refreshManager();
    refreshStatus();
  }

  // ---- the visitor form -----------------------------------------------------------------------
  function inputFor(f) {
    const common = { name: f.key, autocomplete: "off", spellcheck: "false", autocapitalize: "off", "aria-describedby": `err-${f.key}` };
    const id = `f-${f.key}`;
    switch (f.kind) {
      case "phone":
        return el("input", { ...common, id, type: "tel", inputmode: "tel", maxlength: "20" });
      case "email":
        return el("input", { ...common, id, type: "email", inputmode: "email", maxlength: String(f.max_length || 200) });
      case "checkbox":
        return el("input", { ...common, id, type: "checkbox" });
      case "choice":
      case "multi": {
        const box = el("div", { class: "options", role: f.kind === "choice" ? "radiogroup" : "group", id, "aria-labelledby": `l-${f.key}` });
        for (const o of f.options) {
          const input = el("input", { ...common, type: f.kind === "choice" ? "radio" : "checkbox", value: o.value });
          box.append(el("label", { class: "chip" }, input, el("span", { "data-option": o.value })));
        }
        return box;
      }
      default:
        return el("input", { ...common, id, type: "text", maxlength: String(f.max_length || 200) });
    }
  }

  // The fields on the form: staff-only ones exist only in promoter mode.
  function shownFields() {
    return event.fields.filter((f) => promoter || f.audience !== "staff");
  }

  function renderForm() {
    const box = $("fields");
    box.replaceChildren();
    for (const f of shownFields()) {
      const staff = f.audience === "staff";
      const wrap = el("div", { class: `field kind-${f.kind}${staff ? " staff" : ""}`, "data-field": f.key });
      const label = el("label", { id: `l-${f.key}`, for: `f-${f.key}`, class: "label" },
        el("span", { class: "label-text" }), el("span", { class: "req" }), staff ? el("span", { class: "staff-tag" }) : null);
      wrap.append(label, inputFor(f), el("p", { class: "error", id: `err-${f.key}`, role: "alert" }));
      box.append(wrap);
    }
    $("consent").checked = false;
    $("scan-note").textContent = "";
    $("promoter-bar").hidden = !promoter;
    clearErrors();
    renderFormText();
  }

  function renderFormText() {
    for (const f of event.fields) {
      const wrap = document.querySelector(`[data-field="${f.key}"]`);
      if (!wrap) continue;
      wrap.querySelector(".label-text").textContent = pick(f.label);
      wrap.querySelector(".req").textContent = f.required ? ` (${t("required")})` : ` (${t("optional")})`;
      const tag = wrap.querySelector(".staff-tag");
      if (tag) tag.textContent = t("staff_only");
      for (const s of wrap.querySelectorAll("[data-option]")) {
        const o = f.options.find((x) => x.value === s.dataset.option);
        s.textContent = o ? pick(o.label) : s.dataset.option;
      }
    }
    $("consent-text").textContent = pick(event.consent.text);
    $("submit").textContent = t("submit");
    $("promoter-who").textContent = promoter ? t("promoter_who", promoter) : "";
  }

  function collect() {
    const form = $("entry-form");
    const values = {};
    for (const f of shownFields()) {
      if (f.kind === "multi") {
        const picked = [...form.querySelectorAll(`input[name="${f.key}"]:checked`)].map((i) => i.value);
        if (picked.length) values[f.key] = picked;
      } else if (f.kind === "choice") {
        const c = form.querySelector(`input[name="${f.key}"]:checked`);
        if (c) values[f.key] = c.value;
      } else if (f.kind === "checkbox") {
        values[f.key] = form.querySelector(`input[name="${f.key}"]`).checked;
      } else {
        const v = form.querySelector(`input[name="${f.key}"]`).value;
        if (v.trim() !== "") values[f.key] = v;
      }
    }
    values.consent = $("consent").checked;
    return values;
  }

  function clearErrors() {
    for (const e of document.querySelectorAll("#entry-form .error")) e.textContent = "";
    for (const e of document.querySelectorAll("#entry-form [aria-invalid]")) e.removeAttribute("aria-invalid");
  }

  function showEntryError(err) {
    clearErrors();
    const msg = err && err[lang] ? err[lang] : String(err);
    const field = err && err.field;
    if (err && err.code === "invalid_entry.no_consent") {
      $("err-consent").textContent = msg;
      $("consent").focus();
    } else if (field && document.querySelector(`[data-field="${field}"]`)) {
      $(`err-${field}`).textContent = msg;
      const input = document.querySelector(`[data-field="${field}"] input`);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else {
      $("err-form").textContent = msg;
    }
  }

  function formHasInput() {
    return [...$("entry-form").querySelectorAll("input")].some((i) =>
      (i.type === "checkbox" || i.type === "radio") ? i.checked : i.value !== "");
  }

  // Back to an empty form in the event's language: nothing of the last visitor remains.
  function wipeForm() {
    clearTimeout(thanksTimer);
    stopIdle();
    clearManager();
    if (!event) return;
    lang = event.kiosk.default_lang || "zh";
    applyText();
    renderForm();
    show("form");
  }

  async function submit(e) {
    e.preventDefault();
    const button = $("submit");
    if (button.disabled) return;
    button.disabled = true;
    button.textContent = t("saving");
    let values = collect();
    try {
      await invoke("submit_entry", { values, promoter: !!promoter });
      values = null;
      if (promoter) {
        // The promoter's next visitor: an empty form at once, focus on its first field.
        promoterSaved += 1;
        renderForm();
        $("promoter-note").textContent = t("promoter_saved", promoterSaved);
        focusFirst();
        touchPromoter();
        refreshStatus();
        return;
      }
      // The entry is durably stored: only now say thank you.
      $("fields").replaceChildren();
      $("consent").checked = false;
      show("thanks");
      $("thanks").focus();
      thanksTimer = setTimeout(wipeForm, (event.kiosk.thank_you_seconds || 5) * 1000);
      refreshStatus();
    } catch (err) {
      if (err && (err.code === "promoter_locked" || err.code === "staff_code_revoked")) { exitPromoter(); return; }
      showEntryError(err);
    } finally {
      button.disabled = false;
      button.textContent = t("submit");
    }
  }

  // ---- promoter mode: a staff code, keyboard-first, locked after inactivity --------------------
  function openPromoter() {
    if (!event || screen !== "form") return;
    $("staff-code").value = "";
    $("err-staff-code").textContent = "";
    $("promoter-dialog").showModal();
    $("staff-code").focus();
  }

  async function promoterSubmit(e) {
    e.preventDefault();
    const code = $("staff-code").value;
    $("staff-code").value = "";
    try {
      promoter = await invoke("promoter_sign_in", { code });
      promoterSaved = 0;
      $("promoter-dialog").close();
      wipeForm();
      touchPromoter();
      focusFirst();
    } catch (err) {
      $("err-staff-code").textContent = err && err[lang] ? err[lang] : String(err);
      $("staff-code").focus();
    }
  }

  // Activity in promoter mode, told to the library (at most every 2 s): its clock decides when
  // promoter mode locks, not a timer of the page's.
  function touchPromoter() {
    if (!promoter) return;
    const now = Date.now();
    if (now - promoterTouched > MANAGER_TOUCH_MS) {
      promoterTouched = now;
      invoke("promoter_touch").then((open) => { if (!open && promoter) exitPromoter(); }).catch(() => {});
    }
  }

  // Every second while promoter mode is open: locked by the library (idle, or the code revoked),
  // the staff fields go and the next submit is a visitor's.
  async function checkPromoter() {
    if (!promoter) return;
    let alive = false;
    try { alive = await invoke("promoter_alive"); } catch (_) { alive = false; }
    if (!alive && promoter) exitPromoter();
  }

  async function exitPromoter() {
    const was = promoter;
    promoter = null;
    promoterSaved = 0;
    try { await invoke("promoter_sign_out"); } catch (_) { /* nothing the visitor should see */ }
    if (was) wipeForm();
  }

  // Tab stops of the form in order: each field (a choice group by its picked or first option),
  // then consent, then submit.
  function stops() {
    const out = [];
    for (const f of shownFields()) {
      const wrap = document.querySelector(`[data-field="${f.key}"]`);
      if (!wrap) continue;
      const picked = wrap.querySelector("input:checked");
      out.push(f.kind === "choice" && picked ? picked : wrap.querySelector("input"));
    }
    out.push($("consent"), $("submit"));
    return out.filter(Boolean);
  }

  function focusFirst() {
    const first = stops()[0];
    if (first) first.focus();
  }

  function onFormKey(e) {
    if (screen !== "form") return;
    if (promoter) touchPromoter();
    if (e.key !== "Enter" || e.defaultPrevented) return;
    if (e.ctrlKey || e.metaKey) {
      e.preventDefault();
      $("entry-form").requestSubmit();
      return;
    }
    if (!promoter || e.target === $("submit")) return;
    // Promoter mode: Enter moves on, it never submits.
    e.preventDefault();
    const list = stops();
    const i = list.findIndex((x) => x === e.target || (x.name && x.name === e.target.name && x.type === e.target.type && x.type !== "checkbox"));
    const next = list[i + 1];
    if (next) next.focus();
  }

  // ---- badge scans: a burst of keys faster than a person types, ending with Enter -------------
  function scanGap() {
    return (event && event.kiosk && event.kiosk.scan_max_gap_ms) || 30;
  }

  function snapshot() {
    const a = document.activeElement;
    return a && a.tagName === "INPUT" && a.closest("#entry-form") && a.type !== "checkbox" && a.type !== "radio"
      ? { el: a, value: a.value } : { el: null, value: "" };
  }

  function onScanKey(e) {
    if (screen !== "form" || e.ctrlKey || e.altKey || e.metaKey || e.isComposing) return;
    if (document.querySelector("dialog[open]")) return;
    const now = performance.now();
    const gap = now - scan.last;
    scan.last = now;
    const pause = scanGap() * SCAN_PAUSE;
    if (e.key === "Enter") {
      const start = scan.active ? -1 : scanStart();
      if (scan.active || (start >= 0 && gap < pause)) {
        // A scanner's Enter (between lines, or at the end): never a submit.
        e.preventDefault();
        e.stopPropagation();
        if (!scan.active) {
          scan.snap = scan.keys[start].snap;
          scan.buf = scan.keys.slice(start).map((k) => k.ch).join("");
          scan.keys = [];
          scan.active = true;
        }
        scan.buf += "\n";
        clearTimeout(scan.timer);
        // A card that says it is complete is read at once; anything else once the keys stop.
        const done = /END:VCARD\n$/i.test(scan.buf) || /^MECARD:.*;;\n$/s.test(scan.buf);
        scan.timer = setTimeout(finishScan, done ? 0 : pause + 60);
      } else {
        scan.keys = [];
      }
      return;
    }
    if (e.key.length !== 1) {
      if (e.key !== "Shift" && !scan.active) scan.keys = [];
      return;
    }
    if (scan.active) {
      scan.buf += e.key;
      clearTimeout(scan.timer);
      scan.timer = setTimeout(finishScan, pause + 60);
      return;
    }
    if (gap >= pause) scan.keys = [];
    // Each key with the field as it was before it: a scan found at Enter starts at one of them.
    scan.keys.push({ ch: e.key, gap, snap: snapshot() });
    if (scan.keys.length > 4096) scan.keys.shift();
  }

  // Where the scanner's burst begins among the keys since the last pause: the earliest key
  // followed by a fast one from which on enough keys came, most of them fast. -1: no scan.
  function scanStart() {
    const keys = scan.keys;
    for (let s = 0; s + MIN_SCAN_CHARS <= keys.length; s++) {
      if (keys[s + 1].gap >= scanGap()) continue;
      const gaps = keys.slice(s + 1).map((k) => k.gap);
      const fast = gaps.filter((g) => g < scanGap()).length;
      if (fast >= SCAN_FAST_SHARE * gaps.length) return s;
    }
    return -1;
  }

  async function finishScan() {
    let text = scan.buf.replace(/\n+$/, "");
    const snap = scan.snap;
    scan.buf = "";
    scan.keys = [];
    scan.snap = null;
    scan.active = false;
    // What the scanner typed into a field goes; what was typed there before stays.
    if (snap && snap.el && document.contains(snap.el)) snap.el.value = snap.value;
    try {
      const values = await invoke("read_scan", { text });
      text = null;
      for (const [key, v] of Object.entries(values)) {
        const wrap = document.querySelector(`[data-field="${key}"]`);
        if (!wrap) continue;
        const radio = wrap.querySelector(`input[type=radio][value="${CSS.escape(v)}"]`);
        if (radio) radio.checked = true;
        else {
          const input = wrap.querySelector("input");
          if (input && input.type !== "checkbox" && input.type !== "radio") input.value = v;
        }
      }
      clearErrors();
      $("scan-note").textContent = t("scan_filled");
      armIdle();
      if (promoter) focusFirstStaff(); else $("consent").focus();
    } catch (err) {
      text = null;
      $("scan-note").textContent = err && err[lang] ? err[lang] : String(err);
    }
  }

  function focusFirstStaff() {
    const f = shownFields().find((x) => x.audience === "staff");
    const input = f && document.querySelector(`[data-field="${f.key}"] input`);
    (input || $("consent")).focus();
  }

  // ---- idle: "still there?" then wipe ------------------------------------------------------
  function stopIdle() {
    clearTimeout(idleTimer);
    clearInterval(countdownTimer);
    if ($("idle-dialog").open) $("idle-dialog").close();
  }

  function armIdle() {
    clearTimeout(idleTimer);
    if (screen !== "form" || !event) return;
    idleTimer = setTimeout(() => {
      if (screen !== "form" || !formHasInput()) return;
      let left = IDLE_COUNTDOWN_S;
      $("idle-count").textContent = t("idle_count", left);
      $("idle-dialog").showModal();
      countdownTimer = setInterval(() => {
        left -= 1;
        $("idle-count").textContent = t("idle_count", left);
        if (left <= 0) wipeForm();
      }, 1000);
    }, (event.kiosk.idle_reset_seconds || 60) * 1000);
  }

  // ---- status line ------------------------------------------------------------------------
  async function refreshStatus() {
    if (screen !== "form" && screen !== "thanks" && screen !== "manager") {
      $("status-text").textContent = "";
      return;
    }
    try {
      const s = await invoke("status_line");
      lastSync = s.sync;
      const online = s.sync.online;
      $("online-dot").className = `dot ${online === true ? "on" : online === false ? "off" : ""}`;
      $("online-text").textContent = online === true ? t("online") : online === false ? t("offline") : t("checking");
      $("status-text").textContent = s.sync.sending && s.sync.progress
        ? `${t("status_pending", s.pending)} · ${t("sending", s.sync.progress.erased, s.sync.progress.total)}`
        : t("status_pending", s.pending);
      if (screen === "manager" && managerTab === "send") renderSend();
    } catch (_) {
      $("status-text").textContent = "";
      $("online-text").textContent = "";
    }
  }

  // ---- PIN pad ----------------------------------------------------------------------------
  function renderPinPad() {
    const pad = $("pin-pad");
    pad.replaceChildren();
    for (const d of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "", "0", "⌫"]) {
      if (d === "") { pad.append(el("span")); continue; }
      const b = el("button", { type: "button", class: "pin-key", "data-key": d, text: d });
      if (d === "⌫") b.setAttribute("aria-label", t("backspace"));
      pad.append(b);
    }
  }

  function renderDots() {
    $("pin-dots").textContent = "●".repeat(pinDigits.length);
  }

  function openPin(purpose) {
    pinPurpose = purpose;
    pinDigits = "";
    renderDots();
    $("err-pin").textContent = "";
    $("pin-title").textContent = t(purpose === "quit" ? "pin_quit_title" : "pin_title");
    $("pin-dialog").showModal();
    $("pin-ok").focus();
  }

  function pinKey(k) {
    if (k === "⌫" || k === "Backspace") pinDigits = pinDigits.slice(0, -1);
    else if (/^[0-9]$/.test(k) && pinDigits.length < 12) pinDigits += k;
    renderDots();
  }

  async function pinSubmit() {
    const pin = pinDigits;
    pinDigits = "";
    renderDots();
    try {
      if (pinPurpose === "quit") {
        await invoke("request_close", { pin });
      } else {
        await invoke("unlock", { pin });
        $("pin-dialog").close();
        openManager();
      }
    } catch (err) {
      $("err-pin").textContent = err && err[lang] ? err[lang] : String(err);
    }
  }

  // ---- manager ----
  function clearManager() {
    for (const id of ["entries-head", "entries-body", "audit-head", "audit-body", "chart"]) $(id).replaceChildren();
    for (const id of ["n-pending", "n-exported", "n-erased", "audit-result", "warning", "send-result", "batch-result"]) $(id).textContent = "";
  }

  function touchManager() {
    const now = Date.now();
    if (screen !== "manager" || now - lastTouch < MANAGER_TOUCH_MS) return;
    lastTouch = now;
    invoke("manager_touch").catch((err) => { if (err && err.code === "locked") lockManager(); });
  }

  // Every few seconds while the manager screens show: locked by the library's clock, they go.
  async function checkManager() {
    if (screen !== "manager") return;
    let alive = false;
    try { alive = await invoke("manager_alive"); } catch (_) { alive = false; }
    if (!alive && screen === "manager") lockManager();
  }

  async function lockManager() {
    try { await invoke("lock"); } catch (_) { /* locking cannot fail in a way the visitor should see */ }
    wipeForm();
    refreshStatus();
  }

  function openManager() {
    if (promoter) { promoter = null; promoterSaved = 0; invoke("promoter_sign_out").catch(() => {}); }
    // A manager who unlocks while "thank you" is still showing stays in the manager screens: the
    // thank-you timer would otherwise wipe them away (leaving the library unlocked) seconds later.
    clearTimeout(thanksTimer);
    stopIdle();
    $("fields").replaceChildren();
    show("manager");
    lastTouch = Date.now();
    selectTab("overview");
  }

  function selectTab(tab) {
    managerTab = tab;
    for (const b of document.querySelectorAll(".tab")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `panel-${tab}`;
    refreshManager();
  }

  // A plain choice shows its label in the manager's language; masked values stay as they are.
  function shownValue(f, v) {
    if (v == null) return "";
    if ((f.kind === "choice" || f.kind === "multi") && f.display === "plain") {
      return v.split(", ").map((x) => { const o = f.options.find((o) => o.value === x); return o ? pick(o.label) : x; }).join(", ");
    }
    return v;
  }

  function fmtTime(ms) {
    return new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
  }

  async function managerCall(cmd, args) {
    try {
      return await invoke(cmd, args);
    } catch (err) {
      if (err && err.code === "locked") { wipeForm(); return null; }
      throw err;
    }
  }

  async function refreshManager() {
    if (screen !== "manager") return;
    if (managerTab === "overview") {
      const o = await managerCall("manager_overview", { tzOffsetMin: -new Date().getTimezoneOffset() });
      if (!o) return;
      $("n-pending").textContent = o.counts.pending;
      $("n-exported").textContent = o.counts.exported;
      $("n-erased").textContent = o.counts.erased;
      $("warning").textContent = [
        o.waiting_too_long ? t("waiting_long", o.warn_waiting_days) : "",
        o.counts.refused > 0 ? t("refused_note", o.counts.refused) : "",
      ].filter(Boolean).join(" ");
      drawChart(o.per_hour);
    } else if (managerTab === "entries") {
      const rows = await managerCall("manager_entries");
      if (!rows) return;
      const shown = event.fields.filter((f) => f.display !== "hidden");
      $("entries-head").replaceChildren(el("tr", {}, el("th", { text: t("time") }),
        ...shown.map((f) => el("th", { text: pick(f.label) })), el("th", { text: t("state") })));
      $("entries-body").replaceChildren(...rows.map((r) => el("tr", {}, el("td", { text: fmtTime(r.captured_at_ms) }),
        ...shown.map((f) => el("td", { text: shownValue(f, r.summary[f.key]) })),
        el("td", { text: r.state === "quarantined" ? t("state_quarantined", r.refused_code)
          : t(r.state === "exported" ? "state_exported" : "state_pending") }))));
      $("entries-empty").hidden = rows.length > 0;
    } else if (managerTab === "send") {
      renderSend();
    } else {
      const a = await managerCall("manager_audit");
      if (!a) return;
      $("audit-result").textContent = a.ok ? t("audit_ok", a.rows) : t("audit_broken", a.broken_at);
      $("audit-result").className = `audit-result ${a.ok ? "ok" : "bad"}`;
      $("audit-head").replaceChildren(el("tr", {}, el("th", { text: "#" }), el("th", { text: t("time") }),
        el("th", { text: t("action") }), el("th", { text: t("detail") })));
      $("audit-body").replaceChildren(...a.recent.map((r) => el("tr", {}, el("td", { text: String(r.seq) }),
        el("td", { text: fmtTime(r.at_ms) }), el("td", { text: r.action }), el("td", { text: JSON.stringify(r.detail) }))));
    }
  }

  // The Send tab: connection, progress of a running sync, the last receipt.
  function renderSend() {
    const s = lastSync || {};
    const err = s.last_error;
    let state = s.online === true ? t("online") : s.online === false ? t("offline") : t("checking");
    if (err) state += ` — ${TEXT[lang][`sync_error_${err}`] ? t(`sync_error_${err}`) : t("sync_error_other", err)}`;
    $("send-state").textContent = state;
    const p = s.progress;
    $("send-progress").max = p && p.total ? p.total : 1;
    $("send-progress").value = p ? p.erased : 0;
    $("send-last").textContent = s.last_receipt_ms ? t("last_receipt", fmtTime(s.last_receipt_ms)) : t("no_receipt");
  }

  async function exportBatch() {
    $("batch-result").textContent = t("exporting");
    try {
      const r = await managerCall("export_batch");
      if (!r) return;
      $("batch-result").textContent = t("exported", r.count, r.path);
    } catch (err) {
      $("batch-result").textContent = err && err[lang] ? err[lang] : String(err);
    }
    refreshStatus();
  }

  async function importReceipt() {
    const file = $("receipt-file").files[0];
    if (!file) return;
    try {
      const text = await file.text();
      const r = await managerCall("import_receipt", { receipt: text });
      if (!r) return;
      $("batch-result").textContent = r.already_applied ? t("receipt_already") : t("receipt_applied", r.erased);
    } catch (err) {
      $("batch-result").textContent = err && err[lang] ? err[lang] : String(err);
    } finally {
      $("receipt-file").value = "";
    }
    refreshStatus();
  }

  async function syncNow() {
    const r = await managerCall("sync_now");
    if (!r) return;
    $("send-result").textContent = t("sync_started");
    refreshStatus();
  }

  // A bar chart of registrations per hour, drawn from times only.
  function drawChart(perHour) {
    const W = 960, H = 220, pad = 28;
    const max = Math.max(1, ...perHour.map((b) => b[1]));
    const bw = (W - pad * 2) / perHour.length;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", t("per_hour"));
    perHour.forEach(([start, n], i) => {
      const h = ((H - pad * 2) * n) / max;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", String(pad + i * bw + 2));
      r.setAttribute("y", String(H - pad - h));
      r.setAttribute("width", String(Math.max(1, bw - 4)));
      r.setAttribute("height", String(h));
      r.setAttribute("class", "bar");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${new Date(start).getHours()}:00 — ${n}`;
      r.append(title);
      svg.append(r);
      if (n > 0) {
        const v = document.createElementNS(ns, "text");
        v.setAttribute("x", String(pad + i * bw + bw / 2));
        v.setAttribute("y", String(H - pad - h - 4));
        v.setAttribute("class", "bar-value");
        v.textContent = String(n);
        svg.append(v);
      }
      if (i % 3 === 0) {
        const l = document.createElementNS(ns, "text");
        l.setAttribute("x", String(pad + i * bw + bw / 2));
        l.setAttribute("y", String(H - 8));
        l.setAttribute("class", "axis");
        l.textContent = `${new Date(start).getHours()}:00`;
        svg.append(l);
      }
    });
    $("chart").replaceChildren(svg);
  }

  // ---- first run and fault screens -----------------------------------------------------------
  async function enroll(e) {
    e.preventDefault();
    const file = $("enroll-file").files[0];
    const pin = $("enroll-pin").value, pin2 = $("enroll-pin2").value;
    $("err-enroll").textContent = "";
    if (!file) { $("err-enroll").textContent = t("enroll_no_file"); return; }
    if (pin !== pin2) { $("err-enroll").textContent = t("enroll_pin_mismatch"); return; }
    try {
      const text = await file.text();
      const state = await invoke("enroll_device", { enrolment: text, pin });
      $("enroll-pin").value = ""; $("enroll-pin2").value = ""; $("enroll-file").value = "";
      applyState(state);
      $("err-form").textContent = t("enroll_done");
    } catch (err) {
      $("err-enroll").textContent = err && err[lang] ? err[lang] : String(err);
    }
  }

  function applyState(state) {
    event = state.event;
    if (state.screen === "form") {
      wipeForm();
    } else if (state.screen === "enroll") {
      applyText();
      show("enroll");
    } else {
      applyText();
      $("fault-title").textContent = t(`fault_${state.screen}`);
      $("fault-text").textContent = state.problem ? state.problem[lang] : "";
      $("fault-next").textContent = t("fault_next");
      show("fault");
    }
    refreshStatus();
    reportReady();
  }

  // The form is ready once a visitor can read it and type in it: laid out, its faces loaded
  // (they draw nothing until then: font-display block) and a frame painted with them (a second
  // animation frame runs only after the first was drawn). Then the page asks for the rest of
  // the font, which the first paint did not wait for (see fonts/fonts.css), so that what a
  // visitor types next draws at once.
  let readyReported = false;
  function reportReady() {
    if (readyReported) return;
    readyReported = true;
    void document.body.offsetHeight; // lay out now, so the faces it needs are being fetched
    document.fonts.ready.then(() => requestAnimationFrame(() => requestAnimationFrame(() => {
      invoke("form_ready").catch(() => {});
      for (const face of document.fonts) if (face.status === "unloaded") face.load().catch(() => {});
    })));
  }

  async function start() {
    renderPinPad();
    $("lang-zh").addEventListener("click", () => setLang("zh"));
    $("lang-en").addEventListener("click", () => setLang("en"));
    $("entry-form").addEventListener("submit", submit);
    document.addEventListener("keydown", onScanKey, true);
    $("entry-form").addEventListener("keydown", onFormKey);
    $("entry-form").addEventListener("pointerdown", () => { if (promoter) touchPromoter(); });
    $("open-promoter").addEventListener("click", openPromoter);
    $("promoter-form").addEventListener("submit", promoterSubmit);
    $("promoter-cancel").addEventListener("click", () => { $("staff-code").value = ""; $("promoter-dialog").close(); });
    $("promoter-dialog").addEventListener("close", () => { $("staff-code").value = ""; });
    $("promoter-exit").addEventListener("click", exitPromoter);
    $("entry-form").addEventListener("input", () => { armIdle(); });
    $("entry-form").addEventListener("focusin", () => { armIdle(); });
    $("thanks").addEventListener("click", wipeForm);
    $("idle-stay").addEventListener("click", () => { stopIdle(); armIdle(); });
    $("consent-more").addEventListener("click", openNotice);
    $("notice-close").addEventListener("click", () => $("notice-dialog").close());
    $("open-pin").addEventListener("click", () => { if (event) openPin("unlock"); });
    $("pin-pad").addEventListener("click", (e) => { const k = e.target.dataset && e.target.dataset.key; if (k) pinKey(k); });
    $("pin-dialog").addEventListener("keydown", (e) => {
      if (/^[0-9]$/.test(e.key) || e.key === "Backspace") { e.preventDefault(); pinKey(e.key); }
      if (e.key === "Enter") { e.preventDefault(); pinSubmit(); }
    });
    $("pin-ok").addEventListener("click", pinSubmit);
    $("pin-cancel").addEventListener("click", () => { pinDigits = ""; $("pin-dialog").close(); });
    $("pin-dialog").addEventListener("close", () => { pinDigits = ""; renderDots(); });
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => selectTab(b.dataset.tab));
    $("lock").addEventListener("click", lockManager);
    $("sync-now").addEventListener("click", () => { syncNow().catch(() => {}); });
    $("export-batch").addEventListener("click", () => { exportBatch(); });
    $("receipt-file").addEventListener("change", () => { importReceipt(); });
    $("quit").addEventListener("click", () => openPin("quit"));
    $("screen-manager").addEventListener("pointerdown", touchManager);
    $("screen-manager").addEventListener("keydown", touchManager);
    $("enroll-form").addEventListener("submit", enroll);
    $("fault-retry").addEventListener("click", async () => applyState(await invoke("kiosk_state")));
    setInterval(refreshStatus, 2000);
    setInterval(checkManager, 1000);
    setInterval(checkPromoter, 1000);
    applyState(await invoke("kiosk_state"));
  }

  function openNotice() {
    const body = $("notice-body");
    body.replaceChildren(el("p", { text: pick(event.consent.text) }), el("h3", { text: t("notice_purpose") }));
    const ul = el("ul");
    for (const f of event.fields) ul.append(el("li", {}, el("strong", { text: `${pick(f.label)}: ` }),
      document.createTextNode(pick(f.purpose) + (f.audience === "staff" ? t("notice_staff") : ""))));
    body.append(ul, el("p", { text: t("notice_retention", event.consent.retention_days) }),
      el("p", { class: "muted", text: t("notice_version", event.consent.version) }));
    $("notice-dialog").showModal();
  }

  function boot() {
    start().catch((err) => {
      $("fault-title").textContent = t("fault_error");
      $("fault-text").textContent = err && err[lang] ? err[lang] : String(err);
      show("fault");
    });
  }
  // A deferred script runs once the document is parsed; start now, or when it is.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot, { once: true });
  else boot();
})();
