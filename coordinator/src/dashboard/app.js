// The sweep dashboard: three pages drawn from the coordinator's JSON API (docs/API.md).
// Text from the API always goes into the page as text (textContent), never as markup.
'use strict';

const TOKEN_KEY = 'sweep.token';
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
  '#7f7f7f', '#bcbd22', '#17becf'];
const TERMINAL = new Set(['finished', 'stopped', 'diverged', 'failed']);
// Keys a script logs to count its steps: the charts' x axis, never a chart.
const STEP_KEYS = new Set(['epoch', 'epochs', 'step', 'global_step']);

/** What a curve's x counts: epochs for the built-in trainers, W&B's steps (`_step` + 1: one
 * per committed wandb.log) for a program or an agent's function. */
function stepWord(config) {
  const c = config || {};
  return c.program || c.command || c.trainer === 'agent' ? 'step' : 'epoch';
}
const SWEEP_ENDED = new Set(['finished', 'stopped']);
const SVGNS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------------------------------------
// DOM helpers

function add(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'data') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
    }
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return el;
}

function h(tag, attrs, ...kids) {
  return add(setAttrs(document.createElement(tag), attrs), kids);
}

function s(tag, attrs, ...kids) {
  return add(setAttrs(document.createElementNS(SVGNS, tag), attrs), kids);
}

function $(id) { return document.getElementById(id); }

function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (a >= 1000) return v.toFixed(1);
  return v.toFixed(digits);
}

function fmtDuration(sec) {
  if (!(sec >= 0)) return '—';
  sec = Math.round(sec);
  if (sec < 60) return `${sec} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} min ${sec % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return fmt(v, 6).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function stateBadge(state) {
  return h('span', { class: `state ${state}`, data: { state } }, state);
}

/**
 * Runs `fn` (sync or async) at most once per `gap` ms, counted from the end of the last run, and
 * always once more after the last call. `gap` may be a function of the last run's duration, so
 * work that grows with the sweep (a 10,000-trial leaderboard) is asked for less often.
 */
function throttle(fn, gap) {
  let last = 0;
  let took = 0;
  let timer = null;
  let running = false;
  let again = false;
  const go = async () => {
    timer = null;
    running = true;
    const t0 = Date.now();
    try {
      await fn();
    } catch (_) {
      // the connection indicator reports losses
    } finally {
      running = false;
      last = Date.now();
      took = last - t0;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (running) {
      again = true;
      return;
    }
    if (timer) return;
    const ms = typeof gap === 'function' ? gap(took) : gap;
    timer = setTimeout(go, Math.max(0, last + ms - Date.now()));
  };
  return schedule;
}

/** Flat `{"a.b": v}` from nested params. */
function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

function sweepPath(id) { return `/sweeps/${encodeURIComponent(id)}`; }
function apiSweep(id) { return `/api/v1/sweeps/${encodeURIComponent(id)}`; }

// ---------------------------------------------------------------------------------------------
// The token and the API

let token = localStorage.getItem(TOKEN_KEY) || '';
let tokenPrompt = null;

/** Shows the token dialog once for every caller waiting on it; resolves when one is given. */
function askToken(message) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dialog = $('token-dialog');
    const err = $('token-error');
    err.textContent = message || '';
    err.classList.toggle('hidden', !message);
    $('token-input').value = '';
    $('token-form').onsubmit = (ev) => {
      ev.preventDefault();
      token = $('token-input').value.trim();
      if (!token) return;
      localStorage.setItem(TOKEN_KEY, token);
      dialog.close();
      $('signout').classList.remove('hidden');
      tokenPrompt = null;
      resolve();
    };
    dialog.addEventListener('cancel', (ev) => ev.preventDefault());
    dialog.showModal();
    $('token-input').focus();
  });
  return tokenPrompt;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A fetch of the API with the token; asks for the token on 401 and tries again. */
async function api(path, opts = {}) {
  for (;;) {
    const headers = Object.assign({}, opts.headers || {});
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
    if (r.status === 401) {
      const had = token !== '';
      token = '';
      localStorage.removeItem(TOKEN_KEY);
      $('signout').classList.add('hidden');
      await askToken(had ? 'The coordinator refused that token.' : null);
      continue;
    }
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, msg);
    }
    return r;
  }
}

async function getJson(path) { return (await api(path)).json(); }

/** Whether an API file is there (HEAD: 200), so that a link to it is shown only then. */
async function exists(path) {
  try {
    await api(path, { method: 'HEAD' });
    return true;
  } catch (_) {
    return false;
  }
}

/** Downloads an API file with the token (a plain link could not carry it). */
async function download(path, name) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    alert(`${name}: ${e.message}`);
  }
}

function downloadLink(label, path, name) {
  return h('a', {
    href: path,
    data: { download: name },
    onclick: (ev) => { ev.preventDefault(); download(path, name); },
  }, label);
}

/** An <img> of an API image, fetched with the token; replaces the old one when it loads. */
async function loadImage(holder, path, alt) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const img = h('img', { src: url, alt });
    img.onload = () => {
      const old = holder.querySelector('img');
      if (old) URL.revokeObjectURL(old.src);
      holder.replaceChildren(img);
    };
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      holder.replaceChildren(h('p', { class: 'empty' }, e.message));
    } else {
      connection.lost();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The connection indicator

const connection = {
  state: 'connecting',
  set(state, text) {
    this.state = state;
    const el = $('conn');
    el.className = `conn ${state}`;
    el.textContent = text;
    el.dataset.state = state;
    $('lost').classList.toggle('hidden', state !== 'lost');
  },
  live() { this.set('live', '● live'); },
  lost() { this.set('lost', 'connection lost — retrying'); },
  ended() { this.set('ended', 'sweep ended'); },
};

/**
 * Reads server-sent events from `path` (fetch, so the token goes in a header), calling
 * `onEvent(data)` for each `update`; `onOpen()` on every (re)connection. Reconnects after a
 * loss (0.5 s doubling to 5 s) and when nothing, not even a keep-alive, came for 40 s.
 * Returns when the stream ends while `ended()` is true.
 */
async function stream(path, { onOpen, onEvent, ended }) {
  let delay = 500;
  for (;;) {
    const abort = new AbortController();
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => abort.abort(), 40000);
    };
    try {
      arm();
      const r = await api(path, { headers: { Accept: 'text/event-stream' }, signal: abort.signal });
      connection.live();
      delay = 500;
      if (onOpen) onOpen();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
          if (event === 'update' && data.length) onEvent(JSON.parse(data.join('\n')));
        }
      }
      clearTimeout(watchdog);
      if (ended()) {
        connection.ended();
        return;
      }
    } catch (e) {
      clearTimeout(watchdog);
      if (e instanceof ApiError && e.status === 404) throw e;
    }
    connection.lost();
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

/** Runs `fn` until it succeeds, showing the connection lost meanwhile; a 404 (or any API answer
 * but 503) is final and thrown. */
async function untilReachable(fn) {
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ApiError && e.status !== 503) throw e;
      connection.lost();
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Charts (SVG, drawn here)

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  // Every label with as many decimals as the step needs.
  const dec = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (String(step / mag).includes('.') ? 1 : 0));
  ticks.label = (t) => (Math.abs(t) >= 1e6 || (t !== 0 && Math.abs(t) < 1e-4) ? t.toExponential(1) : t.toFixed(dec));
  return ticks;
}

/**
 * A line chart: `series` = [{label, color, points: [[x, y]], width}]. Returns an element whose
 * `data-points` is the number of points drawn.
 */
function lineChart(title, series, { width = 620, height = 300, xLabel = 'epoch' } = {}) {
  const m = { l: 58, r: 14, t: 10, b: 38 };
  const pts = series.flatMap((se) => se.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const box = h('div', { class: 'chart', data: { points: pts.length, chart: title } },
    h('div', { class: 'title' }, title));
  if (!pts.length) {
    box.appendChild(h('p', { class: 'empty' }, 'no points yet'));
    return box;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const pad = (y1 - y0) * 0.06 || Math.abs(y0) * 0.05 || 0.5;
  y0 -= pad; y1 += pad;
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * W;
  const Y = (y) => m.t + H - ((y - y0) / (y1 - y0)) * H;
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  svg.appendChild(s('rect', { x: m.l, y: m.t, width: W, height: H, fill: '#fff', stroke: '#d8dee4' }));
  const yt = niceTicks(y0, y1, 5);
  for (const t of yt) {
    if (t < y0 || t > y1) continue;
    svg.appendChild(s('line', { x1: m.l, x2: m.l + W, y1: Y(t), y2: Y(t), stroke: '#eef1f4' }));
    svg.appendChild(s('text', { x: m.l - 6, y: Y(t) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#656d76' }, yt.label(t)));
  }
  // Steps are whole numbers: so are the ticks (every step when there are few).
  let xt = niceTicks(x0, x1, 6).filter((v) => Number.isInteger(v) && v >= x0 && v <= x1);
  if (xt.length < 2) {
    xt = [];
    for (let t = Math.ceil(x0); t <= x1; t++) xt.push(t);
  }
  for (const t of xt) {
    svg.appendChild(s('line', { x1: X(t), x2: X(t), y1: m.t + H, y2: m.t + H + 4, stroke: '#8c959f' }));
    svg.appendChild(s('text', { x: X(t), y: m.t + H + 17, 'text-anchor': 'middle', 'font-size': 11, fill: '#656d76', class: 'xtick' }, String(t)));
  }
  svg.appendChild(s('text', { x: m.l + W / 2, y: height - 4, 'text-anchor': 'middle', 'font-size': 12, fill: '#1f2328' }, xLabel));
  for (const se of series) {
    const p = se.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!p.length) continue;
    const d = p.map(([x, y], i) => `${i ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
    svg.appendChild(s('path', {
      d, fill: 'none', stroke: se.color, 'stroke-width': se.width || 2,
      data: { n: p.length, trial: se.trial, running: se.running },
    }));
    for (const [x, y] of p.length <= 40 ? p : [p[p.length - 1]]) {
      svg.appendChild(s('circle', { cx: X(x), cy: Y(y), r: 2.6, fill: se.color },
        s('title', {}, `${se.label}: ${xLabel} ${fmt(x, 2)}, ${fmt(y)}`)));
    }
  }
  box.appendChild(svg);
  box.appendChild(h('div', { class: 'legend' },
    series.filter((se) => se.points.length).map((se) =>
      h('span', {}, h('i', { data: { color: se.color } }), se.label))));
  for (const i of box.querySelectorAll('.legend i')) i.style.background = i.dataset.color;
  return box;
}

/** Groups a trial's curve points by metric name: {name: [[step, value]]}. */
function curveByName(curve) {
  const out = {};
  for (const p of curve || []) (out[p.name] = out[p.name] || []).push([p.step, p.value]);
  for (const v of Object.values(out)) v.sort((a, b) => a[0] - b[0]);
  return out;
}

/** A series against a logged key (`epoch`) instead of the step: each point at the value that
 * key has in the same row; points of rows without it are left out (as W&B draws a chart whose
 * x axis is a logged key). `key` null: the step. */
function onAxis(byName, key, points) {
  if (!key) return points;
  const xs = new Map(byName[key] || []);
  return points.filter(([step]) => xs.has(step)).map(([step, v]) => [xs.get(step), v]);
}

/** The x axis picker: the step, or any step counter the curves logged (`epoch`, …). */
function axisPicker(keys, chosen, onPick) {
  if (!keys.length) return null;
  return h('div', { class: 'toolbar', id: 'x-axis' }, 'x axis: ',
    h('select', { onchange: (ev) => onPick(ev.target.value || null) },
      h('option', { value: '', selected: !chosen }, 'step'),
      keys.map((k) => h('option', { value: k, selected: chosen === k }, k))));
}

/** Points a live series keeps; past this every other point goes (its last stays), as the
 * coordinator samples a long curve (a trial logging every batch must not fill the page). */
const LIVE_POINTS = 4000;

/** Adds `[step, name, value]` points to a curve from `curveByName`; a step seen before is replaced. */
function addPoints(curve, points) {
  for (const [step, name, value] of points) {
    let series = (curve[name] = curve[name] || []);
    const last = series.length ? series[series.length - 1][0] : -Infinity;
    if (step > last) series.push([step, value]);
    else {
      const i = series.findIndex((p) => p[0] >= step);
      if (series[i][0] === step) series[i] = [step, value];
      else series.splice(i, 0, [step, value]);
    }
    if (series.length > LIVE_POINTS) {
      curve[name] = series = series.filter((_, i) => i % 2 === 0 || i === series.length - 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The confusion matrix, as a table with class names

function viridis(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

function confusionTable(conf) {
  const labels = conf.labels;
  const m = conf.matrix;
  const max = Math.max(1, ...m.flat());
  const head = h('tr', {}, h('th', { class: 'axis' }, 'true ↓ / predicted →'),
    labels.map((l) => h('th', { class: 'col' }, l)), h('th', { class: 'axis' }, 'accuracy'));
  const rows = m.map((row, r) => {
    const total = row.reduce((a, b) => a + b, 0);
    return h('tr', {}, h('th', {}, labels[r]),
      row.map((v, c) => {
        const t = Math.sqrt(v / max);
        const td = h('td', { title: `true ${labels[r]}, predicted ${labels[c]}: ${v}` }, v);
        td.style.background = viridis(t);
        td.style.color = t > 0.6 ? '#000' : '#fff';
        return td;
      }),
      h('td', { class: 'num' }, total ? `${((row[r] / total) * 100).toFixed(1)}%` : '—'));
  });
  const all = m.flat().reduce((a, b) => a + b, 0);
  const right = m.reduce((a, row, i) => a + row[i], 0);
  return h('div', {},
    h('table', { class: 'confusion', data: { classes: labels.length } }, h('thead', {}, head), h('tbody', {}, rows)),
    h('p', { class: 'sub' }, `${all} test images, ${right} right (${((right / Math.max(all, 1)) * 100).toFixed(2)}%).`));
}

// ---------------------------------------------------------------------------------------------
// The Pareto front of a sweep with several objectives: the ranked trials on the first two
// objectives, front 1 drawn as the staircase it is; hover a point for its trial, click to open.

/**
 * Draws `rows` ([{trial, x, y, front}]) on objectives `ox`, `oy` ({name, goal}) into `holder`.
 */
function paretoChart(holder, rows, ox, oy, onOpen) {
  const width = Math.max(520, Math.min(holder.clientWidth || 900, 1000));
  const height = 420;
  const m = { l: 78, r: 24, t: 16, b: 52 };
  const range = (vs) => {
    let lo = Math.min(...vs);
    let hi = Math.max(...vs);
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 1;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = range(rows.map((r) => r.x));
  const [y0, y1] = range(rows.map((r) => r.y));
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (v) => m.t + (1 - (v - y0) / (y1 - y0)) * (height - m.t - m.b);
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'pareto' });
  const better = (o) => (o.goal === 'minimize' ? 'lower is better' : 'higher is better');
  // Axes with three ticks each.
  const axes = s('g', { class: 'axis' });
  axes.appendChild(s('line', { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: '#57606a' }));
  axes.appendChild(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: height - m.b, stroke: '#57606a' }));
  for (const t of [0.06, 0.5, 0.94]) {
    const xv = x0 + t * (x1 - x0);
    const yv = y0 + t * (y1 - y0);
    axes.appendChild(s('text', { x: X(xv), y: height - m.b + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#57606a' }, fmt(xv, 4)));
    axes.appendChild(s('text', { x: m.l - 6, y: Y(yv) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#57606a' }, fmt(yv, 4)));
  }
  axes.appendChild(s('text', { x: (m.l + width - m.r) / 2, y: height - 10, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: '#1f2328' }, `${ox.name} (${better(ox)})`));
  axes.appendChild(s('text', { x: 14, y: (m.t + height - m.b) / 2, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: '#1f2328', transform: `rotate(-90 14 ${(m.t + height - m.b) / 2})` }, `${oy.name} (${better(oy)})`));
  svg.appendChild(axes);
  // The front as a staircase: between two neighbours, the corner of what they dominate together.
  const front = rows.filter((r) => r.front === 1).sort((a, b) => a.x - b.x || a.y - b.y);
  const xMax = ox.goal !== 'minimize';
  let d = '';
  front.forEach((r, i) => {
    if (i) {
      const p = front[i - 1];
      const [cx, cy] = xMax ? [p.x, r.y] : [r.x, p.y];
      d += `L${X(cx).toFixed(1)},${Y(cy).toFixed(1)}`;
    }
    d += `${i ? 'L' : 'M'}${X(r.x).toFixed(1)},${Y(r.y).toFixed(1)}`;
  });
  if (d) svg.appendChild(s('path', { d, class: 'front-line' }));
  // Points by front (2, 3, …), the Pareto front itself last: on top.
  const order = rows.slice().sort((a, b) => (a.front === 1) - (b.front === 1) || a.front - b.front);
  for (const r of order) {
    const c = s('circle', { cx: X(r.x), cy: Y(r.y), r: r.front === 1 ? 5.5 : 3.5, class: r.front === 1 ? 'on-front' : 'off-front', data: { trial: r.trial, front: r.front } },
      s('title', {}, `trial ${r.trial} (front ${r.front}): ${ox.name} ${fmt(r.x)}, ${oy.name} ${fmt(r.y)}`));
    c.addEventListener('click', () => onOpen(r.trial));
    svg.appendChild(c);
  }
  holder.dataset.front = front.length;
  holder.replaceChildren(svg, h('p', { class: 'sub' },
    `${front.length} of ${rows.length} ranked trials on the Pareto front (red): no other trial is as good on both objectives and better on one. Hover a point for its trial; click it to open the trial.`));
}

// ---------------------------------------------------------------------------------------------
// Parallel coordinates, interactive: hover a line for its trial, click it to open the trial,
// drag along an axis to keep only the trials in that range (click the axis to clear it).

/** One axis: a numeric (linear, or log over ≥ 2 decades of positive values) or categorical scale. */
function makeAxis(name, values) {
  const nums = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  if (nums.length === values.length && nums.length) {
    const lo = Math.min(...nums);
    const hi = Math.max(...nums);
    const log = lo > 0 && hi / lo >= 20;
    const f = log ? Math.log10 : (x) => x;
    const [a, b] = [f(lo), f(hi)];
    const distinct = [...new Set(nums)].sort((x, y) => x - y);
    let ticks;
    if (b === a) ticks = [lo];
    else if (distinct.length <= 8) ticks = distinct; // few values: label each
    else if (log) ticks = [lo, 10 ** ((a + b) / 2), hi];
    else ticks = [lo, (lo + hi) / 2, hi];
    return {
      name, kind: log ? 'log' : 'linear', lo, hi, ticks,
      pos: (v) => (b === a ? 0.5 : (f(v) - a) / (b - a)),
    };
  }
  const cats = [...new Set(values.map((v) => fmtValue(v)))].sort();
  return {
    name, kind: 'category', cats,
    pos: (v) => (cats.length === 1 ? 0.5 : cats.indexOf(fmtValue(v)) / (cats.length - 1)),
    ticks: cats,
  };
}

/**
 * Draws `rows` ([{trial, params: flat, metric}]) across `paramNames` and the metric into `holder`.
 * `brushes` ({axis: [lo, hi] in 0..1 from the bottom}) persists across redraws; `onOpen(trial)`.
 */
function parallelChart(holder, rows, paramNames, metric, maximize, brushes, onOpen) {
  const width = Math.max(720, Math.min(holder.clientWidth || 1200, 1500));
  const height = 420;
  const m = { l: 40, r: 90, t: 36, b: 24 };
  // A conditional parameter is absent from the trials it was inactive in: its axis is made of
  // the trials that have it, and their lines skip it (a gap) instead of falling to its end.
  const axes = paramNames.map((p) => makeAxis(p, rows.map((r) => r.params[p]).filter((v) => v !== undefined)))
    .concat([makeAxis(metric, rows.map((r) => r.metric))]);
  for (const k of Object.keys(brushes)) if (!axes.some((a) => a.name === k)) delete brushes[k];
  const X = (i) => m.l + (axes.length === 1 ? 0 : (i / (axes.length - 1)) * (width - m.l - m.r));
  const H = height - m.t - m.b;
  const Y = (t) => m.t + (1 - t) * H;
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'parallel' });
  const mAxis = axes[axes.length - 1];
  const colourT = (v) => { const t = mAxis.pos(v); return maximize ? t : 1 - t; };
  const lines = s('g', {});
  const order = rows.slice().sort((a, b) => colourT(a.metric) - colourT(b.metric)); // best on top
  const paths = order.map((r) => {
    const pts = axes.map((a, i) => {
      const v = i === axes.length - 1 ? r.metric : r.params[a.name];
      return v === undefined ? null : [X(i), Y(a.pos(v))];
    });
    const d = pts.map((p, i) => (p ? `${i && pts[i - 1] ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}` : '')).join('');
    const path = s('path', { d, stroke: viridis(colourT(r.metric)), data: { trial: r.trial } },
      s('title', {}, `trial ${r.trial}: ${metric} ${fmt(r.metric)}\n`
        + paramNames.map((p) => `${p} = ${r.params[p] === undefined ? '— (inactive)' : fmtValue(r.params[p])}`).join('\n')));
    path.addEventListener('click', () => onOpen(r.trial));
    path.row = r;
    lines.appendChild(path);
    return path;
  });
  svg.appendChild(lines);
  const note = h('p', { class: 'sub' });
  const apply = () => {
    let kept = 0;
    for (const p of paths) {
      const r = p.row;
      const ok = axes.every((a, i) => {
        const b = brushes[a.name];
        if (!b) return true;
        const v = i === axes.length - 1 ? r.metric : r.params[a.name];
        if (v === undefined) return false;
        const t = a.pos(v);
        return t >= b[0] - 1e-9 && t <= b[1] + 1e-9;
      });
      p.classList.toggle('dim', !ok);
      kept += ok;
    }
    holder.dataset.kept = kept;
    note.textContent = Object.keys(brushes).length
      ? `${kept} of ${rows.length} trials in the chosen ranges (click an axis to clear its range).`
      : `${rows.length} ranked trials${rows.length >= MAX_PARALLEL ? ' (the best)' : ''}; colour: ${metric}, bright = better. Drag along an axis to filter; hover a line for its trial; click it to open the trial.`;
  };
  axes.forEach((a, i) => {
    const x = X(i);
    const g = s('g', { class: 'axis', data: { axis: a.name } });
    g.appendChild(s('line', { x1: x, x2: x, y1: m.t, y2: m.t + H, stroke: '#57606a' }));
    g.appendChild(s('text', { x, y: m.t - 14, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 600, fill: '#1f2328' }, a.name));
    const ticks = a.kind === 'category' && a.ticks.length > 12 ? [a.ticks[0], a.ticks[a.ticks.length - 1]] : a.ticks;
    for (const t of ticks) {
      const y = Y(a.kind === 'category' ? a.pos(t) : a.pos(t));
      g.appendChild(s('text', { x: x + 5, y: y + 4, 'font-size': 10.5, fill: '#57606a' },
        a.kind === 'category' ? String(t).slice(0, 14) : fmt(t, 4)));
    }
    const brushRect = s('rect', { x: x - 8, width: 16, class: 'brush' });
    const showBrush = () => {
      const b = brushes[a.name];
      brushRect.setAttribute('y', b ? Y(b[1]) : 0);
      brushRect.setAttribute('height', b ? Math.max(1, Y(b[0]) - Y(b[1])) : 0);
    };
    showBrush();
    g.appendChild(brushRect);
    // The grab area: a transparent band along the axis.
    const hit = s('rect', { x: x - 12, y: m.t - 4, width: 24, height: H + 8, class: 'hit' });
    const toT = (ev) => {
      const r = svg.getBoundingClientRect();
      const y = ((ev.clientY - r.top) / r.height) * height;
      return Math.min(1, Math.max(0, 1 - (y - m.t) / H));
    };
    hit.addEventListener('pointerdown', (ev) => {
      ev.preventDefault();
      hit.setPointerCapture(ev.pointerId);
      holder.dataset.dragging = '1';
      const t0 = toT(ev);
      let moved = false;
      const move = (e) => {
        const t1 = toT(e);
        if (Math.abs(t1 - t0) < 0.01 && !moved) return;
        moved = true;
        brushes[a.name] = [Math.min(t0, t1), Math.max(t0, t1)];
        showBrush();
        apply();
      };
      const up = () => {
        delete holder.dataset.dragging;
        hit.removeEventListener('pointermove', move);
        hit.removeEventListener('pointerup', up);
        if (!moved) {
          delete brushes[a.name];
          showBrush();
          apply();
        }
      };
      hit.addEventListener('pointermove', move);
      hit.addEventListener('pointerup', up);
    });
    g.appendChild(hit);
    svg.appendChild(g);
  });
  apply();
  holder.replaceChildren(svg, note);
}

// ---------------------------------------------------------------------------------------------
// Page: every sweep

function progressBar(sw) {
  const total = sw.total || (sw.queued + sw.running + sw.finished + sw.failed + sw.stopped) || 1;
  const bar = h('div', { class: 'progress', title: 'finished, stopped early, failed, running' });
  for (const k of ['finished', 'stopped', 'failed', 'running']) {
    const span = h('span', { class: k });
    span.style.width = `${Math.min(100, (sw[k] / total) * 100)}%`;
    bar.appendChild(span);
  }
  const done = sw.finished + sw.stopped + sw.failed;
  const text = `${done} of ${sw.total || '∞'} done · ${sw.finished} finished, ${sw.stopped} stopped early, `
    + `${sw.failed} failed · ${sw.running} running · ${sw.queued} queued`;
  return h('div', {}, bar, h('div', { class: 'progress-text' }, text));
}

function elapsed(sw) {
  const end = SWEEP_ENDED.has(sw.state) ? sw.updated_at : Date.now() / 1000;
  return fmtDuration(end - sw.created_at);
}

async function pageIndex(main) {
  $('crumbs').replaceChildren('sweeps');
  document.title = 'sweeps — sweep';
  const body = h('tbody');
  const empty = h('p', { class: 'empty hidden' },
    'No sweeps yet: coordinator submit SWEEP.yaml (W&B sweep YAML works as it is).');
  main.replaceChildren(h('h1', {}, 'Sweeps'),
    h('div', { class: 'scroll' }, h('table', { id: 'sweeps' },
      h('thead', {}, h('tr', {}, ['sweep', 'method', 'state', 'progress', 'best', 'elapsed',
        h('a', { href: '/workers' }, 'workers')].map((c) => h('th', {}, c)))), body)), empty);
  const draw = (list) => {
    empty.classList.toggle('hidden', list.length > 0);
    body.replaceChildren(...list.slice().reverse().map((sw) => h('tr', { data: { sweep: sw.id } },
      h('td', {}, h('a', { href: sweepPath(sw.id) }, sw.name || sw.id), h('div', { class: 'progress-text' }, sw.id)),
      h('td', {}, sw.method),
      h('td', {}, stateBadge(sw.state)),
      h('td', {}, progressBar(sw)),
      h('td', { class: 'num' }, sw.best === null ? '—' : fmt(sw.best),
        h('div', { class: 'progress-text' }, sw.best_trial ? `${sw.metric}, trial ${sw.best_trial}` : sw.metric)),
      h('td', { class: 'num' }, elapsed(sw)),
      // Workers connected to the coordinator, shown while the sweep can use them.
      h('td', { class: 'num', title: 'workers connected to the coordinator' }, SWEEP_ENDED.has(sw.state) ? '—' : sw.workers))));
  };
  await poll('/api/v1/sweeps', draw);
}

/** Draws what `url` answers every 2 s, for as long as the page is open. */
async function poll(url, draw) {
  for (;;) {
    try {
      draw(await getJson(url));
      connection.live();
    } catch (e) {
      connection.lost();
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------------------------------------
// Page: the workers

function gpuList(gpus) {
  if (!gpus.length) return '—';
  return h('div', {}, ...gpus.map((g) => h('div', { class: 'gpu', title: g.uuid || '' },
    h('span', { class: 'gpu-id' }, g.id),
    [g.name || 'GPU', g.memory_mb ? `${Math.round(g.memory_mb / 1024)} GiB` : null].filter(Boolean).join(' · '))));
}

async function pageWorkers(main) {
  $('crumbs').replaceChildren(h('a', { href: '/' }, 'sweeps'), ' / ', 'workers');
  document.title = 'workers — sweep';
  const body = h('tbody');
  const summary = h('p', { class: 'progress-text' });
  const empty = h('p', { class: 'empty hidden' },
    'No workers yet: worker --coordinator URL on each machine (docs/DEPLOY.md).');
  main.replaceChildren(h('h1', {}, 'Workers'), summary,
    h('div', { class: 'scroll' }, h('table', { id: 'workers' },
      h('thead', {}, h('tr', {}, ['worker', 'state', 'cores', 'slots', 'last seen', 'GPUs', 'version']
        .map((c) => h('th', {}, c)))), body)), empty);
  const draw = (list) => {
    empty.classList.toggle('hidden', list.length > 0);
    const live = list.filter((w) => w.connected);
    const gpus = live.reduce((n, w) => n + w.gpus.length, 0);
    summary.textContent = `${live.length} connected of ${list.length} known; ${gpus} GPU${gpus === 1 ? '' : 's'} connected`;
    const now = Date.now() / 1000;
    body.replaceChildren(...list.map((w) => h('tr', { data: { worker: w.id } },
      h('td', {}, w.host, h('div', { class: 'progress-text' }, w.id)),
      h('td', {}, stateBadge(w.connected ? 'connected' : 'gone')),
      h('td', { class: 'num' }, w.cores),
      h('td', { class: 'num' }, w.slots),
      h('td', { class: 'num' }, w.last_seen > 0 ? `${fmtDuration(now - w.last_seen)} ago` : 'not since the start'),
      h('td', {}, gpuList(w.gpus)),
      h('td', {}, w.version))));
  };
  await poll('/api/v1/workers', draw);
}

// ---------------------------------------------------------------------------------------------
// Page: one sweep, live

const TOP_CURVES = 5;
// Sweeps of up to this many trials come whole; larger ones as the best MAX_ROWS and the running
// trials, so that a page costs the same at a million trials as at a thousand.
const FULL_BOARD = 2000;
const MAX_ROWS = 500;
const MAX_PARALLEL = 2000; // the best ranked trials drawn in parallel coordinates
const MAX_RUNNING_CURVES = 8;

async function pageSweep(main, id) {
  const S = {
    id,
    info: null, // the summary (status --json)
    lb: null, // the leaderboard JSON
    rows: new Map(), // trial -> leaderboard row
    curves: new Map(), // trial -> {name: [[step, value]]}
    sort: { key: 'rank', dir: 1 },
    bestShown: null,
    curveSet: new Set(), // trials whose curves are drawn
  };
  document.title = `${id} — sweep`;
  $('crumbs').replaceChildren(h('a', { href: '/' }, 'sweeps'), ' / ', id);

  const el = {
    title: h('h1', {}, id),
    sub: h('div', { class: 'sub' }),
    cards: h('div', { class: 'summary' }),
    notices: h('ul', { class: 'notices', id: 'notices' }),
    controls: h('div', { class: 'toolbar' }),
    message: h('span', { class: 'error' }),
    downloads: h('div', { class: 'toolbar downloads' }),
    curves: h('div', { class: 'charts', id: 'curves' }),
    axis: h('div', {}),
    board: h('div', { class: 'scroll' }),
    more: h('p', { class: 'sub' }),
    parallel: h('div', { class: 'chart parallel-box', id: 'parallel' }),
    pareto: h('div', { class: 'chart', id: 'pareto' }),
    paretoTitle: h('h2', { class: 'hidden' }, 'Pareto front'),
    importance: h('div', { class: 'figure', id: 'importance' }),
    confusion: h('div', { id: 'confusion' }),
    config: h('pre', { class: 'config', id: 'config' }),
  };
  const buttons = {
    pause: h('button', { id: 'pause', type: 'button', title: 'Start no new trials; running ones go on', onclick: () => control('pause') }, 'Pause'),
    handBack: h('button', { id: 'hand-back', type: 'button', title: 'Running trials save a checkpoint and wait; Resume goes on from it', onclick: () => control('pause', '?hand_back=true') }, 'Pause and hand back'),
    resume: h('button', { id: 'resume', type: 'button', onclick: () => control('resume') }, 'Resume'),
    stop: h('button', { id: 'stop', type: 'button', class: 'danger', onclick: () => control('stop') }, 'Stop'),
  };
  el.controls.append(buttons.pause, buttons.handBack, buttons.resume, buttons.stop, el.message);
  const base = apiSweep(id);
  // Links only for what exists: the best trial's confusion matrix and the best kept model
  // appear once there is one (a program sweep may have neither).
  const confusionLinks = h('span', { id: 'confusion-links', class: 'hidden' },
    downloadLink('confusion_best.json', `${base}/files/confusion_best.json`, `${id}-confusion_best.json`),
    downloadLink('confusion_best.csv', `${base}/files/confusion_best.csv`, `${id}-confusion_best.csv`),
    downloadLink('confusion_best.png', `${base}/files/confusion_best.png`, `${id}-confusion_best.png`));
  // The best kept model's two files: saved side by side they make a model directory.
  const modelLinks = h('span', { id: 'model-links', class: 'hidden' }, ' · best model: ',
    downloadLink('model.json', `${base}/trials/best/model.json`, 'model.json'),
    downloadLink('model.safetensors', `${base}/trials/best/model.safetensors`, 'model.safetensors'));
  el.downloads.append('Download: ',
    downloadLink('leaderboard.json', `${base}/files/leaderboard.json`, `${id}-leaderboard.json`),
    downloadLink('leaderboard.csv', `${base}/files/leaderboard.csv`, `${id}-leaderboard.csv`),
    confusionLinks,
    downloadLink('report.html', `${base}/files/report.html`, `${id}-report.html`),
    modelLinks);
  main.replaceChildren(el.title, el.sub, el.cards, el.notices, el.controls, el.downloads,
    h('h2', {}, 'Learning curves: running and top trials'), el.axis, el.curves,
    h('h2', {}, 'Leaderboard'), el.board, el.more,
    el.paretoTitle, el.pareto,
    h('div', { class: 'cols' },
      h('div', {}, h('h2', {}, 'Best trial’s confusion matrix (test set)'), el.confusion),
      h('div', {}, h('h2', {}, 'Parameter importance'), el.importance)),
    h('h2', {}, 'Parameters and the metric'), el.parallel,
    h('h2', {}, 'Sweep config'), el.config);

  async function control(action, query = '') {
    if (action === 'stop' && !confirm('Stop the sweep? Running trials are stopped and nothing new starts.')) return;
    el.message.textContent = '';
    try {
      const r = await api(`${base}/${action}${query}`, { method: 'POST' });
      S.info = await r.json();
      drawInfo();
    } catch (e) {
      el.message.textContent = `${action}: ${e.message}`;
    }
  }

  function metricName() { return (S.lb && S.lb.metric.name) || (S.info && S.info.metric) || ''; }
  // Several objectives ([{name, goal}]), or none for a sweep with one.
  function objectives() { return (S.lb && S.lb.objectives) || (S.info && S.info.objectives) || []; }
  function maximize() { return !S.lb || S.lb.metric.goal !== 'minimize'; }

  function drawInfo() {
    const sw = S.info;
    if (!sw) return;
    el.title.textContent = sw.name || sw.id;
    const goals = (sw.objectives && sw.objectives.length ? sw.objectives : [{ name: sw.metric, goal: sw.goal }])
      .map((o) => `${o.name} (${o.goal})`).join(', ');
    el.sub.replaceChildren(stateBadge(sw.state), `  ${sw.id} · ${sw.method} · ${goals}`);
    const card = (k, v, extra) => h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v), extra);
    el.cards.replaceChildren(
      card('state', sw.state, null),
      card('progress', `${sw.finished + sw.stopped + sw.failed} / ${sw.total || '∞'}`, progressBar(sw)),
      card(`best ${sw.metric}`, sw.best === null ? '—' : fmt(sw.best),
        sw.best_trial ? h('a', { href: `${sweepPath(id)}/trials/${sw.best_trial}` }, `trial ${sw.best_trial}`) : null),
      card('elapsed', elapsed(sw), null),
      card('workers', String(sw.workers), null));
    el.cards.firstChild.dataset.state = sw.state;
    // What the coordinator wants a person to know (config warnings, unranked trials, no worker).
    el.notices.replaceChildren(...(sw.notices || []).map((n) => h('li', {}, n)));
    const ended = SWEEP_ENDED.has(sw.state);
    buttons.pause.disabled = sw.state !== 'running';
    buttons.handBack.disabled = sw.state !== 'running' && sw.state !== 'paused';
    buttons.resume.disabled = sw.state !== 'paused';
    buttons.stop.disabled = ended;
  }

  const drawInfoSoon = throttle(drawInfo, 500);

  // Leaderboard
  const COLS = [
    { key: 'rank', label: 'rank', num: true, get: (r) => r.rank },
    { key: 'trial', label: 'trial', num: true, get: (r) => r.trial },
    { key: 'state', label: 'state', get: (r) => r.state },
    { key: 'metric', label: () => metricName(), num: true, get: (r) => r.metrics[metricName()] },
    { key: 'best', label: () => `best (${stepWord(S.lb && S.lb.sweep && S.lb.sweep.config)})`, num: true, get: (r) => (r.best ? r.best.value : null),
      show: (r) => (r.best ? `${fmt(r.best.value)} (${r.best.step})` : '—') },
    { key: 'seconds', label: 'seconds', num: true, get: (r) => r.duration_seconds, show: (r) => fmt(r.duration_seconds, 1) },
    { key: 'worker', label: 'worker', get: (r) => r.worker },
  ];

  // Besides the sweep's metric, the keys its trials logged (their final values, as W&B's
  // summary), each once: a key that is also a parameter with a column shows as that only.
  const MAX_LOGGED_COLS = 6;
  function loggedKeys() {
    const params = new Set(varyingParams());
    const keys = new Set([...S.rows.values()].flatMap((r) => Object.keys(r.metrics || {})));
    keys.delete(metricName());
    for (const o of objectives()) keys.delete(o.name);
    const first = ['test_accuracy', 'val_accuracy', 'val_loss', 'epoch', 'epochs'];
    return [...keys]
      .filter((k) => !params.has(k) && !k.startsWith('_'))
      .sort((a, b) => ((first.indexOf(a) + 1 || 99) - (first.indexOf(b) + 1 || 99)) || a.localeCompare(b))
      .slice(0, MAX_LOGGED_COLS);
  }

  function columns() {
    const logged = loggedKeys().map((k) => ({ key: `metric:${k}`, label: k, num: true, get: (r) => r.metrics[k] }));
    const params = varyingParams().map((p) => ({ key: `param:${p}`, label: p, param: p }));
    // The run names a program gave, when it gave any (W&B's run name).
    const named = [...S.rows.values()].some((r) => r.name)
      ? [{ key: 'name', label: 'name', get: (r) => r.name || '' }] : [];
    const objs = objectives();
    if (objs.length) {
      // Several objectives: the front after the rank, a column per objective after the state.
      const front = { key: 'front', label: 'front', num: true, get: (r) => r.front ?? null };
      const each = objs.map((o) => ({ key: `metric:${o.name}`, label: o.name, num: true, get: (r) => r.metrics[o.name] }));
      return [COLS[0], front, COLS[1]].concat(named, COLS[2], each, logged, COLS.slice(5), params);
    }
    return COLS.slice(0, 2).concat(named, COLS.slice(2, 5), logged, COLS.slice(5), params);
  }

  function sortedRows() {
    const rows = [...S.rows.values()];
    const col = columns().find((c) => c.key === S.sort.key) || COLS[0];
    const pget = S.sort.key.startsWith('param:') ? ((r) => flatten(r.params)[S.sort.key.slice(6)]) : null;
    const get = pget || col.get;
    const unrankedOrder = { running: 0, queued: 1 };
    return rows.sort((a, b) => {
      let va = get(a);
      let vb = get(b);
      if (S.sort.key === 'rank') {
        // Best first; then running, queued, and the rest by trial number.
        va = va ?? 1e9 + (unrankedOrder[a.state] ?? 2) * 1e6 + a.trial;
        vb = vb ?? 1e9 + (unrankedOrder[b.state] ?? 2) * 1e6 + b.trial;
      }
      const na = va === null || va === undefined || va === '';
      const nb = vb === null || vb === undefined || vb === '';
      if (na || nb) return na - nb || a.trial - b.trial;
      const c = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
      return c * S.sort.dir || a.trial - b.trial;
    });
  }

  function varyingParams() {
    const flat = [...S.rows.values()].map((r) => flatten(r.params));
    const keys = new Set(flat.flatMap((f) => Object.keys(f)));
    return [...keys].filter((k) => new Set(flat.map((f) => JSON.stringify(f[k]))).size > 1).sort();
  }

  // Parallel coordinates of the ranked trials, drawn here from the leaderboard rows.
  const brushes = {};
  function drawParallel() {
    // Not while a range is being dragged: the new drawing would drop the pointer.
    if (el.parallel.dataset.dragging) {
      setTimeout(drawParallel, 500);
      return;
    }
    const metric = metricName();
    const rows = [...S.rows.values()]
      .filter((r) => r.rank && Number.isFinite(r.metrics[metric]))
      .sort((a, b) => a.rank - b.rank)
      .slice(0, MAX_PARALLEL)
      .map((r) => ({ trial: r.trial, params: flatten(r.params), metric: r.metrics[metric] }));
    if (!rows.length) {
      el.parallel.replaceChildren(h('p', { class: 'empty' }, 'No ranked trial yet.'));
      return;
    }
    parallelChart(el.parallel, rows, varyingParams(), metric, maximize(), brushes,
      (trial) => { location.href = `${sweepPath(id)}/trials/${trial}`; });
  }

  function drawPareto() {
    const objs = objectives();
    el.paretoTitle.classList.toggle('hidden', objs.length < 2);
    if (objs.length < 2) return;
    const [ox, oy] = objs;
    const rows = [...S.rows.values()]
      .filter((r) => r.rank && Number.isFinite(r.metrics[ox.name]) && Number.isFinite(r.metrics[oy.name]))
      .map((r) => ({ trial: r.trial, x: r.metrics[ox.name], y: r.metrics[oy.name], front: r.front || 0 }));
    if (!rows.length) {
      el.pareto.replaceChildren(h('p', { class: 'empty' }, 'No ranked trial yet.'));
      return;
    }
    paretoChart(el.pareto, rows, ox, oy, (trial) => { location.href = `${sweepPath(id)}/trials/${trial}`; });
  }

  function drawBoard() {
    const cols = columns();
    const head = h('tr', {}, cols.map((c) => {
      const th = h('th', {
        class: [c.num ? 'num' : '', S.sort.key === c.key ? 'sorted' : '', S.sort.key === c.key && S.sort.dir < 0 ? 'desc' : ''].join(' '),
        data: { key: c.key },
        onclick: () => {
          if (S.sort.key === c.key) S.sort.dir = -S.sort.dir;
          else S.sort = { key: c.key, dir: c.key === 'metric' || c.key === 'best' ? (maximize() ? -1 : 1) : 1 };
          drawBoard();
        },
      }, typeof c.label === 'function' ? c.label() : c.label);
      return th;
    }));
    const all = sortedRows();
    const body = h('tbody', {}, all.slice(0, MAX_ROWS).map((r) => {
      const flat = flatten(r.params);
      return h('tr', {
        class: `clickable${r.rank === 1 || r.front === 1 ? ' best' : ''}`,
        data: { trial: r.trial, state: r.state },
        title: r.error || '',
        onclick: () => { location.href = `${sweepPath(id)}/trials/${r.trial}`; },
      }, cols.map((c) => {
        if (c.param) return h('td', {}, fmtValue(flat[c.param]));
        if (c.key === 'state') return h('td', {}, stateBadge(r.state));
        if (c.key === 'trial') return h('td', { class: 'num' }, h('a', { href: `${sweepPath(id)}/trials/${r.trial}` }, r.trial));
        const v = c.show ? c.show(r) : fmt(c.get(r));
        return h('td', { class: c.num ? 'num' : '' }, v);
      }));
    }));
    const table = h('table', { class: 'sortable', id: 'leaderboard', data: { rows: S.rows.size } }, h('thead', {}, head), body);
    if (!S.rows.size) el.board.replaceChildren(h('p', { class: 'empty' }, 'No trials yet.'));
    else el.board.replaceChildren(table);
    const i = S.info;
    const total = i ? i.queued + i.running + i.finished + i.failed + i.stopped : all.length;
    el.more.textContent = S.partial
      ? `The best ${MAX_ROWS} of ${total} trials and the running ones; leaderboard.csv has them all.`
      : all.length > MAX_ROWS
        ? `The first ${MAX_ROWS} of ${all.length} trials in this order; leaderboard.csv has them all.` : '';
  }

  // Curves of the running trials and the top ranked ones.
  function curveTrials() {
    const rows = [...S.rows.values()];
    const top = rows.filter((r) => r.rank).sort((a, b) => a.rank - b.rank).slice(0, TOP_CURVES);
    const running = rows.filter((r) => r.state === 'running').sort((a, b) => a.trial - b.trial).slice(0, MAX_RUNNING_CURVES);
    const seen = new Set();
    return [...top, ...running].filter((r) => !seen.has(r.trial) && seen.add(r.trial));
  }

  // A trial keeps its colour while it is drawn; a new one takes a colour no drawn trial has.
  const colours = new Map();
  function colourOf(trials) {
    const shown = new Set(trials.map((r) => r.trial));
    for (const k of [...colours.keys()]) if (!shown.has(k)) colours.delete(k);
    for (const r of trials) {
      if (colours.has(r.trial)) continue;
      const used = new Set(colours.values());
      colours.set(r.trial, PALETTE.find((c) => !used.has(c)) || PALETTE[r.trial % PALETTE.length]);
    }
    return (trial) => colours.get(trial);
  }

  const MAX_PANELS = 12;
  function drawCurves() {
    const trials = curveTrials();
    // The drawn set, for the event handler's cheap test; curves of trials no longer drawn go.
    S.curveSet = new Set(trials.map((r) => r.trial));
    for (const k of [...S.curves.keys()]) {
      // Running trials keep theirs (built from the events) until they end.
      const r = S.rows.get(k);
      if (!S.curveSet.has(k) && !(r && r.state === 'running')) S.curves.delete(k);
    }
    for (const k of [...curveFetchers.keys()]) if (!S.curveSet.has(k)) curveFetchers.delete(k);
    for (const r of trials) if (!S.curves.has(r.trial)) fetchCurve(r.trial);
    const colour = colourOf(trials);
    const metric = metricName();
    // A panel per key the drawn trials logged (as W&B draws one per key): the sweep's metric
    // first, then losses, then the rest by name; the step counters are the x axis, not panels.
    const logged = new Set();
    for (const r of trials) for (const k of Object.keys(S.curves.get(r.trial) || {})) logged.add(k);
    for (const k of STEP_KEYS) logged.delete(k);
    logged.delete(metric);
    const rest = [...logged].filter((k) => !k.startsWith('_'))
      .sort((a, b) => Number(!a.includes('loss')) - Number(!b.includes('loss')) || a.localeCompare(b))
      .slice(0, MAX_PANELS - 1);
    const panels = [metric, ...rest].map((name) => ({
      name,
      series: trials.map((r) => ({
        label: `trial ${r.trial}${r.state === 'running' ? ' (running)' : r.rank ? ` (rank ${r.rank})` : ''}`,
        color: colour(r.trial),
        width: r.state === 'running' ? 2.6 : 1.6,
        trial: r.trial,
        running: r.state === 'running',
        points: onAxis(S.curves.get(r.trial) || {}, S.xKey, (S.curves.get(r.trial) || {})[name] || []),
      })),
    })).filter((p, i) => i === 0 || p.series.some((se) => se.points.length));
    const counters = [...STEP_KEYS].filter((k) => trials.some((r) => (S.curves.get(r.trial) || {})[k]));
    if (!counters.includes(S.xKey)) S.xKey = null;
    const xLabel = S.xKey || stepWord(S.lb && S.lb.sweep && S.lb.sweep.config);
    const charts = panels.map((p) => lineChart(p.name, p.series, { xLabel }));
    // Made again only when what it offers changes (an open list is not closed by a redraw).
    const sig = `${counters.join(',')}|${S.xKey}`;
    if (el.axis.dataset.sig !== sig) {
      el.axis.dataset.sig = sig;
      el.axis.replaceChildren(...[axisPicker(counters, S.xKey, (k) => { S.xKey = k; drawCurves(); })].filter(Boolean));
    }
    el.curves.replaceChildren(...charts);
    el.curves.dataset.points = charts.reduce((a, c) => a + Number(c.dataset.points), 0);
  }
  const drawCurvesSoon = throttle(drawCurves, 250);

  // A trial's curve is fetched when it is first drawn (at most every 0.7 s per trial); its later
  // points come with the events.
  const curveFetchers = new Map();
  function fetchCurve(trial) {
    if (!curveFetchers.has(trial)) {
      curveFetchers.set(trial, throttle(async () => {
        try {
          const t = await getJson(`${base}/trials/${trial}`);
          S.curves.set(trial, curveByName(t.curve));
          drawCurvesSoon();
        } catch (_) { /* the stream reports losses */ }
      }, 700));
    }
    curveFetchers.get(trial)();
  }

  async function refreshBoard() {
    try {
      const i = S.info;
      S.partial = !!i && i.queued + i.running + i.finished + i.failed + i.stopped > FULL_BOARD;
      S.lb = await getJson(S.partial ? `${base}?top=${MAX_ROWS}&running=true` : base);
      S.rows = new Map(S.lb.trials.map((t) => [t.trial, t]));
      el.config.textContent = JSON.stringify(S.lb.sweep.config, null, 2);
      drawBoard();
      drawPareto();
      drawParallel();
      drawCurvesSoon();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) throw e;
    }
  }
  const refreshBoardSoon = throttle(refreshBoard, (took) => Math.max(1000, 10 * took));
  const drawBoardSoon = throttle(drawBoard, (took) => Math.max(1000, 10 * took));

  async function refreshFigures() {
    if (S.info && S.info.best_trial) await loadImage(el.importance, `${base}/files/importance.svg`, 'parameter importance');
    const best = S.info && S.info.best_trial;
    if (!best) el.importance.replaceChildren(h('p', { class: 'empty' }, 'No ranked trial yet.'));
    if (best && best !== S.bestShown) {
      try {
        const t = await getJson(`${base}/trials/${best}`);
        confusionLinks.classList.toggle('hidden', !t.confusion);
        modelLinks.classList.toggle('hidden', !(await exists(`${base}/trials/best/model.json`)));
        if (t.confusion) {
          el.confusion.replaceChildren(
            h('p', { class: 'sub' }, 'Trial ', h('a', { href: `${sweepPath(id)}/trials/${best}` }, best), ` (${metricName()} ${fmt(S.info.best)})`),
            confusionTable(t.confusion));
          S.bestShown = best;
        } else {
          el.confusion.replaceChildren(h('p', { class: 'empty' }, `Trial ${best} has no confusion matrix.`));
        }
      } catch (_) { /* retried on the next change */ }
    } else if (!best) {
      el.confusion.replaceChildren(h('p', { class: 'empty' }, 'No finished trial yet.'));
    }
  }
  const refreshFiguresSoon = throttle(refreshFigures, (took) => Math.max(5000, 20 * took));

  // Start: the summary, the leaderboard, then live events.
  try {
    await untilReachable(async () => {
      const list = await getJson('/api/v1/sweeps');
      S.info = list.find((x) => x.id === id) || null;
      if (!S.info) throw new ApiError(404, `no sweep ${id}`);
      drawInfo();
      await refreshBoard();
    });
    refreshFigures();
  } catch (e) {
    main.replaceChildren(h('h1', {}, id), h('p', { class: 'error' }, e.message), h('p', {}, h('a', { href: '/' }, 'all sweeps')));
    connection.set('ended', 'no such sweep');
    return;
  }
  setInterval(() => { if (S.info && !SWEEP_ENDED.has(S.info.state)) drawInfo(); }, 1000);

  let terminalCount = S.info.finished + S.info.stopped + S.info.failed;
  await stream(`${base}/events`, {
    onOpen: () => { refreshBoardSoon(); refreshFiguresSoon(); },
    ended: () => S.info && SWEEP_ENDED.has(S.info.state),
    onEvent: (ev) => {
      if (ev.sweep) {
        S.info = ev.sweep;
        drawInfoSoon();
        const done = ev.sweep.finished + ev.sweep.stopped + ev.sweep.failed;
        if (done !== terminalCount) {
          terminalCount = done;
          refreshBoardSoon();
          refreshFiguresSoon();
        }
      }
      for (const { trial: t, points } of ev.changes || []) {
        // A partial board keeps its rows and the running trials; the next refresh brings the rest.
        if (!t || (S.partial && t.state !== 'running' && !S.rows.has(t.trial))) continue;
        const old = S.rows.get(t.trial);
        S.rows.set(t.trial, t);
        if (!old || old.state !== t.state) {
          refreshBoardSoon();
          drawCurvesSoon();
        }
        drawBoardSoon();
        // Changes carry the trial's new points. A trial seen from its first attempt's start has
        // its whole curve from them; one seen later is fetched once, when it is drawn.
        const curve = S.curves.get(t.trial);
        if (curve) {
          if (points && points.length) {
            addPoints(curve, points);
            if (S.curveSet.has(t.trial)) drawCurvesSoon();
          }
        } else if (!old && t.state === 'running' && t.attempts === 1) {
          const c = {};
          addPoints(c, points || []);
          S.curves.set(t.trial, c);
        } else if (S.curveSet.has(t.trial)) {
          fetchCurve(t.trial);
        }
      }
    },
  });
  refreshBoard();
  refreshFigures();
}

// ---------------------------------------------------------------------------------------------
// What a program logged besides numbers (wandb.Image, wandb.Table, wandb.Html): its files
// under media/, listed in media/_index.jsonl by our wandb module (docs/PROGRAMS.md "Media").

const MEDIA_INDEX = 'media/_index.jsonl';
const MEDIA_STEPS_SHOWN = 8;
const MEDIA_IMAGES_SHOWN = 64;
const TABLE_ROWS_SHOWN = 50;

function fileUrl(base, path) { return `${base}/files/${path.split('/').map(encodeURIComponent).join('/')}`; }

/** The media section of a trial whose kept files are `files`: null when it logged none. */
function mediaSection(base, files) {
  const names = new Set(files.map((f) => f.path));
  if (!names.has(MEDIA_INDEX)) return null;
  const holder = h('div', { id: 'media' }, h('p', { class: 'empty' }, 'Loading…'));
  (async () => {
    const text = await (await api(fileUrl(base, MEDIA_INDEX))).text();
    // The index is the program's own writing: only entries naming a kept file are shown.
    const entries = text.split('\n').map((l) => { try { return JSON.parse(l); } catch (_) { return null; } })
      .filter((e) => e && typeof e.key === 'string' && typeof e.path === 'string' && names.has(e.path)
        && Number.isInteger(e.step) && ['image', 'table', 'html'].includes(e.type));
    const byKey = new Map();
    for (const e of entries) {
      if (!byKey.has(e.key)) byKey.set(e.key, []);
      byKey.get(e.key).push(e);
    }
    let images = 0;
    const sections = [...byKey.keys()].sort().map((key) => {
      const list = byKey.get(key);
      const steps = [...new Set(list.map((e) => e.step))].sort((a, b) => a - b);
      const shown = steps.slice(-MEDIA_STEPS_SHOWN);
      const note = steps.length > shown.length ? h('p', { class: 'sub' }, `the last ${shown.length} of ${steps.length} steps`) : null;
      return h('div', { class: 'media-key' }, h('h3', {}, key), note,
        // Steps as the charts count them: W&B's _step + 1.
        shown.map((step) => h('div', { class: 'media-step' }, h('div', { class: 'sub' }, `step ${step + 1}`),
          list.filter((e) => e.step === step).map((e) => {
            const url = fileUrl(base, e.path);
            const name = e.path.split('/').pop();
            if (e.type === 'image') {
              if (++images > MEDIA_IMAGES_SHOWN) return null;
              const fig = h('figure', { class: 'media-image' }, h('div', { class: 'img' }), e.caption ? h('figcaption', {}, String(e.caption)) : null);
              loadImage(fig.firstChild, url, `${key} at step ${step + 1}`);
              return fig;
            }
            if (e.type === 'table') return mediaTable(url, name);
            return mediaHtml(url, name);
          }))));
    });
    if (images > MEDIA_IMAGES_SHOWN) sections.push(h('p', { class: 'sub' }, `${MEDIA_IMAGES_SHOWN} of ${images} images shown; the trial's files have them all.`));
    holder.replaceChildren(...(sections.length ? sections : [h('p', { class: 'empty' }, 'No media.')]));
  })().catch((e) => holder.replaceChildren(h('p', { class: 'error' }, `media: ${e.message}`)));
  return holder;
}

/** A logged wandb.Table ({columns, data}): its first rows, cells as text. */
function mediaTable(url, name) {
  const box = h('div', { class: 'media-table' }, h('p', { class: 'empty' }, 'Loading…'));
  (async () => {
    const t = await (await api(url)).json();
    const columns = Array.isArray(t.columns) ? t.columns.map(String) : [];
    const rows = Array.isArray(t.data) ? t.data : [];
    const cell = (v) => (v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v));
    // The same table as CSV, made here from the JSON (RFC 4180 quoting).
    const quote = (v) => { const t = v === null ? '' : cell(v); return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t; };
    const csv = [columns, ...rows.map((r) => (Array.isArray(r) ? r : []))].map((r) => r.map(quote).join(',')).join('\r\n') + '\r\n';
    const csvName = name.replace(/\.table\.json$/, '.csv');
    const csvLink = h('a', { href: '#', onclick: (ev) => {
      ev.preventDefault();
      const u = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
      const a = h('a', { href: u, download: csvName });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(u), 10000);
    } }, csvName);
    box.replaceChildren(
      h('div', { class: 'toolbar downloads' }, `${rows.length.toLocaleString()} rows${rows.length > TABLE_ROWS_SHOWN ? `, the first ${TABLE_ROWS_SHOWN} shown` : ''} · `, downloadLink(name, url, name), ' ', csvLink),
      h('table', {}, h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
        h('tbody', {}, rows.slice(0, TABLE_ROWS_SHOWN).map((r) => h('tr', {}, (Array.isArray(r) ? r : []).map((v) => h('td', {}, cell(v))))))));
  })().catch((e) => box.replaceChildren(h('p', { class: 'error' }, `${name}: ${e.message}`)));
  return box;
}

/** A logged wandb.Html: shown in a sandboxed frame that runs none of its scripts (open the
 * downloaded file for those), with a download link. */
function mediaHtml(url, name) {
  const frame = h('iframe', { sandbox: '', class: 'media-html', title: name });
  api(url).then((r) => r.text()).then((text) => { frame.srcdoc = text; }).catch(() => {});
  return h('div', {}, h('div', { class: 'toolbar downloads' }, downloadLink(name, url, name), ' (scripts run only in the downloaded file)'), frame);
}

// ---------------------------------------------------------------------------------------------
// Page: one trial

// A length in bytes as people read it: "812 B", "3.0 kB", "1.25 MB".
function bytesText(b) {
  if (b < 1e3) return `${b} B`;
  if (b < 1e6) return `${(b / 1e3).toFixed(1)} kB`;
  return `${(b / 1e6).toFixed(2)} MB`;
}

// Where a checkpoint stands: "epoch 3", or "epoch 3 + 11 batches".
function position(m) {
  return m.batch ? `epoch ${m.epoch} + ${m.batch} batch${m.batch === 1 ? '' : 'es'}` : `epoch ${m.epoch}`;
}

async function pageTrial(main, id, n) {
  document.title = `trial ${n} of ${id} — sweep`;
  $('crumbs').replaceChildren(h('a', { href: '/' }, 'sweeps'), ' / ', h('a', { href: sweepPath(id) }, id), ` / trial ${n}`);
  const base = `${apiSweep(id)}/trials/${n}`;
  let trial = null;
  let sweepState = null;

  function draw() {
    const t = trial;
    const word = stepWord(sweepConfig);
    const stopReason = t.state === 'stopped' || t.state === 'diverged' ? 'early-stop reason' : 'error';
    const facts = [
      ['state', stateBadge(t.state)],
      ['rank', t.rank || '—'],
      ...(t.front ? [['Pareto front', t.front === 1 ? '1 (no other trial is as good on every objective and better on one)' : t.front]] : []),
      ['attempts', t.attempts],
      ['worker', t.worker || '—'],
      ...(t.gpus && t.gpus.length ? [['GPUs', h('span', { id: 'gpus' }, t.gpus.join(', '))]] : []),
      ...(t.gang && t.gang.length ? [['gang', h('span', { id: 'gang' }, `rank 0 on ${t.worker}, then ${t.gang.join(', ')}`)]] : []),
      ['duration', `${fmt(t.duration_seconds, 1)} s`],
      ['best', t.best === null ? '—' : `${fmt(t.best)} at ${word} ${t.best_step}`],
    ];
    if (t.error) facts.push([stopReason, h('span', { id: 'reason' }, t.error)]);
    if (t.checkpoint) facts.push(['checkpoint', h('span', { id: 'checkpoint' }, `${position(t.checkpoint)} (${fmt(t.checkpoint.bytes / 1e6, 2)} MB, attempt ${t.checkpoint.attempt})`)]);
    const history = t.attempt_history || [];
    const flat = flatten(t.params);
    const byName = curveByName(t.curve);
    const groups = {};
    // The step counters a script logs are the x axis, not charts of their own.
    for (const name of Object.keys(byName).filter((k) => !STEP_KEYS.has(k) && !k.startsWith('_')).sort()) {
      // A trial's GPUs (gpu.0.util, gpu.1.util, …) share a chart per quantity.
      const gpu = /^gpu\.\d+\.(util|memory_mb)$/.exec(name);
      const g = gpu ? (gpu[1] === 'util' ? 'GPU utilisation (%)' : 'GPU memory (MiB)')
        : name.endsWith('accuracy') ? 'accuracy' : name.endsWith('loss') ? 'loss' : name;
      (groups[g] = groups[g] || []).push(name);
    }
    const order = ['accuracy', 'loss'];
    const charts = Object.keys(groups)
      .sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9) || a.localeCompare(b))
      .map((g) => lineChart(g, groups[g].map((name, i) => ({ label: name, color: PALETTE[i % PALETTE.length], points: onAxis(byName, xKey, byName[name]) })), { xLabel: xKey || word }));
    const counters = [...STEP_KEYS].filter((k) => byName[k]);
    if (!counters.includes(xKey)) xKey = null;
    const picker = axisPicker(counters, xKey, (k) => { xKey = k; draw(); });
    // Against a logged counter, a chart whose rows never hold it has nothing to draw.
    const drawn = charts.filter((c) => !xKey || Number(c.dataset.points) > 0);
    const left = charts.filter((c) => !drawn.includes(c)).map((c) => c.dataset.chart);
    const curves = h('div', { class: 'charts', id: 'curves' }, drawn,
      left.length ? h('p', { class: 'sub' }, `not drawn against ${xKey} (their rows have none): ${left.join(', ')}`) : null);
    curves.dataset.points = t.curve.length;
    const metrics = Object.entries(t.metrics || {}).sort(([a], [b]) => a.localeCompare(b));
    const dl = (ext) => downloadLink(`confusion.${ext}`, `${base}/confusion.${ext}`, `${id}-trial${n}-confusion.${ext}`);
    const ownFiles = (t.files || []).filter((f) => !f.path.startsWith('media/'));
    main.replaceChildren(
      h('h1', {}, `Trial ${t.trial}`, t.name ? h('span', { class: 'run-name', id: 'run-name' }, ` · ${t.name}`) : null),
      h('div', { class: 'sub' }, stateBadge(t.state), `  sweep ${id}`),
      h('div', { class: 'cols' },
        h('div', {}, h('h2', {}, 'Trial'), h('table', { class: 'facts', id: 'facts' }, facts.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v))))),
        h('div', {}, h('h2', {}, 'Parameters'), h('table', { class: 'facts', id: 'params' },
          Object.keys(flat).sort().map((k) => h('tr', {}, h('td', {}, k), h('td', {}, fmtValue(flat[k])))))),
        h('div', {}, h('h2', {}, 'Final metrics'), h('table', { class: 'facts' },
          metrics.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, fmt(v))))))),
      // Every attempt, when the trial took more than one: where each went on from.
      ...(history.length
        ? [h('h2', {}, 'Attempts'), h('table', { id: 'attempts' },
          h('thead', {}, h('tr', {}, ['attempt', 'worker', 'went on from', 'ran', 'ended'].map((c) => h('th', {}, c)))),
          h('tbody', {}, history.map((a) => h('tr', {},
            h('td', { class: 'num' }, a.attempt),
            h('td', {}, a.worker || '—'),
            h('td', {}, a.resumed_from ? position(a.resumed_from) : 'the start'),
            h('td', { class: 'num' }, a.ended_at ? `${fmt(a.ended_at - a.started_at, 1)} s` : 'running'),
            h('td', {}, a.ending || '—')))))]
        : []),
      h('h2', {}, 'Curves'), ...(picker ? [picker] : []), curves,
      ...(t.curve_sampled
        ? [h('p', { class: 'sub', id: 'sampled' }, `${t.curve.length.toLocaleString()} of ${t.curve_points.toLocaleString()} points drawn: each metric keeps its first and last points and the lowest and highest of each stretch between. `,
          h('a', { href: `${base}/curve` }, 'every point'), ' (JSON, a page at a time)')]
        : []),
      h('h2', {}, 'Confusion matrix (test set)'),
      t.confusion
        ? h('div', { id: 'confusion' }, h('div', { class: 'toolbar downloads' }, 'Download: ', dl('json'), dl('csv'), dl('png')), confusionTable(t.confusion))
        : h('p', { class: 'empty', id: 'confusion' }, TERMINAL.has(t.state) ? 'This trial has no confusion matrix.' : 'Comes when the trial finishes.'),
      // The trained model, if the sweep keeps it (one of its best keep_models trials).
      ...(hasModel
        ? [h('h2', {}, 'Model'), h('div', { class: 'toolbar downloads', id: 'model' }, 'Download (kept for the sweep’s best trials): ',
          downloadLink('model.json', `${base}/model.json`, 'model.json'),
          downloadLink('model.safetensors', `${base}/model.safetensors`, 'model.safetensors'))]
        : []),
      // What the program logged besides numbers (kept for every trial).
      ...(media() ? [h('h2', {}, 'Media'), media()] : []),
      // The files a program trial handed back, while the sweep keeps them (media above).
      ...(ownFiles.length
        ? [h('h2', {}, 'Files'), h('table', { id: 'files' },
          h('thead', {}, h('tr', {}, ['file', 'size', 'SHA-256'].map((c) => h('th', {}, c)))),
          h('tbody', {}, ownFiles.map((f) => h('tr', {},
            h('td', {}, downloadLink(f.path, `${base}/files/${f.path.split('/').map(encodeURIComponent).join('/')}`, f.path.split('/').pop())),
            h('td', { class: 'num' }, bytesText(f.bytes)),
            h('td', { title: f.sha256 }, h('code', {}, f.sha256.slice(0, 16) + '…'))))))]
        : []),
      // A program trial's stdout and stderr, the last 16 KiB.
      ...(t.output ? [h('h2', {}, 'Program output (the end)'), h('pre', { class: 'config output', id: 'output' }, t.output)] : []));
  }

  let hasModel = false;
  // The curves' x axis: the step (null) or a logged counter such as `epoch`.
  let xKey = null;
  // The sweep's config, for what the curves' x counts.
  let sweepConfig = null;
  // The media section, made again only when the trial's files change.
  let mediaFor = null;
  let mediaEl = null;
  function media() {
    const files = trial.files || [];
    const key = files.map((f) => `${f.path}:${f.sha256}`).join('|');
    if (key !== mediaFor) {
      mediaFor = key;
      mediaEl = mediaSection(base, files);
    }
    return mediaEl;
  }
  async function refresh() {
    if (!sweepConfig) sweepConfig = (await getJson(`${apiSweep(id)}?top=1`)).sweep.config;
    trial = await getJson(base);
    // A kept model is looked for once the trial has ended (a program trial has none).
    if (TERMINAL.has(trial.state) && !hasModel) hasModel = await exists(`${base}/model.json`);
    draw();
  }
  try {
    await untilReachable(refresh);
  } catch (e) {
    main.replaceChildren(h('h1', {}, `Trial ${n}`), h('p', { class: 'error' }, e.message), h('p', {}, h('a', { href: sweepPath(id) }, 'the sweep')));
    connection.set('ended', 'no such trial');
    return;
  }
  const refreshSoon = throttle(() => refresh().catch(() => {}), 700);
  await stream(`${apiSweep(id)}/events`, {
    onOpen: refreshSoon,
    ended: () => SWEEP_ENDED.has(sweepState),
    onEvent: (ev) => {
      if (ev.sweep) sweepState = ev.sweep.state;
      if ((ev.changes || []).some((c) => c.trial && c.trial.trial === Number(n))) refreshSoon();
    },
  }).catch(() => {});
  refresh().catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Routing

function start() {
  if (token) $('signout').classList.remove('hidden');
  $('signout').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    token = '';
    location.reload();
  });
  const main = $('main');
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let page;
  if (parts.length === 0) page = pageIndex(main);
  else if (parts[0] === 'workers' && parts.length === 1) page = pageWorkers(main);
  else if (parts[0] === 'sweeps' && parts.length === 2) page = pageSweep(main, parts[1]);
  else if (parts[0] === 'sweeps' && parts[2] === 'trials' && parts.length === 4) page = pageTrial(main, parts[1], parts[3]);
  else {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/' }, 'all sweeps')));
    return;
  }
  page.catch((e) => {
    main.appendChild(h('p', { class: 'error' }, `The page stopped: ${e.message}`));
  });
}

document.addEventListener('DOMContentLoaded', start);
