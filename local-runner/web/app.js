// The sales page: search carts, watch one live, chart the sales report.
// Plain ES module, no dependencies: everything it loads comes from the
// runner that serves it. It speaks only the public HTTP API.

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = 'salestrack.token';
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

function notice(message) {
  const p = $('#notice');
  p.textContent = message ?? '';
  p.hidden = !message;
}

/** GET a JSON resource of the API; an error answer becomes an Error with its message. */
async function api(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.message ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? '';
  if (className) td.className = className;
  return td;
}

/** The instant a `YYYY-MM-DD` day starts (UTC), optionally some days later. */
function dayStart(day, plusDays = 0) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + plusDays)).toISOString();
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// ------------------------------------------------------------------ search

let nextCursor = null;
// Answers can overtake each other: only the newest search renders.
let searches = 0;

function searchQuery(form, cursor) {
  const q = new URLSearchParams();
  for (const name of ['user_id', 'q', 'currency']) {
    const value = form.elements[name].value.trim();
    // The API takes currency codes in uppercase only.
    if (value) q.set(name, name === 'currency' ? value.toUpperCase() : value);
  }
  if (form.elements.from.value) q.set('from', dayStart(form.elements.from.value));
  // The API's `to` is exclusive: the whole last day counts.
  if (form.elements.to.value) q.set('to', dayStart(form.elements.to.value, 1));
  if (cursor) q.set('cursor', cursor);
  return q;
}

async function search(cursor = null) {
  const form = $('#search-form');
  const body = $('#results tbody');
  const query = searchQuery(form, null);
  const mine = ++searches;
  try {
    const page = await api(`/carts?${searchQuery(form, cursor)}`);
    if (mine !== searches) return;
    if (!cursor) body.replaceChildren();
    $('#results').dataset.query = query.toString();
    for (const cart of page.carts) {
      const row = body.insertRow();
      row.dataset.cartId = cart.cart_id;
      cell(row, cart.created_at.slice(0, 16).replace('T', ' '));
      cell(row, cart.user_id);
      cell(row, cart.products);
      cell(row, String(cart.item_count), 'num');
      cell(row, `${cart.subtotal} ${cart.currency}`, 'num');
      cell(row, cart.status);
      row.addEventListener('click', () => openCart(cart.cart_id));
    }
    if (!body.rows.length) {
      const row = body.insertRow();
      cell(row, 'No cart matches.', 'empty').colSpan = 6;
    }
    $('#results').hidden = false;
    nextCursor = page.next_cursor ?? null;
    $('#more').hidden = !nextCursor;
    notice(null);
  } catch (e) {
    notice(`Search failed: ${e.message}`);
  }
}

// --------------------------------------------------------------- live cart

let following = null;

/** Server-Sent Events of a fetch body, as the SSE format parses them. */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = { event: 'message', data: '', id: null, retry: null };
        let any = false;
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event.event = value;
          else if (field === 'data') event.data += (event.data ? '\n' : '') + value;
          else if (field === 'id') event.id = value;
          else if (field === 'retry') event.retry = Number(value);
          else continue;
          any = true;
        }
        if (any) yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function liveState(state) {
  const badge = $('#live-state');
  badge.textContent = state;
  badge.className = `badge ${state}`;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Follows a cart's live stream until `signal` aborts. fetch rather than
 * EventSource: it can send the bearer token. When the server ends the
 * stream (shutdown, lifetime) or the connection breaks, it reconnects with
 * the last version it has as `Last-Event-ID`, so nothing is missed.
 */
async function followCart(cartId, signal) {
  let last = null;
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: 'text/event-stream' });
      if (last !== null) h['Last-Event-ID'] = String(last);
      const response = await fetch(`/carts/${cartId}/live`, { headers: h, signal, cache: 'no-store' });
      if (response.status === 503) {
        delay = 1000 * (Number(response.headers.get('retry-after')) || 5);
        throw new Error('busy');
      }
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        liveState('closed');
        notice(`Cannot follow the cart: ${body?.message ?? response.status}`);
        return;
      }
      liveState('live');
      for await (const event of serverSentEvents(response.body)) {
        if (event.retry) delay = event.retry;
        if (event.event === 'cart') {
          last = Number(event.id);
          renderCart(JSON.parse(event.data));
        } else if (event.event === 'end') {
          break;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    liveState('retrying');
    await sleep(delay, signal);
  }
}

function openCart(cartId) {
  following?.abort();
  following = new AbortController();
  for (const row of document.querySelectorAll('#results tbody tr')) {
    row.classList.toggle('selected', row.dataset.cartId === cartId);
  }
  const section = $('#cart');
  section.hidden = false;
  section.dataset.cartId = cartId;
  delete section.dataset.version;
  $('#cart-id').textContent = cartId;
  $('#cart-lines tbody').replaceChildren();
  liveState('connecting');
  followCart(cartId, following.signal);
}

function renderCart(cart) {
  const section = $('#cart');
  if (section.dataset.cartId !== cart.cart_id) return;
  section.dataset.version = String(cart.version);
  $('#cart-user').textContent = cart.user_id;
  $('#cart-status').textContent = cart.status_reason ? `${cart.status} (${cart.status_reason})` : cart.status;
  $('#cart-version').textContent = String(cart.version);
  $('#cart-updated').textContent = cart.updated_at.replace('T', ' ').replace('Z', ' UTC');
  const body = $('#cart-lines tbody');
  body.replaceChildren();
  for (const item of cart.items) {
    const row = body.insertRow();
    row.dataset.orderId = item.order_id;
    if (item.status !== 'active') row.className = 'cancelled';
    cell(row, item.product_name);
    cell(row, item.seller_info);
    cell(row, String(item.quantity), 'num');
    cell(row, item.subtotal, 'num');
    cell(row, item.tax_amount, 'num');
    cell(row, item.status);
  }
  $('#cart-subtotal').textContent = `${cart.subtotal} ${cart.currency}`;
  $('#cart-tax').textContent = `${cart.tax_amount} ${cart.currency}`;
}

// ------------------------------------------------------------------ report

const SVG = 'http://www.w3.org/2000/svg';

function svg(name, attributes = {}, text) {
  const element = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

/**
 * A horizontal bar chart. Each bar carries its label and the API's exact
 * figure (`data-label`, `data-value`), which it also prints.
 */
function barChart(id, caption, measure, bars) {
  const figure = document.createElement('figure');
  figure.dataset.chart = id;
  const title = document.createElement('figcaption');
  title.textContent = caption;
  figure.append(title);
  if (!bars.length) {
    const p = document.createElement('p');
    p.className = 'empty';
    p.textContent = 'No sales in this range.';
    figure.append(p);
    return figure;
  }
  const width = 560, labelWidth = 170, valueWidth = 90, row = 22;
  const max = Math.max(...bars.map((b) => Number(b.value)), 0) || 1;
  const height = bars.length * row + 4;
  // Drawn at 560 wide, scaled to the column.
  const chart = svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, width: '100%',
    preserveAspectRatio: 'xMinYMin meet', role: 'img', 'aria-label': caption,
  });
  bars.forEach((bar, i) => {
    const y = i * row + 2;
    const length = Math.max(1, (Number(bar.value) / max) * (width - labelWidth - valueWidth));
    const label = bar.label.length > 26 ? `${bar.label.slice(0, 25)}…` : bar.label;
    chart.append(svg('text', { x: 0, y: y + 14 }, label));
    const rect = svg('rect', {
      class: measure, x: labelWidth, y: y + 3, width: length.toFixed(1), height: row - 6,
      'data-label': bar.label, 'data-value': bar.value,
    });
    rect.append(svg('title', {}, `${bar.label}: ${bar.value}`));
    chart.append(rect);
    chart.append(svg('text', { x: labelWidth + length + 4, y: y + 14 }, bar.value));
  });
  figure.append(chart);
  return figure;
}

async function report() {
  const form = $('#report-form');
  const from = form.elements.from.value;
  const to = form.elements.to.value;
  const status = form.elements.status.value;
  const groupBy = form.elements.group_by.value;
  // Empty fields are left out: the API refuses an empty parameter.
  const common = new URLSearchParams(
    Object.entries({ from, to, status }).filter(([, value]) => value),
  );
  try {
    const [daily, grouped] = await Promise.all([
      api(`/reports/sales?interval=day&${common}`),
      api(`/reports/sales?group_by=${groupBy}&${common}`),
    ]);
    const currencies = [...new Set([...daily.buckets, ...grouped.buckets].map((b) => b.currency))].sort();
    const charts = $('#charts');
    charts.replaceChildren();
    if (!currencies.length) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = 'No sales in this range.';
      charts.append(p);
    }
    for (const currency of currencies) {
      const days = daily.buckets.filter((b) => b.currency === currency);
      const keys = grouped.buckets.filter((b) => b.currency === currency);
      const heading = document.createElement('h3');
      heading.textContent = currency;
      const grid = document.createElement('div');
      grid.className = 'charts';
      grid.append(
        barChart(`revenue-day-${currency}`, `Revenue per day (${currency})`, 'revenue',
          days.map((b) => ({ label: b.period.slice(0, 10), value: b.revenue }))),
        barChart(`units-day-${currency}`, `Units per day (${currency})`, 'units',
          days.map((b) => ({ label: b.period.slice(0, 10), value: String(b.units) }))),
        barChart(`revenue-${groupBy}-${currency}`, `Revenue per ${groupBy} (${currency})`, 'revenue',
          keys.map((b) => ({ label: b.key, value: b.revenue }))),
        barChart(`units-${groupBy}-${currency}`, `Units per ${groupBy} (${currency})`, 'units',
          keys.map((b) => ({ label: b.key, value: String(b.units) }))),
      );
      charts.append(heading, grid);
    }
    charts.dataset.loaded = `${from}/${to}/${status}/${groupBy}`;
    notice(null);
  } catch (e) {
    notice(`Report failed: ${e.message}`);
  }
}

// ---------------------------------------------------------------- operations

/** POST a JSON body to the API; an error answer becomes an Error with its message. */
async function apiPost(path, payload) {
  const response = await fetch(path, {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.message ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

// Readiness, each consumer's lag and waiting record, and the dead-letter
// topic (admin only), each letter with its redrive button.
let refreshing = 0;

async function operations() {
  const section = $('#operations');
  const mine = ++refreshing;
  section.dataset.busy = 'true';
  try {
    // Readiness answers 503 with the same body when not ready.
    const ready = await fetch('/health/ready', { headers: headers() }).then((r) => r.json());
    const status = $('#ops-status');
    status.textContent = ready.status;
    status.className = `badge ${ready.status}`;
    $('#ops-reasons').replaceChildren(...(ready.reasons ?? []).map((reason) => {
      const li = document.createElement('li');
      li.textContent = reason;
      return li;
    }));
    const body = $('#ops-consumers tbody');
    body.replaceChildren();
    for (const name of ['domain', 'projector', 'payment']) {
      const c = ready[`${name}_consumer`];
      if (!c) continue;
      const row = body.insertRow();
      row.dataset.consumer = name;
      cell(row, name);
      cell(row, c.running ? 'yes' : 'no');
      cell(row, String(c.partitions), 'num');
      cell(row, String(c.lag_records), 'num');
      cell(row, String(c.records), 'num');
      const w = c.waiting;
      cell(row, w ? `${w.topic}-${w.partition}@${w.offset}, ${w.attempts} deliveries, ${Math.round(w.waited_ms / 1000)} s: ${w.error}` : '');
    }
    const listing = await api('/admin/dead-letters');
    // Answers can overtake each other: only the newest refresh renders.
    if (mine !== refreshing) return;
    const letters = $('#ops-letters tbody');
    letters.replaceChildren();
    $('#ops-letter-count').textContent = `(${listing.dead_letters.length})`;
    for (const letter of listing.dead_letters) {
      const row = letters.insertRow();
      row.dataset.letter = letter.id;
      cell(row, letter.id + (letter.redriven_from ? ` (redriven from ${letter.redriven_from})` : ''));
      cell(row, letter.consumer);
      cell(row, `${letter.source_topic}-${letter.source_partition}@${letter.source_offset}`);
      cell(row, letter.cart);
      cell(row, `${letter.age_s} s`, 'num');
      cell(row, letter.error);
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'redrive';
      button.textContent = 'Redrive';
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          const answer = await apiPost('/admin/dead-letters/redrive', { ids: [letter.id] });
          const back = answer.redriven[0];
          row.dataset.redriven = `${back.topic}-${back.partition}@${back.offset}`;
          button.textContent = 'Redriven';
        } catch (e) {
          button.disabled = false;
          notice(`Redrive failed: ${e.message}`);
        }
      });
      row.insertCell().append(button);
    }
    section.dataset.loaded = String(Date.now());
  } catch (e) {
    notice(`Operations: ${e.message}`);
  } finally {
    if (mine === refreshing) delete section.dataset.busy;
  }
}

// -------------------------------------------------------------------- wiring

$('#token').value = token;
$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('#token').value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  search();
  operations();
});
$('#search-form').addEventListener('submit', (e) => { e.preventDefault(); search(); });
$('#more').addEventListener('click', () => search(nextCursor));
$('#report-form').addEventListener('submit', (e) => { e.preventDefault(); report(); });
$('#ops-refresh').addEventListener('click', () => operations());

const today = new Date();
$('#report-form').elements.to.value = isoDay(today);
$('#report-form').elements.from.value = isoDay(new Date(today.getTime() - 29 * 86400000));
search();
report();
operations();
