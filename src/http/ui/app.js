// gslbd status page: plain JavaScript over the admin JSON endpoints (no build step, no outside
// assets; the page's CSP allows only this origin). Data is inserted as text nodes, never as HTML.
'use strict';

const KEY = 'gslbd-admin-token';
const SVG = 'http://www.w3.org/2000/svg';

// A token given as #token=... is kept for this tab (sessionStorage) and taken out of the address
// bar: fragments are never sent to the server, and this one should not stay in the history.
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function token() {
  return sessionStorage.getItem(KEY) || '';
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function say(text) {
  document.getElementById('message').textContent = text || '';
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (token()) opts.headers.Authorization = 'Bearer ' + token();
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const why = body && body.message ? body.code + ': ' + body.message : resp.statusText;
    throw new Error(resp.status + ' ' + why);
  }
  return body;
}

// Regions as dots: an equirectangular projection of the regions' bounding box (10 degrees of
// margin), a graticule every 10 degrees; colour = state, area = answers since start.
function drawMap(regions) {
  const map = document.getElementById('map');
  map.replaceChildren();
  if (!regions.length) return;
  const W = 800, H = 400;
  const lats = regions.map(r => r.lat), lons = regions.map(r => r.lon);
  let s = Math.max(Math.min(...lats) - 10, -90), n = Math.min(Math.max(...lats) + 10, 90);
  let w = Math.max(Math.min(...lons) - 10, -180), e = Math.min(Math.max(...lons) + 10, 180);
  // Keep degrees square: widen the narrower side.
  const scale = Math.min(W / (e - w), H / (n - s));
  const cx = (w + e) / 2, cy = (s + n) / 2;
  const x = lon => W / 2 + (lon - cx) * scale;
  const y = lat => H / 2 - (lat - cy) * scale;
  for (let g = Math.ceil((cx - W / 2 / scale) / 10) * 10; g <= cx + W / 2 / scale; g += 10) {
    map.append(svg('line', { class: 'grid', x1: x(g), y1: 0, x2: x(g), y2: H }));
  }
  for (let g = Math.ceil((cy - H / 2 / scale) / 10) * 10; g <= cy + H / 2 / scale; g += 10) {
    map.append(svg('line', { class: 'grid', x1: 0, y1: y(g), x2: W, y2: y(g) }));
  }
  const most = Math.max(1, ...regions.map(r => r.answers));
  for (const r of regions) {
    const radius = 6 + 18 * Math.sqrt(r.answers / most);
    const dot = svg('circle', {
      class: 'region ' + r.state, cx: x(r.lon).toFixed(1), cy: y(r.lat).toFixed(1),
      r: radius.toFixed(1), 'data-region': r.id, 'data-state': r.state,
      'data-answers': r.answers, 'fill-opacity': 0.8,
    }, svg('title', {}, `${r.name} (${r.id}): ${r.state}, ${r.up} of ${r.members} members up, ` +
      `${r.out} taken out, ${r.answers} answers`));
    map.append(dot, svg('text', { x: (x(r.lon) + radius + 3).toFixed(1), y: (y(r.lat) + 4).toFixed(1) },
      r.id));
  }
}

function memberState(m) {
  if (m.out) return 'drained';
  return m.state || 'unknown';
}

function button(label, onClick) {
  const b = el('button', { type: 'button', class: 'act' }, label);
  b.addEventListener('click', onClick);
  return b;
}

async function change(method, path, body) {
  try {
    const opts = { method };
    if (body) {
      opts.body = JSON.stringify(Object.assign({ who: 'ui', reason: 'status page' }, body));
      opts.headers = { 'Content-Type': 'application/json' };
    }
    await api(path, opts);
    say('');
  } catch (e) {
    say(e.message);
  }
  await load();
}

function query(params) {
  return Object.entries(params).map(([k, v]) => k + '=' + encodeURIComponent(v)).join('&');
}

function drawRules(rules) {
  const box = document.getElementById('rules');
  box.replaceChildren();
  for (const rule of rules) {
    const part = el('div', { class: 'rule', 'data-rule': rule.name, 'data-kind': rule.kind },
      el('h3', {}, rule.name, ' ', el('small', {}, rule.kind)));
    if (rule.kind === 'carrier') {
      const t = el('table', {}, el('tr', {}, el('th', {}, 'line'), el('th', {}, 'CNAME to')));
      for (const l of rule.lines) {
        t.append(el('tr', { 'data-line': l.line }, el('td', {}, l.line), el('td', {}, l.target)));
      }
      part.append(t);
    } else {
      const t = el('table', {}, el('tr', {}, ...['region', 'address', 'weight', 'state',
        'last error', 'override', ''].map(h => el('th', {}, h))));
      for (const pool of rule.pools) {
        const rowspan = pool.members.length;
        pool.members.forEach((m, i) => {
          const state = memberState(m);
          const tr = el('tr', { 'data-address': m.address, 'data-region': pool.region, 'data-state': state });
          if (i === 0) {
            const cell = el('td', { rowspan }, pool.region);
            if (token()) {
              const regionOut = pool.members.every(x => x.out && x.override && x.override.target === 'region');
              cell.append(el('br'), regionOut
                ? button('undrain region', () => change('DELETE', '/admin/overrides?' +
                  query({ region: pool.region, rule: rule.name })))
                : button('drain region', () => change('POST', '/admin/overrides',
                  { region: pool.region, rule: rule.name, action: 'drain' })));
            }
            tr.append(cell);
          }
          tr.append(el('td', {}, m.address), el('td', {}, m.weight),
            el('td', { class: 'state' }, state + (m.checked ? '' : ' (unchecked)')),
            el('td', {}, m.last_error || ''),
            el('td', {}, m.override ? m.override.note : ''));
          const act = el('td');
          if (token()) {
            act.append(m.out
              ? button('undrain', () => change('DELETE', '/admin/overrides?' +
                query({ address: m.address, region: pool.region, rule: rule.name })))
              : button('drain', () => change('POST', '/admin/overrides',
                { address: m.address, region: pool.region, rule: rule.name, action: 'drain' })));
          }
          tr.append(act);
          t.append(tr);
        });
      }
      part.append(t);
    }
    box.append(part);
  }
}

function drawAudit(events) {
  const list = document.getElementById('audit');
  list.replaceChildren();
  for (const ev of events.slice().reverse()) {
    list.append(el('li', { 'data-kind': ev.kind || '' }, JSON.stringify(ev)));
  }
}

async function load() {
  try {
    const h = await api('/healthz');
    const badge = document.getElementById('health');
    badge.dataset.status = h.status;
    badge.textContent = `${h.status}: ${h.zones} zones, ${h.records} records, generation ${h.reload.generation}`;
  } catch (e) {
    say(e.message);
  }
  if (!token()) {
    say('Give the admin token to see pools, traffic and changes.');
    return;
  }
  try {
    const [status, audit] = await Promise.all([api('/admin/status'), api('/admin/audit?limit=20')]);
    drawMap(status.regions);
    drawRules(status.rules);
    drawAudit(audit.events);
    document.body.dataset.loaded = '1';
  } catch (e) {
    say(e.message);
  }
}

async function explain(name, ip) {
  const out = document.getElementById('explain-result');
  out.textContent = '...';
  try {
    const r = await api('/admin/explain?' + query({ name, client: ip }));
    out.textContent = r.text;
    out.dataset.done = '1';
  } catch (e) {
    out.textContent = e.message;
    out.dataset.done = 'error';
  }
}

async function main() {
  takeTokenFromFragment();
  document.getElementById('token').value = token();
  document.getElementById('token-form').addEventListener('submit', ev => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById('token').value.trim());
    load();
  });
  document.getElementById('forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    document.getElementById('token').value = '';
    load();
  });
  document.getElementById('explain-form').addEventListener('submit', ev => {
    ev.preventDefault();
    explain(document.getElementById('explain-name').value.trim(),
      document.getElementById('explain-ip').value.trim());
  });
  await load();
  // /ui?explain=NAME&ip=IP fills the explain box and asks (links from alerts, and tests).
  const q = new URLSearchParams(location.search);
  if (q.get('explain') && q.get('ip')) {
    document.getElementById('explain-name').value = q.get('explain');
    document.getElementById('explain-ip').value = q.get('ip');
    await explain(q.get('explain'), q.get('ip'));
  }
}

main();
