/* modelplex gateway dashboard.
 *
 * Polls the JSON summary every 2 s and renders it: KPIs, three hand-drawn SVG charts (requests and
 * cost as stacked columns, latency as lines), breakers, budgets, the strategy split and the latest
 * routing decisions. No framework, no CDN: everything is built with DOM calls, and data is only
 * ever inserted as text (never as HTML).
 *
 * The admin key comes from ?key= (then removed from the address bar) or the form, and is kept in
 * sessionStorage for this tab only.
 */
(() => {
  "use strict";

  const API = document.body.dataset.api;
  const KEY_STORE = "modelplex.dashboard.adminKey";
  const POLL_MS = 2000;
  const DECISIONS = 50;
  const BUDGET_ROWS = 4; // per-user / per-key scopes shown besides the global ones (the fullest first)
  const PALETTE = ["#3b5bdb", "#f08c00", "#2f9e44", "#e03131", "#9c36b5", "#0c8599", "#d6336c",
                   "#5c940d", "#868e96"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    data: null,
    renders: 0,
    window: 900,
    group: "by_model",
    latency: "p95_ms",
    paused: false,
    timer: null,
    inflight: false,
    seen: new Set(),
    colors: new Map(),
    lastError: null,
  };
  window.__modelplexDashboard = state; // read by the browser test; harmless otherwise

  const $ = (id) => document.getElementById(id);

  /* ------------------------------------------------------------------ DOM helpers */

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "style") setStyle(el, v);
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // CSSOM, not a style attribute: the page's Content-Security-Policy forbids inline styles
  function setStyle(el, text) {
    for (const decl of String(text).split(";")) {
      const i = decl.indexOf(":");
      if (i > 0) el.style.setProperty(decl.slice(0, i).trim(), decl.slice(i + 1).trim());
    }
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  /* ------------------------------------------------------------------ formatting */

  function usd(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "$0";
    const a = Math.abs(v);
    if (a >= 100) return "$" + v.toFixed(0);
    if (a >= 1) return "$" + v.toFixed(2);
    const digits = Math.min(10, 2 - Math.floor(Math.log10(a)));
    return "$" + v.toFixed(digits);
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v > 0 && v < 10) return (Number.isInteger(v) ? v : v.toFixed(1)) + " ms";
    return Math.round(v) + " ms";
  }

  function msPair(a, b) {
    if (a === null || a === undefined || b === null || b === undefined) return ms(a) + " / " + ms(b);
    if (b < 1000) return Math.round(a) + " / " + Math.round(b) + " ms";
    return (a / 1000).toFixed(a < 10000 ? 2 : 1) + " / " + (b / 1000).toFixed(b < 10000 ? 2 : 1) + " s";
  }

  function int(v) {
    return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US");
  }

  function pct(part, whole) {
    if (!whole) return "–";
    return (100 * part / whole).toFixed(part === whole || part === 0 ? 0 : 1) + "%";
  }

  function clock(epoch, seconds = true) {
    const d = new Date(epoch * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + (seconds ? ":" + p(d.getSeconds()) : "");
  }

  function shortModel(id) {
    if (!id) return "—";
    const i = id.indexOf("/");
    return i >= 0 ? id.slice(i + 1) : id;
  }

  function colorFor(name) {
    if (name === "other") return PALETTE[PALETTE.length - 1];
    if (!state.colors.has(name)) state.colors.set(name, PALETTE[state.colors.size % (PALETTE.length - 1)]);
    return state.colors.get(name);
  }

  /* ------------------------------------------------------------------ auth + polling */

  function takeKeyFromUrl() {
    const url = new URL(window.location.href);
    const key = url.searchParams.get("key");
    if (key) {
      sessionStorage.setItem(KEY_STORE, key);
      url.searchParams.delete("key");
      window.history.replaceState(null, "", url.pathname + (url.search || "") + url.hash);
    }
  }

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function showBanner(text) {
    const el = $("banner");
    if (text) {
      el.textContent = text;
      el.hidden = false;
    } else {
      el.hidden = true;
    }
  }

  function needKey(message) {
    $("auth").hidden = false;
    $("main").hidden = true;
    const err = $("auth-error");
    err.hidden = !message;
    err.textContent = message || "";
    setStatus("auth", "admin key needed");
    $("auth-key").focus();
  }

  async function poll() {
    if (state.inflight) return;
    state.inflight = true;
    try {
      const headers = { accept: "application/json" };
      const key = sessionStorage.getItem(KEY_STORE);
      if (key) headers.authorization = "Bearer " + key;
      const url = API + "?window=" + state.window + "&decisions=" + DECISIONS;
      const resp = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
      if (resp.status === 401) {
        const hadKey = Boolean(key);
        sessionStorage.removeItem(KEY_STORE);
        $("forget-key").hidden = true;
        needKey(hadKey ? "That key was refused. Enter the gateway's admin key." : "");
        return;
      }
      if (!resp.ok) {
        let detail = resp.status + " " + resp.statusText;
        try {
          const body = await resp.json();
          if (body && body.error && body.error.message) detail = body.error.message;
        } catch (_) { /* not JSON */ }
        throw new Error(detail);
      }
      const data = await resp.json();
      $("auth").hidden = true;
      $("main").hidden = false;
      $("forget-key").hidden = !key;
      showBanner(null);
      state.lastError = null;
      render(data);
      setStatus(state.paused ? "paused" : "live", (state.paused ? "paused" : "live") + " · " + clock(data.now));
    } catch (err) {
      state.lastError = String(err && err.message ? err.message : err);
      setStatus("error", "offline");
      showBanner("Could not load the dashboard data: " + state.lastError + ". Retrying every 2 s.");
    } finally {
      state.inflight = false;
      schedule();
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.paused && $("auth").hidden) state.timer = setTimeout(poll, POLL_MS);
  }

  /* ------------------------------------------------------------------ render */

  function render(d) {
    state.data = d;
    renderKpis(d);
    renderCharts(d);
    renderBreakers(d);
    renderBudgets(d.budgets);
    renderSplit(d);
    renderModels(d);
    renderDecisions(d.decisions || []);
    renderFooter(d);
    state.renders += 1;
    document.body.dataset.renders = String(state.renders);
  }

  function kpi(id, value, sub, alert) {
    const el = $(id);
    el.querySelector(".value").textContent = value;
    el.querySelector(".sub").textContent = sub || "";
    el.classList.toggle("alert", Boolean(alert));
  }

  function windowLabel(seconds) {
    return seconds >= 3600 ? seconds / 3600 + " h" : Math.round(seconds / 60) + " min";
  }

  function renderKpis(d) {
    const t = d.totals;
    const w = d.window;
    const since = "since " + clock(t.since, false);
    const span = d.span_s < d.window_s ? "since start" : "in the last " + windowLabel(d.window_s);
    kpi("kpi-requests", int(t.requests), int(w.requests) + " " + span + " · " + since);
    kpi("kpi-success", pct(t.successes, t.requests), int(t.failures) + " failed", t.failures > 0 &&
        t.successes / Math.max(1, t.requests) < 0.95);
    kpi("kpi-fallbacks", int(t.fallbacks), pct(t.fallbacks, t.requests) + " of requests");
    kpi("kpi-cost", usd(t.cost_usd), int(t.input_tokens) + " in / " + int(t.output_tokens) + " out tokens");
    kpi("kpi-latency", msPair(t.p50_ms, t.p95_ms), "window: " + msPair(w.p50_ms, w.p95_ms));
    const open = (d.breakers || []).filter((b) => b.state === "open");
    const half = (d.breakers || []).filter((b) => b.state === "half_open");
    kpi("kpi-breakers", int(open.length),
        open.length ? open.map((b) => b.key).join(", ") : half.length ? half.length + " half-open" : "all closed",
        open.length > 0);
  }

  /* ------------------------------------------------------------------ charts */

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
    return 10 * exp;
  }

  function renderCharts(d) {
    const series = d.series[state.group] || [];
    const t = d.series.t;
    const bucket = d.bucket_s;
    $("requests-hint").textContent = "per " + bucket + " s";
    $("cost-hint").textContent = "per " + bucket + " s";
    drawChart($("chart-requests"), {
      t, bucket, kind: "stacked", fmt: int,
      series: series.map((x) => ({ name: x.name, color: colorFor(x.name), values: x.requests })),
    });
    drawChart($("chart-cost"), {
      t, bucket, kind: "stacked", fmt: usd,
      series: series.map((x) => ({ name: x.name, color: colorFor(x.name), values: x.cost_usd })),
    });
    drawChart($("chart-latency"), {
      t, bucket, kind: "line", fmt: ms,
      series: series.map((x) => ({ name: x.name, color: colorFor(x.name), values: x[state.latency] })),
    });
    for (const id of ["legend-requests", "legend-cost", "legend-latency"]) {
      const el = clear($(id));
      for (const x of series) {
        el.append(h("span", { title: x.name }, h("i", { style: "background:" + colorFor(x.name) }), x.name));
      }
    }
  }

  function drawChart(svg, spec) {
    clear(svg);
    const width = Math.max(240, svg.clientWidth || svg.getBoundingClientRect().width || 480);
    const height = 210;
    const m = { l: 54, r: 8, t: 8, b: 22 };
    const pw = width - m.l - m.r;
    const ph = height - m.t - m.b;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const n = spec.t.length;
    const step = pw / Math.max(1, n);
    let max = 0;
    if (spec.kind === "stacked") {
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (const x of spec.series) sum += x.values[i] || 0;
        max = Math.max(max, sum);
      }
    } else {
      for (const x of spec.series) for (const v of x.values) if (v !== null && v > max) max = v;
    }
    const top = niceMax(max);
    const y = (v) => m.t + ph - (v / top) * ph;
    const grid = s("g", { class: "grid" });
    const axis = s("g", { class: "axis" });
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      grid.append(s("line", { x1: m.l, x2: width - m.r, y1: y(v), y2: y(v) }));
      const label = s("text", { x: m.l - 6, y: y(v) + 3, "text-anchor": "end" });
      label.textContent = spec.fmt(v);
      axis.append(label);
    }
    const every = Math.max(1, Math.ceil(n / 6)); // evenly spaced labels, the newest bucket always labelled
    for (let i = n - 1; i >= 0; i -= every) {
      const label = s("text", { x: m.l + step * (i + 0.5), y: height - 6, "text-anchor": "middle" });
      label.textContent = clock(spec.t[i] + spec.bucket, spec.bucket < 60);
      axis.append(label);
    }
    svg.append(grid, axis);
    const plot = s("g", { class: "plot" });
    if (max === 0) {
      const empty = s("text", { x: m.l + pw / 2, y: m.t + ph / 2, "text-anchor": "middle", class: "empty" });
      empty.textContent = "no requests in this window yet";
      svg.append(empty);
    } else if (spec.kind === "stacked") {
      const bw = Math.max(1, step * 0.78);
      for (let i = 0; i < n; i++) {
        let base = 0;
        for (const x of spec.series) {
          const v = x.values[i] || 0;
          if (v <= 0) continue;
          const y0 = y(base);
          const y1 = y(base + v);
          plot.append(s("rect", { x: m.l + step * i + (step - bw) / 2, y: y1, width: bw,
                                  height: Math.max(0.5, y0 - y1), fill: x.color, rx: 1.5 }));
          base += v;
        }
      }
    } else {
      for (const x of spec.series) {
        let d = "";
        let open = false;
        x.values.forEach((v, i) => {
          if (v === null || v === undefined) { open = false; return; }
          const px = m.l + step * (i + 0.5);
          d += (open ? "L" : "M") + px.toFixed(1) + " " + y(v).toFixed(1);
          const prev = x.values[i - 1];
          const next = x.values[i + 1];
          if ((prev === null || prev === undefined) && (next === null || next === undefined)) {
            plot.append(s("circle", { cx: px, cy: y(v), r: 2.5, fill: x.color }));
          }
          open = true;
        });
        if (d) plot.append(s("path", { d, class: "line", stroke: x.color }));
      }
    }
    svg.append(plot);
    const cursor = s("line", { class: "cursor", y1: m.t, y2: m.t + ph, x1: -10, x2: -10, visibility: "hidden" });
    svg.append(cursor);
    const hit = s("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "transparent" });
    svg.append(hit);
    hit.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const scale = width / box.width;
      const i = Math.min(n - 1, Math.max(0, Math.floor(((ev.clientX - box.left) * scale - m.l) / step)));
      const cx = m.l + step * (i + 0.5);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      showTooltip(ev, spec, i);
    });
    hit.addEventListener("mouseleave", () => {
      cursor.setAttribute("visibility", "hidden");
      $("tooltip").hidden = true;
    });
  }

  function showTooltip(ev, spec, i) {
    const tip = clear($("tooltip"));
    tip.append(h("div", { class: "t" }, clock(spec.t[i]) + " – " + clock(spec.t[i] + spec.bucket)));
    let any = false;
    for (const x of spec.series) {
      const v = x.values[i];
      if (v === null || v === undefined || (spec.kind === "stacked" && v === 0)) continue;
      any = true;
      tip.append(h("div", { class: "row" }, h("span", null, h("i", { style: "background:" + x.color }), x.name),
                   h("b", null, spec.fmt(v))));
    }
    if (!any) tip.append(h("div", { class: "muted" }, "nothing in this interval"));
    tip.hidden = false;
    const x = Math.min(window.innerWidth - tip.offsetWidth - 8, ev.clientX + 14);
    tip.style.left = x + "px";
    tip.style.top = ev.clientY + 14 + "px";
  }

  /* ------------------------------------------------------------------ panels */

  function renderBreakers(d) {
    const list = clear($("breakers"));
    const rows = d.breakers || [];
    $("breakers-hint").textContent = rows.length ? rows.length + " tracked" : "";
    if (!rows.length) list.append(h("li", { class: "empty-note" }, "No breaker has been exercised yet."));
    for (const b of rows) {
      const meta = [];
      if (b.failures) meta.push(b.failures + " failures");
      if (b.trips) meta.push(b.trips + (b.trips === 1 ? " trip" : " trips"));
      if (b.probe_due) {
        meta.push("probe due");  // recovery time over: the next request is the probe
      } else if (b.state !== "closed" && b.retry_in_s !== null && b.retry_in_s !== undefined) {
        meta.push("retry in " + b.retry_in_s.toFixed(1) + " s");
      }
      list.append(h("li", { "data-breaker-key": b.key, "data-state": b.state },
                    h("span", { class: "state " + b.state }, b.state.replace("_", "-")),
                    h("span", { class: "key", title: b.key }, b.key),
                    h("span", { class: "meta" }, meta.join(" · "))));
    }
    const tr = clear($("transitions"));
    const events = d.breaker_transitions || [];
    if (!events.length) tr.append(h("li", null, "none yet"));
    for (const e of events.slice(0, 12)) {
      tr.append(h("li", { title: e.reason }, clock(e.ts) + " ", h("b", null, e.key), " " + e.from + " → " + e.to));
    }
  }

  function scopeLabel(sc) {
    const who = sc.subject ? sc.kind + " " + sc.subject : sc.kind || sc.scope;
    return who + (sc.window ? " · " + sc.window : "");
  }

  function renderBudgets(b) {
    const el = clear($("budgets"));
    if (!b || !b.enabled || !(b.scopes || []).length) {
      el.append(h("div", { class: "empty-note", id: "no-budgets" }, (b && b.detail) || "no budgets configured"));
      return;
    }
    const global = b.scopes.filter((sc) => sc.kind === "global");
    const others = b.scopes.filter((sc) => sc.kind !== "global")
      .sort((x, y) => fractionOf(y) - fractionOf(x) || String(x.scope).localeCompare(String(y.scope)));
    const shown = global.concat(others.slice(0, BUDGET_ROWS));
    for (const sc of shown) {
      const limit = sc.limit_usd || 0;
      const spent = sc.spent_usd || 0;
      const reserved = sc.reserved_usd || 0;
      // a zero limit refuses every request: the scope is full (100%), not empty (0%)
      const blocked = !(limit > 0);
      const frac = blocked ? 1 : spent / limit;
      const cls = "budget" + (frac >= 1 ? " over" : frac >= 0.8 ? " warn" : "") + (blocked ? " blocked" : "");
      const spentW = Math.min(100, frac * 100);
      const resW = limit > 0 ? Math.min(100 - spentW, (reserved / limit) * 100) : 0;
      const reset = sc.reset_in_s !== null && sc.reset_in_s !== undefined
        ? "resets in " + humanSeconds(sc.reset_in_s) : "";
      const amount = usd(spent) + " of " + usd(limit) + " (" + (frac * 100).toFixed(frac < 0.1 ? 1 : 0) + "%)";
      el.append(h("div", { class: cls, "data-scope": sc.scope, "data-blocked": blocked ? "true" : "false" },
        h("div", { class: "top" }, h("span", { class: "scope" }, scopeLabel(sc)),
          h("span", { class: "amount" }, amount,
            blocked ? h("span", { class: "blocked-label", title: "a $0 limit refuses every request" }, "blocked")
              : null)),
        h("div", { class: "meter" }, h("div", { class: "spent", style: "width:" + spentW + "%" }),
          h("div", { class: "reserved", style: "left:" + spentW + "%;width:" + resW + "%" })),
        h("div", { class: "foot" }, [reserved ? usd(reserved) + " reserved in flight" : "", reset]
          .filter(Boolean).join(" · "))));
    }
    const hidden = others.length - Math.min(others.length, BUDGET_ROWS);
    if (hidden > 0) {
      const kinds = Array.from(new Set(others.slice(BUDGET_ROWS).map((sc) => sc.kind))).join("/");
      el.append(h("div", { class: "more", id: "budgets-more" }, "+ " + hidden + " more " + kinds +
        " scopes, each at most " + (fractionOf(others[BUDGET_ROWS]) * 100).toFixed(1) + "% used"));
    }
  }

  function fractionOf(sc) {
    if (typeof sc.fraction === "number") return sc.fraction;
    return sc.limit_usd > 0 ? (sc.spent_usd || 0) / sc.limit_usd : 1;  // a zero limit is full
  }

  function humanSeconds(v) {
    if (v < 90) return Math.round(v) + " s";
    if (v < 5400) return Math.round(v / 60) + " min";
    if (v < 172800) return (v / 3600).toFixed(1) + " h";
    return (v / 86400).toFixed(1) + " days";
  }

  function bars(el, rows, label) {
    clear(el);
    const total = rows.reduce((a, r) => a + r.requests, 0);
    if (!total) {
      el.append(h("div", { class: "empty-note" }, "no requests yet"));
      return;
    }
    for (const r of rows) {
      el.append(h("div", { class: "bar", "data-name": label(r).key },
        h("span", { class: "label" }, label(r).text),
        h("span", { class: "count" }, int(r.requests) + " · " + pct(r.requests, total) + " · " + usd(r.cost_usd)),
        h("div", { class: "track" }, h("div", { class: "fill", style: "width:" + (100 * r.requests / total) + "%" }))));
    }
  }

  function renderSplit(d) {
    const rows = d.strategies || [];
    const el = $("strategies");
    bars(el, rows, (r) => ({ key: (r.strategy || "none") + (r.experiment_arm ? "|" + r.experiment_arm : ""),
                             text: r.strategy || "no strategy (model named)" }));
    // mark experiment arms after the label
    el.querySelectorAll(".bar").forEach((bar, i) => {
      const r = rows[i];
      if (r && r.experiment_arm) bar.querySelector(".label").append(h("span", { class: "arm" }, "arm " + r.experiment_arm));
    });
    const src = d.runtime_strategy ? "runtime: " + d.runtime_strategy : "default: " + d.default_strategy;
    $("strategy-hint").textContent = src;
    bars($("tasks"), d.tasks || [], (r) => ({ key: r.task || "none", text: r.task || "(no task)" }));
  }

  function renderModels(d) {
    const body = clear($("models").tBodies[0]);
    const rows = d.window.models || [];
    $("models-hint").textContent = (d.span_s < d.window_s ? "since start" : "last " + windowLabel(d.window_s))
      + "; latency of successful requests";
    if (!rows.length) {
      body.append(h("tr", null, h("td", { colspan: 8, class: "empty-note" }, "no requests in this window")));
      return;
    }
    for (const r of rows) {
      body.append(h("tr", { "data-model": r.model },
        h("td", { class: "model" }, r.model),
        h("td", null, r.provider || "—"),
        h("td", { class: "num" }, int(r.requests)),
        h("td", { class: "num" }, int(r.errors)),
        h("td", { class: "num" }, int(r.fallbacks)),
        h("td", { class: "num" }, usd(r.cost_usd)),
        h("td", { class: "num" }, ms(r.p50_ms)),
        h("td", { class: "num" }, ms(r.p95_ms))));
    }
  }

  function chip(a) {
    const kind = a.outcome.startsWith("skipped") ? "skipped" : a.outcome;
    const tag = a.status_code ? String(a.status_code) : a.outcome === "success" ? "ok"
      : a.outcome.replace("skipped_", "skip:");
    const title = [a.target, a.outcome, a.error_type, a.status_code, a.retry ? "retry " + a.retry : "",
                   a.latency_ms ? ms(a.latency_ms) : "", a.detail].filter(Boolean).join(" · ");
    return h("span", { class: "chip " + kind, title, "data-outcome": a.outcome },
             shortModel(a.target) + (a.retry ? " ↻" + a.retry : ""), h("b", null, tag));
  }

  function renderDecisions(rows) {
    const body = clear($("decisions").tBodies[0]);
    $("decisions-hint").textContent = rows.length ? "newest first · " + rows.length + " shown" : "";
    if (!rows.length) {
      body.append(h("tr", null, h("td", { colspan: 9, class: "empty-note" }, "no requests yet")));
      return;
    }
    const fresh = state.renders > 0;
    for (const r of rows) {
      const isNew = fresh && !state.seen.has(r.request_id);
      state.seen.add(r.request_id);
      const flag = !r.success ? h("span", { class: "flag failed", title: r.error_type || "" }, "failed")
        : r.fallback_used ? h("span", { class: "flag yes" }, "fallback") : h("span", { class: "flag no" }, "—");
      body.append(h("tr", {
        class: [r.success ? "" : "failed", isNew ? "fresh" : ""].filter(Boolean).join(" ") || null,
        "data-request-id": r.request_id, "data-fallback": r.fallback_used ? "true" : "false",
        title: r.selection_reason || null,
      },
        h("td", { class: "mono" }, clock(r.ts)),
        h("td", null, h("span", { class: "rid", title: r.request_id }, r.request_id.slice(0, 12))),
        h("td", null, r.task || (r.kind === "embedding" ? "(embedding)" : "—")),
        h("td", { class: "model", title: r.model || "" }, r.served ? r.model : "—"),
        h("td", null, r.served ? r.provider || "—" : "—"),
        h("td", null, h("div", { class: "chips" }, (r.attempts || []).map(chip))),
        h("td", null, flag),
        h("td", { class: "num" }, usd(r.cost_usd)),
        h("td", { class: "num" }, ms(r.latency_ms))));
    }
    if (state.seen.size > 5000) state.seen = new Set(rows.map((r) => r.request_id));
  }

  function renderFooter(d) {
    const el = clear($("providers"));
    for (const p of d.providers || []) {
      if (!p.enabled) continue;
      el.append(h("span", { class: "on", title: p.reason }, p.name + " · " + p.protocol));
    }
    const off = (d.providers || []).filter((p) => !p.enabled).length;
    if (off) el.append(h("span", { class: "off" }, off + " providers disabled (no credentials)"));
    const r = d.recorder;
    $("recorder").textContent = r
      ? "usage sink " + r.sink + (r.sink_ok ? "" : " (down: journaling)") + " · " + int(r.written) + " rows written · "
        + int(r.queue_depth) + " queued" + (r.dropped ? " · " + int(r.dropped) + " dropped" : "")
      : "usage recording is off";
  }

  /* ------------------------------------------------------------------ controls */

  function wire() {
    $("window").addEventListener("change", (e) => {
      state.window = Number(e.target.value);
      poll();
    });
    $("group").addEventListener("change", (e) => {
      state.group = e.target.value;
      if (state.data) render(state.data);
    });
    $("latency-mode").addEventListener("click", (e) => {
      const btn = e.target.closest("button");
      if (!btn) return;
      state.latency = btn.dataset.mode;
      for (const b of $("latency-mode").querySelectorAll("button")) b.classList.toggle("active", b === btn);
      if (state.data) render(state.data);
    });
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      if (state.paused) {
        clearTimeout(state.timer);
        setStatus("paused", "paused");
      } else {
        poll();
      }
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      clearTimeout(state.timer);
      needKey("");
    });
    $("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("auth-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $("auth-key").value = "";
      $("auth").hidden = true;
      $("main").hidden = false;
      poll();
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => state.data && renderCharts(state.data), 150);
    });
  }

  takeKeyFromUrl();
  wire();
  poll();
})();
