// The operator dashboard: a small single-page app over the coordinator's JSON API v1.
//
// Every value from the API reaches the page through textContent or an attribute, never as
// markup, and the page runs under a Content-Security-Policy without inline code. Views refresh
// every 2 s while the tab is visible (and "Live" is on), and re-render only what changed, so a
// selection or an open dialog is not disturbed.
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const STALE_RENDER_MS = 20000;
  const SAGA_STATES = ['running', 'confirming', 'committed', 'compensating', 'aborted', 'stuck'];
  const RANGES = [
    ['15m', 'Last 15 minutes', 15 * 60e3],
    ['1h', 'Last hour', 3600e3],
    ['24h', 'Last 24 hours', 24 * 3600e3],
    ['7d', 'Last 7 days', 7 * 24 * 3600e3],
    ['all', 'All time', null],
  ];
  const PAGE_SIZE = 100;
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const TOKEN_KEY = 'saga-dashboard.token';
  const BY_KEY = 'saga-dashboard.by';

  // ---------------------------------------------------------------- DOM construction

  /** An element with attributes and children; strings become text nodes (never markup). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** An SVG element, like h(). */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function replace(el, ...children) {
    el.replaceChildren();
    append(el, children);
  }

  const $ = (selector) => document.querySelector(selector);

  // ---------------------------------------------------------------- formatting

  function badge(state, extra) {
    return h('span', { class: `badge s-${state}${extra ? ' ' + extra : ''}`, 'data-state': state }, state.replace('_', ' '));
  }

  function kindTag(kind) {
    return h('span', { class: 'kind', title: kind === 'tcc' ? 'try / confirm / cancel' : 'action / compensate' }, String(kind).toUpperCase());
  }

  function shortId(id) {
    return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
  }

  function pad(n, width = 2) {
    return String(n).padStart(width, '0');
  }

  /** Local time, with the date unless it is today; milliseconds when asked. */
  function clock(iso, millis) {
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return iso;
    const today = new Date();
    const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}` +
      (millis ? `.${pad(at.getMilliseconds(), 3)}` : '');
    if (at.toDateString() === today.toDateString()) return time;
    return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${time}`;
  }

  function ago(iso) {
    const ms = Date.now() - new Date(iso).getTime();
    if (!Number.isFinite(ms)) return '';
    const sec = Math.max(0, Math.round(ms / 1000));
    if (sec < 60) return `${sec}s ago`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
    if (sec < 86400) return `${Math.floor(sec / 3600)}h ago`;
    return `${Math.floor(sec / 86400)}d ago`;
  }

  function when(iso) {
    return h('time', { datetime: iso, title: iso }, clock(iso), h('span', { class: 'muted' }, ` · ${ago(iso)}`));
  }

  function duration(ms) {
    if (ms === undefined || ms === null || !Number.isFinite(ms)) return '';
    if (ms < 1000) return `${Math.round(ms * 10) / 10} ms`;
    if (ms < 60e3) return `${(ms / 1000).toFixed(ms < 10e3 ? 2 : 1)} s`;
    if (ms < 3600e3) return `${Math.floor(ms / 60e3)}m ${Math.round((ms % 60e3) / 1000)}s`;
    return `${Math.floor(ms / 3600e3)}h ${Math.round((ms % 3600e3) / 60e3)}m`;
  }

  function percent(rate) {
    if (!rate) return '0%';
    const p = rate * 100;
    return `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
  }

  // ---------------------------------------------------------------- exact JSON

  /** A number kept as its source text (one JSON.parse would round, e.g. 2^53 + 1). */
  class ExactNumber {
    constructor(source) { this.source = source; }
    toJSON() { return this.source; }
  }

  /** JSON.parse that keeps numbers whose text does not survive a round trip (where supported). */
  function parseExact(text) {
    return JSON.parse(text, (key, value, context) => {
      if (typeof value === 'number' && context && typeof context.source === 'string' &&
          String(value) !== context.source) {
        return new ExactNumber(context.source);
      }
      return value;
    });
  }

  /** Pretty-printed JSON as coloured spans. */
  function jsonTree(value, indent = '') {
    const out = [];
    const inner = indent + '  ';
    if (value instanceof ExactNumber) out.push(h('span', { class: 'j-num' }, value.source));
    else if (value === null || typeof value === 'boolean') out.push(h('span', { class: 'j-lit' }, String(value)));
    else if (typeof value === 'number') out.push(h('span', { class: 'j-num' }, String(value)));
    else if (typeof value === 'string') out.push(h('span', { class: 'j-str' }, JSON.stringify(value)));
    else if (Array.isArray(value)) {
      if (value.length === 0) return ['[]'];
      out.push('[\n');
      value.forEach((item, i) => {
        out.push(inner, ...jsonTree(item, inner), i < value.length - 1 ? ',\n' : '\n');
      });
      out.push(indent, ']');
    } else {
      const entries = Object.entries(value);
      if (entries.length === 0) return ['{}'];
      out.push('{\n');
      entries.forEach(([key, item], i) => {
        out.push(inner, h('span', { class: 'j-key' }, JSON.stringify(key)), ': ',
          ...jsonTree(item, inner), i < entries.length - 1 ? ',\n' : '\n');
      });
      out.push(indent, '}');
    }
    return out;
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let tokenPrompt = null;

  /**
   * Calls the API; on 401 asks for a token and tries again. Errors carry the API's message.
   * `exact`: numbers that JSON.parse would change keep their text (for showing a saga's input).
   */
  async function api(method, path, body, { exact = false } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: 'application/json' };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = `Bearer ${token}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: 'no-store',
        });
      } catch (e) {
        throw new ApiError(0, 'unreachable', `Cannot reach the coordinator (${e.message}).`);
      }
      const text = await response.text();
      if (response.ok) return text ? (exact ? parseExact(text) : JSON.parse(text)) : null;
      let code = `http_${response.status}`;
      let message = `${response.status} ${response.statusText}`;
      try {
        const parsed = JSON.parse(text);
        if (parsed && parsed.error) {
          code = parsed.error.code || code;
          message = parsed.error.message || message;
        }
      } catch (_) { /* not JSON: keep the status line */ }
      if (response.status === 401 && attempt < 3) {
        await askForToken(token ? 'That token was refused: ' + message : null);
        continue;
      }
      throw new ApiError(response.status, code, message);
    }
  }

  /** Shows the token dialog (once, however many calls wait) and resolves when a token is set. */
  function askForToken(problem) {
    if (tokenPrompt) return tokenPrompt;
    const dialog = $('#token-dialog');
    const error = $('#token-error');
    error.hidden = !problem;
    error.textContent = problem || '';
    $('#token-input').value = '';
    tokenPrompt = new Promise((resolve) => {
      $('#token-form').onsubmit = (event) => {
        event.preventDefault();
        const token = $('#token-input').value.trim();
        if (!token) {
          error.hidden = false;
          error.textContent = 'Enter a token.';
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, token);
        tokenPrompt = null;
        dialog.close();
        resolve();
      };
    });
    // Nothing shows without a token: Escape does not dismiss the prompt (and if the browser
    // closes it anyway, it comes back).
    dialog.oncancel = (event) => event.preventDefault();
    dialog.onclose = () => { if (tokenPrompt) dialog.showModal(); };
    if (!dialog.open) dialog.showModal();
    return tokenPrompt;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== '') search.set(key, value);
    }
    const text = search.toString();
    return text ? `?${text}` : '';
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- operator actions

  /**
   * Asks for a reason (and, to resolve, how the step was settled) in an in-page dialog, then
   * POSTs the action. Resolves with the saga the API answered, or null when cancelled.
   */
  function operate({ title, explain, path, resolve, reasonRequired, confirmLabel, danger }) {
    const dialog = $('#operate-dialog');
    const form = $('#operate-form');
    const reason = $('#operate-reason');
    const by = $('#operate-by');
    const error = $('#operate-error');
    const confirm = $('#operate-confirm');
    $('#operate-title').textContent = title;
    $('#operate-explain').textContent = explain || '';
    $('#operate-as-field').hidden = !resolve;
    if (resolve) $('#operate-as').value = resolve;
    $('#operate-reason-need').textContent = reasonRequired ? '(required)' : '(recorded in the events)';
    reason.value = '';
    by.value = localStorage.getItem(BY_KEY) || '';
    error.hidden = true;
    confirm.textContent = confirmLabel || 'Confirm';
    confirm.className = danger ? 'primary danger-primary' : 'primary';
    confirm.disabled = false;
    return new Promise((done) => {
      const finish = (result) => {
        form.onsubmit = null;
        $('#operate-cancel').onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        done(result);
      };
      $('#operate-cancel').onclick = () => finish(null);
      dialog.onclose = () => finish(null);
      form.onsubmit = async (event) => {
        event.preventDefault();
        const text = reason.value.trim();
        if (reasonRequired && !text) {
          error.hidden = false;
          error.textContent = 'A reason is required: say what was done by hand.';
          reason.focus();
          return;
        }
        const name = by.value.trim();
        if (name) localStorage.setItem(BY_KEY, name); else localStorage.removeItem(BY_KEY);
        const body = {};
        if (text) body.reason = text;
        if (name) body.by = name;
        if (resolve) body.as = $('#operate-as').value;
        confirm.disabled = true;
        try {
          const saga = await api('POST', path, body);
          finish(saga);
        } catch (e) {
          confirm.disabled = false;
          error.hidden = false;
          error.textContent = e.message;
        }
      };
      dialog.showModal();
      reason.focus();
    });
  }

  // ---------------------------------------------------------------- views

  /**
   * A view renders one route into `root`: `mount` builds what stays (toolbars), `load` fetches,
   * `render(data)` draws what was fetched. The router calls `load`/`render` on every refresh.
   */

  function sagaRow(saga) {
    return h('tr', { 'data-saga-id': saga.id, 'data-state': saga.state },
      h('td', { class: 'nowrap' }, h('a', { href: `/ui/sagas/${enc(saga.id)}`, 'data-nav': true, class: 'mono', title: saga.id }, shortId(saga.id))),
      h('td', { class: 'nowrap' }, saga.workflow, h('span', { class: 'muted' }, ` v${saga.workflow_version}`)),
      h('td', { class: 'wrap' }, saga.business_key ? h('span', { class: 'mono' }, saga.business_key) : h('span', { class: 'muted' }, '—')),
      h('td', {}, badge(saga.state)),
      h('td', {}, stepStrip(saga.steps)),
      h('td', { class: 'nowrap' }, when(saga.created_at)),
      h('td', { class: 'nowrap num' }, saga.state === 'committed' || saga.state === 'aborted' ? duration(new Date(saga.updated_at) - new Date(saga.created_at)) : ''),
      h('td', { class: 'wrap muted' }, saga.error ? truncate(saga.error, 90) : ''));
  }

  function truncate(text, max) {
    return text.length > max ? h('span', { title: text }, text.slice(0, max - 1) + '…') : text;
  }

  function stepStatus(step) {
    return step.undo && step.status === 'rejected' ? step.undo : step.status;
  }

  function stepStrip(steps) {
    // A rejected step stays red (it caused the rollback) unless its undo is what is stuck.
    return h('span', { class: 'strip' }, steps.map((step) =>
      h('span', { class: `s-${step.undo === 'stuck' ? 'stuck' : step.status}`, title: `${step.name}: ${step.status}${step.undo ? ', undo ' + step.undo : ''}` })));
  }

  function sagaTable(sagas, emptyText) {
    if (sagas.length === 0) return h('div', { class: 'empty' }, emptyText);
    return h('div', { class: 'table-wrap' }, h('table', { class: 'sagas' },
      h('thead', {}, h('tr', {},
        ['Saga', 'Workflow', 'Business key', 'State', 'Steps', 'Created', 'Took', 'Error'].map((t) => h('th', {}, t)))),
      h('tbody', {}, sagas.map(sagaRow))));
  }

  /** Sagas, newest first, with filters that live in the URL (?state=&workflow=&key=&range=). */
  function sagasView(params) {
    let cursor = params.get('cursor') || '';
    const filters = {
      state: params.get('state') || '',
      workflow: params.get('workflow') || '',
      key: params.get('key') || '',
      range: params.get('range') || (params.get('key') ? 'all' : '1h'),
    };
    const search = h('input', { class: 'search', id: 'search', type: 'search', placeholder: 'Saga id or business key (order number)…', value: filters.key, 'aria-label': 'Search' });
    const stateSelect = h('select', { id: 'filter-state', 'aria-label': 'State' },
      h('option', { value: '' }, 'All states'), SAGA_STATES.map((st) => h('option', { value: st }, st)));
    const workflowSelect = h('select', { id: 'filter-workflow', 'aria-label': 'Workflow' }, h('option', { value: '' }, 'All workflows'));
    const rangeSelect = h('select', { id: 'filter-range', 'aria-label': 'Created' },
      RANGES.map(([value, label]) => h('option', { value }, label)));
    stateSelect.value = filters.state;
    rangeSelect.value = filters.range;
    const chips = h('div', { class: 'chips' });
    const body = h('div', {});
    const summary = h('span', { class: 'muted' });

    const apply = (changes) => {
      Object.assign(filters, changes);
      cursor = '';
      const url = `/ui${query({ state: filters.state, workflow: filters.workflow, key: filters.key, range: filters.range === '1h' ? '' : filters.range })}`;
      history.replaceState(null, '', url);
      router.refresh(true);
    };
    stateSelect.addEventListener('change', () => apply({ state: stateSelect.value }));
    workflowSelect.addEventListener('change', () => apply({ workflow: workflowSelect.value }));
    rangeSelect.addEventListener('change', () => apply({ range: rangeSelect.value }));
    const form = h('form', { class: 'toolbar', role: 'search' }, search,
      h('button', { type: 'submit' }, 'Search'), stateSelect, workflowSelect, rangeSelect);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const text = search.value.trim();
      if (UUID.test(text)) {
        // A saga id opens the saga; an unknown one may still be someone's business key.
        try {
          const saga = await api('GET', `/v1/sagas/${enc(text)}`);
          router.go(`/ui/sagas/${enc(saga.id)}`);
          return;
        } catch (e) {
          if (e.status !== 404) { showBanner(e.message); return; }
        }
      }
      apply({ key: text, range: text ? 'all' : filters.range });
    });

    let workflowsLoaded = false;
    return {
      section: 'sagas',
      title: 'Sagas',
      mount(root) {
        replace(root,
          h('div', { class: 'page-head' }, h('h1', {}, 'Sagas'), summary),
          form, chips,
          h('section', { class: 'panel' }, body));
      },
      async load() {
        const range = RANGES.find(([value]) => value === filters.range);
        const since = range && range[2] ? new Date(Date.now() - range[2]).toISOString() : '';
        const [list, workflows] = await Promise.all([
          api('GET', `/v1/sagas${query({
            state: filters.state, workflow: filters.workflow, business_key: filters.key,
            created_after: filters.key ? '' : since, limit: PAGE_SIZE, cursor,
          })}`),
          workflowsLoaded ? null : api('GET', '/v1/workflows'),
        ]);
        return { list, workflows };
      },
      render({ list, workflows }) {
        if (workflows) {
          workflowsLoaded = true;
          append(workflowSelect, workflows.workflows.map((w) => h('option', { value: w.name }, w.name)));
          workflowSelect.value = filters.workflow;
        }
        rangeSelect.disabled = Boolean(filters.key);
        replace(chips, filters.key ? h('span', { class: 'chip', id: 'key-chip' }, 'Business key ', h('strong', { class: 'mono' }, filters.key),
          h('button', { type: 'button', title: 'Clear', 'aria-label': 'Clear the search', onclick: () => { search.value = ''; apply({ key: '', range: '1h' }); } }, '×')) : null);
        // The API lists in id order, oldest first; ids are time-ordered, so newest first is a reverse.
        const sagas = list.sagas.slice().reverse();
        const counts = {};
        for (const saga of sagas) counts[saga.state] = (counts[saga.state] || 0) + 1;
        replace(summary, sagas.length === 0 ? '' :
          SAGA_STATES.filter((st) => counts[st]).map((st) => `${counts[st]} ${st}`).join(' · ') +
          (list.next_cursor ? ' (first page)' : ''));
        const empty = filters.key ? `No saga carries business key “${filters.key}”.` :
          'No sagas match these filters in this time range.';
        replace(body,
          list.next_cursor ? h('div', { class: 'notice' }, `More than ${PAGE_SIZE} sagas match: this page holds the oldest of them. Narrow the time range or the filters, or page on.`) : null,
          sagaTable(sagas, empty),
          (list.next_cursor || cursor) ? h('div', { class: 'pager' },
            cursor ? h('button', { type: 'button', onclick: () => { cursor = ''; router.refresh(true); } }, 'First page') : null,
            list.next_cursor ? h('button', { type: 'button', id: 'next-page', onclick: () => { cursor = list.next_cursor; router.refresh(true); } }, 'Next page') : null) : null);
      },
    };
  }

  /** The stuck queue: sagas an operator must look at, with retry one / retry all. */
  function stuckView() {
    const body = h('div', {});
    const head = h('div', { class: 'page-head' });
    return {
      section: 'stuck',
      title: 'Stuck sagas',
      mount(root) {
        replace(root, head, h('section', { class: 'panel' }, body));
      },
      async load() {
        return api('GET', `/v1/sagas${query({ state: 'stuck', limit: 1000 })}`);
      },
      render(list) {
        const sagas = list.sagas;
        replace(head, h('h1', {}, 'Stuck sagas'),
          h('span', { class: 'muted' }, sagas.length ? `${sagas.length}${list.next_cursor ? '+' : ''} waiting for an operator` : ''),
          h('span', { class: 'spacer' }),
          sagas.length ? h('button', {
            type: 'button', id: 'retry-all',
            onclick: async () => {
              const answer = await operate({
                title: 'Retry every stuck saga',
                explain: 'Each stuck saga resumes its stuck call with a fresh attempt budget. Fix the participant first.',
                path: '/v1/sagas/bulk/retry?state=stuck',
                confirmLabel: 'Retry all',
              });
              if (answer) {
                showBanner(`${answer.resumed} resumed` + (answer.skipped.length ? `, ${answer.skipped.length} skipped` : ''), 'info');
                router.refresh(true);
              }
            },
          }, 'Retry all…') : null);
        if (sagas.length === 0) {
          replace(body, h('div', { class: 'empty' }, 'Nothing is stuck. A saga lands here when a confirm, cancel or compensate runs out of attempts.'));
          return;
        }
        replace(body, h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Saga', 'Workflow', 'Business key', 'Stuck step', 'Why', 'Since', ''].map((t) => h('th', {}, t)))),
          h('tbody', {}, sagas.map((saga) => {
            const stuck = saga.steps.filter((step) => stepStatus(step) === 'stuck');
            return h('tr', { 'data-saga-id': saga.id },
              h('td', { class: 'nowrap' }, h('a', { href: `/ui/sagas/${enc(saga.id)}`, 'data-nav': true, class: 'mono', title: saga.id }, shortId(saga.id))),
              h('td', { class: 'nowrap' }, saga.workflow, h('span', { class: 'muted' }, ` v${saga.workflow_version}`)),
              h('td', { class: 'wrap mono' }, saga.business_key || ''),
              h('td', {}, stuck.map((step) => h('div', {}, h('strong', {}, step.name), ' ', h('span', { class: 'muted' }, `${step.phase || ''} · ${step.participant} · ${step.attempts} attempts`)))),
              h('td', { class: 'wrap' }, truncate(stuck.map((step) => step.last_error).filter(Boolean).join('; ') || saga.error || '', 140)),
              h('td', { class: 'nowrap' }, when(saga.updated_at)),
              h('td', { class: 'nowrap' }, h('div', { class: 'actions' },
                h('a', { href: `/ui/sagas/${enc(saga.id)}`, 'data-nav': true }, 'Open'),
                h('button', {
                  type: 'button', class: 'small', 'data-action': 'retry',
                  onclick: async () => {
                    if (await operate({ title: 'Retry this saga', explain: `Resumes ${saga.id} with a fresh attempt budget.`, path: `/v1/sagas/${enc(saga.id)}/retry`, confirmLabel: 'Retry' })) router.refresh(true);
                  },
                }, 'Retry…'))));
          })))));
      },
    };
  }

  /** One saga: facts, operator actions, steps, the call timeline, the input, the events. */
  function sagaView(id) {
    const root = h('div', {});
    return {
      section: 'sagas',
      title: `Saga ${shortId(id)}`,
      mount(container) {
        replace(container, h('div', { class: 'crumbs' }, h('a', { href: '/ui', 'data-nav': true }, 'Sagas'), ' / ', h('span', { class: 'mono' }, id)), root);
      },
      async load() {
        const [saga, events] = await Promise.all([
          api('GET', `/v1/sagas/${enc(id)}`, undefined, { exact: true }),
          api('GET', `/v1/sagas/${enc(id)}/events`),
        ]);
        return { saga, events: events.events };
      },
      missing(e) {
        replace(root, h('section', { class: 'panel' }, h('div', { class: 'empty', id: 'saga-missing' }, e.message, '. ', h('a', { href: '/ui', 'data-nav': true }, 'Back to the sagas'))));
      },
      render({ saga, events }) {
        replace(root,
          sagaHeader(saga),
          stepsPanel(saga),
          timelinePanel(saga, events),
          h('div', { class: 'two-col' },
            eventsPanel(events),
            h('section', { class: 'panel', id: 'input' },
              h('div', { class: 'panel-head' }, h('h2', {}, 'Input'), h('span', { class: 'muted' }, 'as submitted')),
              h('pre', { class: 'json' }, jsonTree(saga.input)))));
      },
    };
  }

  function sagaHeader(saga) {
    const terminal = saga.state === 'committed' || saga.state === 'aborted';
    const waiting = saga.steps.some((step) => step.status === 'retrying' || step.undo === 'retrying');
    const act = (action, label, explain, extra = {}) => h('button', {
      type: 'button', 'data-action': action, class: extra.danger ? 'danger' : '',
      onclick: async () => {
        const answer = await operate({
          title: `${label} saga`, explain, path: `/v1/sagas/${enc(saga.id)}/${action}`,
          confirmLabel: label, danger: extra.danger,
        });
        if (answer) router.refresh(true);
      },
    }, `${label}…`);
    return h('section', { class: 'panel' }, h('div', { class: 'panel-body' },
      h('div', { class: 'saga-head' },
        h('span', { class: 'saga-id', title: 'Saga id' }, saga.id),
        h('span', { id: 'saga-state', class: `badge large s-${saga.state}`, 'data-state': saga.state }, saga.state),
        h('span', { class: 'spacer' }),
        terminal ? null : h('div', { class: 'actions' },
          saga.state === 'running' ? act('abort', 'Abort', 'The saga rolls back: every step that may have run is cancelled or compensated.', { danger: true }) : null,
          saga.state === 'stuck' ? act('retry', 'Retry', 'The stuck call is made again with a fresh attempt budget. Fix the participant first.') : null,
          waiting ? act('retry-now', 'Retry now', 'The call waiting on its backoff is made at once.') : null)),
      h('dl', { class: 'facts' },
        fact('Workflow', h('span', {}, h('a', { href: `/ui/workflows#wf-${enc(saga.workflow)}`, 'data-nav': true }, saga.workflow), h('span', { class: 'muted' }, ` v${saga.workflow_version}`))),
        fact('Business key', saga.business_key ? h('span', { class: 'mono' }, saga.business_key) : h('span', { class: 'muted' }, '—')),
        fact('Created', when(saga.created_at)),
        fact(terminal ? 'Finished' : 'Updated', when(saga.updated_at)),
        fact(terminal ? 'Took' : 'Age', duration((terminal ? new Date(saga.updated_at) : new Date()) - new Date(saga.created_at))),
        saga.callback_url ? fact('Callback', h('span', { class: 'mono' }, saga.callback_url)) : null),
      saga.error ? h('div', { class: 'saga-error', id: 'saga-error' }, h('strong', {}, saga.state === 'stuck' ? 'Stuck:' : 'Rolled back:'), saga.error) : null));
  }

  function fact(label, value) {
    return h('div', {}, h('dt', {}, label), h('dd', {}, value));
  }

  /** How a person would most likely settle a step, from the phase it is stuck or waiting in. */
  function likelyResolution(step) {
    if (step.phase === 'confirm') return 'confirmed';
    if (step.phase === 'try' || step.phase === 'action') return 'succeeded';
    return 'compensated';
  }

  function stepsPanel(saga) {
    return h('section', { class: 'panel', id: 'steps' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Steps')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'steps' },
        h('thead', {}, h('tr', {}, ['#', 'Step', 'Participant', 'Kind', 'Status', 'Phase', 'Attempts', 'Last error', ''].map((t, i) => h('th', { class: i === 6 ? 'num' : '' }, t)))),
        h('tbody', {}, saga.steps.map((step, i) => {
          const settling = ['stuck', 'retrying'].includes(step.status) || ['stuck', 'retrying'].includes(step.undo);
          return h('tr', { 'data-step': step.name, 'data-status': step.status },
            h('td', { class: 'muted' }, i + 1),
            h('td', {}, h('strong', {}, step.name)),
            h('td', {}, step.participant),
            h('td', {}, kindTag(step.kind)),
            h('td', { class: 'nowrap' }, badge(step.status), step.undo ? [' ', h('span', { class: 'muted' }, 'undo '), badge(step.undo)] : null,
              step.resolved ? h('div', { class: 'muted' }, `resolved by hand as ${step.resolved}`) : null),
            h('td', {}, step.phase || ''),
            h('td', { class: 'num' }, step.attempts),
            h('td', { class: 'wrap' }, step.last_error ? truncate(step.last_error, 160) : h('span', { class: 'muted' }, '—')),
            h('td', { class: 'nowrap' }, settling ? h('button', {
              type: 'button', class: 'small', 'data-action': 'resolve', 'data-step': step.name,
              onclick: async () => {
                const answer = await operate({
                  title: `Resolve step ${step.name}`,
                  explain: `Record that ${step.name} (${step.participant}) was settled by hand; the coordinator will not call it again and the saga goes on from there.`,
                  path: `/v1/sagas/${enc(saga.id)}/steps/${enc(step.name)}/resolve`,
                  resolve: likelyResolution(step),
                  reasonRequired: true,
                  confirmLabel: 'Resolve',
                });
                if (answer) router.refresh(true);
              },
            }, 'Resolve…') : null));
        })))));
  }

  /** A row per call (its start and end joined), and a marker row per decision or operator act. */
  function timelineRows(events) {
    const rows = [];
    const open = new Map();
    for (const event of events) {
      const key = `${event.step}/${event.phase}/${event.attempt}`;
      if (event.type === 'call_started') {
        const row = { call: true, step: event.step, phase: event.phase, attempt: event.attempt, start: event.at };
        open.set(key, row);
        rows.push(row);
      } else if (event.type === 'call_ended') {
        let row = open.get(key);
        if (!row) {
          row = { call: true, step: event.step, phase: event.phase, attempt: event.attempt, start: null };
          rows.push(row);
        }
        open.delete(key);
        Object.assign(row, { end: event.at, outcome: event.outcome, http_status: event.http_status, latency_ms: event.latency_ms, error: event.error });
      } else if (event.type !== 'created') {
        rows.push({ call: false, event });
      }
    }
    return rows;
  }

  function markerText(event) {
    switch (event.type) {
      case 'decided':
        return event.outcome === 'abort' ? ['Decided to roll back', event.error ? `: ${event.error}` : '', event.by ? ` (by ${event.by}${event.reason ? ': ' + event.reason : ''})` : '']
          : ['Decided to commit'];
      case 'stuck': return [`Stuck at ${event.step || '?'}`, event.error ? `: ${event.error}` : ''];
      case 'operated': return [`Operator ${event.outcome || 'action'} by ${event.by || 'anonymous'}`, event.reason ? `: “${event.reason}”` : ''];
      case 'step_resolved': return [`Step ${event.step} resolved by hand as ${event.resolution}`];
      case 'resumed': return ['Resumed'];
      case 'retry_requested': return ['Retry requested'];
      case 'retry_now': return ['Waiting call made now'];
      case 'finished': return [`Finished: ${event.outcome}`];
      case 'callback_started': return [`Callback attempt ${event.attempt}`];
      case 'callback_ended': return [`Callback ${event.outcome}`, event.http_status ? ` (HTTP ${event.http_status})` : '', event.error ? `: ${event.error}` : ''];
      case 'callback_abandoned': return ['Callback abandoned', event.error ? `: ${event.error}` : ''];
      default: return [event.type.replace(/_/g, ' ')];
    }
  }

  function timelinePanel(saga, events) {
    const rows = timelineRows(events);
    const origin = new Date(saga.created_at).getTime();
    const times = events.map((e) => new Date(e.at).getTime()).filter(Number.isFinite);
    const span = Math.max(1, Math.max(origin, ...times) - origin);
    const calls = rows.filter((row) => row.call).length;
    const waterfall = (row) => {
      const start = row.start ? new Date(row.start).getTime() - origin : (row.end ? new Date(row.end).getTime() - origin - (row.latency_ms || 0) : 0);
      const length = row.latency_ms !== undefined ? row.latency_ms : (row.end ? 0 : Date.now() - origin - start);
      const x = Math.max(0, Math.min(100, (start / span) * 100));
      const w = Math.max(0.6, Math.min(100 - x, (length / span) * 100));
      return s('svg', { class: 'waterfall', viewBox: '0 0 100 14', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
        s('rect', { class: 'track', x: 0, y: 5, width: 100, height: 4 }),
        s('rect', { class: `bar o-${row.outcome || 'in_flight'}`, x, y: 2, width: w, height: 10, rx: 0.5 }));
    };
    return h('section', { class: 'panel', id: 'timeline' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Timeline'), h('span', { class: 'muted' }, `${calls} call${calls === 1 ? '' : 's'} over ${duration(span)}`)),
      rows.length === 0 ? h('div', { class: 'empty' }, 'No calls yet.') :
        h('div', { class: 'table-wrap' }, h('table', { class: 'timeline' },
          h('thead', {}, h('tr', {}, ['At', 'Step', 'Phase', 'Attempt', 'Outcome', 'HTTP', 'Latency', '', 'Error'].map((t, i) => h('th', { class: [3, 5, 6].includes(i) ? 'num' : '' }, t)))),
          h('tbody', {}, rows.map((row) => {
            if (!row.call) {
              const event = row.event;
              return h('tr', { class: 'marker', 'data-event': event.type },
                h('td', { class: 'nowrap mono' }, `+${duration(new Date(event.at).getTime() - origin)}`),
                h('td', { colspan: 8 }, h('strong', {}, markerText(event)[0]), markerText(event).slice(1).join('')));
            }
            const at = row.start || row.end;
            return h('tr', { class: 'call', 'data-step': row.step, 'data-phase': row.phase, 'data-outcome': row.outcome || 'in_flight' },
              h('td', { class: 'nowrap mono', title: at }, at ? `+${duration(new Date(at).getTime() - origin)}` : ''),
              h('td', {}, row.step),
              h('td', {}, row.phase),
              h('td', { class: 'num' }, row.attempt),
              h('td', {}, badge(row.outcome || 'in_flight')),
              h('td', { class: 'num' }, row.http_status || (row.outcome ? '—' : '')),
              h('td', { class: 'num nowrap' }, row.latency_ms !== undefined ? duration(row.latency_ms) : ''),
              h('td', { class: 'bar-cell' }, waterfall(row)),
              h('td', { class: 'wrap error-cell' }, row.error ? truncate(row.error, 140) : ''));
          })))));
  }

  function eventsPanel(events) {
    return h('section', { class: 'panel', id: 'events' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Events'), h('span', { class: 'muted' }, `${events.length} recorded`)),
      h('div', { class: 'table-wrap' }, h('table', { class: 'events' },
        h('thead', {}, h('tr', {}, ['#', 'At', 'Type', 'Detail'].map((t) => h('th', {}, t)))),
        h('tbody', {}, events.map((event) => {
          const detail = [];
          if (event.step) detail.push(`${event.step}${event.phase ? '.' + event.phase : ''}${event.attempt ? ' #' + event.attempt : ''}`);
          else if (event.attempt) detail.push(`attempt ${event.attempt}`);
          if (event.outcome) detail.push(event.outcome);
          if (event.http_status) detail.push(`HTTP ${event.http_status}`);
          if (event.latency_ms !== undefined) detail.push(duration(event.latency_ms));
          if (event.resolution) detail.push(`as ${event.resolution}`);
          if (event.by) detail.push(`by ${event.by}`);
          if (event.reason) detail.push(`reason: ${event.reason}`);
          if (event.error) detail.push(event.error);
          return h('tr', { 'data-event': event.type },
            h('td', { class: 'muted num' }, event.seq),
            h('td', { class: 'nowrap mono', title: event.at }, clock(event.at, true)),
            h('td', { class: 'nowrap' }, event.type),
            h('td', { class: 'wrap' }, detail.join(' · ')));
        })))));
  }

  /** Participants with their live dispatcher state on this coordinator. */
  function participantsView() {
    const body = h('div', {});
    return {
      section: 'participants',
      title: 'Participants',
      mount(root) {
        replace(root, h('div', { class: 'page-head' }, h('h1', {}, 'Participants'),
          h('span', { class: 'muted' }, 'circuit, bulkhead and the last 256 calls from this coordinator')),
        h('section', { class: 'panel' }, body));
      },
      load: () => api('GET', '/v1/participants'),
      render(list) {
        if (list.participants.length === 0) {
          replace(body, h('div', { class: 'empty' }, 'No participant has registered yet.'));
          return;
        }
        replace(body, h('div', { class: 'table-wrap' }, h('table', { class: 'participants' },
          h('thead', {}, h('tr', {}, ['Participant', 'Circuit', 'In flight', 'Queued', 'Calls', 'Error rate', 'p50', 'p99', 'Timeout', 'Actions'].map((t, i) => h('th', { class: i >= 2 && i <= 8 ? 'num' : '' }, t)))),
          h('tbody', {}, list.participants.map((p) => {
            const policy = p.policy || {};
            const recent = p.recent || {};
            const rate = recent.error_rate || 0;
            return h('tr', { 'data-participant': p.name, 'data-circuit': p.circuit },
              h('td', {}, h('strong', {}, p.name), h('div', { class: 'muted mono' }, p.base_url)),
              h('td', {}, badge(p.circuit)),
              h('td', { class: 'num' }, p.in_flight, policy.max_concurrency ? h('span', { class: 'muted' }, ` / ${policy.max_concurrency}`) : null),
              h('td', { class: 'num' }, p.queued, policy.queue_capacity ? h('span', { class: 'muted' }, ` / ${policy.queue_capacity}`) : null),
              h('td', { class: 'num' }, recent.calls || 0, recent.failed ? h('span', { class: 'muted' }, ` (${recent.failed} failed)`) : null),
              h('td', { class: 'num nowrap' }, percent(rate),
                h('span', { class: `meter${rate < 0.05 ? ' low' : ''}`, title: `${recent.failed || 0} of ${recent.calls || 0} calls failed` },
                  s('svg', { viewBox: '0 0 100 6', preserveAspectRatio: 'none' }, s('rect', { x: 0, y: 0, height: 6, width: Math.min(100, rate * 100) })))),
              h('td', { class: 'num nowrap' }, recent.latency_p50_ms !== undefined ? duration(recent.latency_p50_ms) : '—'),
              h('td', { class: 'num nowrap' }, recent.latency_p99_ms !== undefined ? duration(recent.latency_p99_ms) : '—'),
              h('td', { class: 'num nowrap' }, policy.timeout_ms ? duration(policy.timeout_ms) : h('span', { class: 'muted', title: 'No policy registered: the coordinator\'s defaults apply' }, 'default')),
              h('td', {}, h('div', { class: 'actions-list' }, Object.entries(p.actions || {}).map(([name, endpoints]) =>
                h('span', { class: 'chip', title: Object.entries(endpoints).map(([phase, path]) => `${phase} ${path}`).join('\n') },
                  name, kindTag('try' in endpoints ? 'tcc' : 'saga'))))));
          })))));
      },
    };
  }

  /** Workflows at their newest version, each with its DAG drawn. */
  function workflowsView() {
    const body = h('div', {});
    let scrolled = false;
    return {
      section: 'workflows',
      title: 'Workflows',
      mount(root) {
        replace(root, h('div', { class: 'page-head' }, h('h1', {}, 'Workflows'),
          h('span', { class: 'muted' }, 'newest version of each; a running saga keeps the version it started with')), body);
      },
      async load() {
        const [workflows, participants] = await Promise.all([api('GET', '/v1/workflows'), api('GET', '/v1/participants')]);
        return { workflows: workflows.workflows, participants: participants.participants };
      },
      render({ workflows, participants }) {
        if (workflows.length === 0) {
          replace(body, h('section', { class: 'panel' }, h('div', { class: 'empty' }, 'No workflow defined yet.')));
          return;
        }
        const kinds = {};
        for (const p of participants) {
          for (const [action, endpoints] of Object.entries(p.actions || {})) kinds[`${p.name}.${action}`] = 'try' in endpoints ? 'tcc' : 'saga';
        }
        replace(body, workflows.map((wf, index) => h('section', { class: 'panel workflow', id: `wf-${wf.name}`, 'data-workflow': wf.name },
          h('div', { class: 'panel-head' }, h('h2', {}, wf.name), h('span', { class: 'badge' }, `v${wf.version}`),
            wf.business_key ? h('span', { class: 'muted' }, 'business key ', h('code', {}, wf.business_key)) : null,
            wf.timeout_ms ? h('span', { class: 'muted' }, `deadline ${duration(wf.timeout_ms)}`) : null,
            h('span', { class: 'spacer' }),
            h('a', { href: `/ui${query({ workflow: wf.name })}`, 'data-nav': true }, 'Sagas →')),
          h('div', { class: 'dag-wrap' }, dag(wf.steps, kinds, index)),
          h('div', { class: 'legend' }, h('span', {}, kindTag('saga'), 'action / compensate'), h('span', {}, kindTag('tcc'), 'try / confirm / cancel'),
            h('span', {}, 'An arrow means “runs after”; steps in one column may run at once.')))));
        // A deep link to one workflow scrolls to it once, not at every refresh.
        if (location.hash && !scrolled) {
          scrolled = true;
          const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
          if (target) target.scrollIntoView();
        }
      },
    };
  }

  /** Each step's dependencies by index: `after` names, or the previous step when absent. */
  function dependencies(steps) {
    const index = new Map(steps.map((step, i) => [step.name, i]));
    return steps.map((step, i) => {
      if (Array.isArray(step.after)) return step.after.map((name) => index.get(name)).filter((j) => j !== undefined);
      return i === 0 ? [] : [i - 1];
    });
  }

  /** The workflow's DAG as inline SVG: columns by longest path from a root, rows by step order. */
  function dag(steps, kinds, id) {
    const deps = dependencies(steps);
    const layer = new Array(steps.length).fill(-1);
    const depth = (i, seen) => {
      if (layer[i] >= 0) return layer[i];
      if (seen.has(i)) return 0; // a cycle cannot be stored; draw rather than recurse forever
      seen.add(i);
      layer[i] = deps[i].length === 0 ? 0 : 1 + Math.max(...deps[i].map((j) => depth(j, seen)));
      return layer[i];
    };
    steps.forEach((_, i) => depth(i, new Set()));
    const columns = [];
    steps.forEach((_, i) => (columns[layer[i]] = columns[layer[i]] || []).push(i));
    const W = 190, H = 54, GAP_X = 64, GAP_Y = 18, PAD = 8;
    const pos = [];
    const rows = Math.max(...columns.map((column) => column.length));
    // Each column centred on the tallest one.
    columns.forEach((column, c) => column.forEach((i, r) => {
      const offset = ((rows - column.length) * (H + GAP_Y)) / 2;
      pos[i] = { x: PAD + c * (W + GAP_X), y: PAD + offset + r * (H + GAP_Y) };
    }));
    const width = PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X;
    const height = PAD * 2 + rows * H + (rows - 1) * GAP_Y;
    const arrow = `dag-arrow-${id}`;
    const edges = [];
    deps.forEach((parents, i) => parents.forEach((j) => {
      const x1 = pos[j].x + W, y1 = pos[j].y + H / 2, x2 = pos[i].x - 2, y2 = pos[i].y + H / 2;
      const mid = (x1 + x2) / 2;
      edges.push(s('path', { class: 'dag-edge', d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'marker-end': `url(#${arrow})` }));
    }));
    const clip = (text, max) => (text.length > max ? text.slice(0, max - 1) + '…' : text);
    const nodes = steps.map((step, i) => {
      const kind = kinds[`${step.participant}.${step.action}`] || 'unknown';
      return s('g', { class: `dag-node ${kind}`, 'data-step': step.name, transform: `translate(${pos[i].x},${pos[i].y})` },
        s('title', {}, `${step.name}: ${step.participant}.${step.action}` + (kind === 'unknown' ? ' (participant or action not registered)' : '')),
        s('rect', { width: W, height: H, rx: 7 }),
        s('text', { class: 'name', x: 12, y: 22 }, clip(step.name, 20)),
        s('text', { class: 'sub', x: 12, y: 41 }, clip(`${step.participant}.${step.action}`, 24)),
        s('text', { class: 'tag', x: W - 10, y: 20, 'text-anchor': 'end' }, kind === 'unknown' ? '?' : kind.toUpperCase()));
    });
    return s('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `DAG of ${steps.length} steps` },
      s('defs', {}, s('marker', { id: arrow, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        s('path', { class: 'dag-arrow', d: 'M0,0 L10,5 L0,10 z' }))),
      edges, nodes);
  }

  function notFoundView() {
    return {
      section: '',
      title: 'Not found',
      mount(root) {
        replace(root, h('section', { class: 'panel' }, h('div', { class: 'empty' }, 'No such page. ', h('a', { href: '/ui', 'data-nav': true }, 'Back to the sagas'))));
      },
      load: async () => null,
      render() {},
    };
  }

  // ---------------------------------------------------------------- banner, stuck count

  function showBanner(message, kind) {
    const banner = $('#banner');
    banner.textContent = message;
    banner.className = `banner${kind === 'info' ? ' info' : ''}`;
    banner.hidden = false;
  }

  function hideBanner() {
    $('#banner').hidden = true;
  }

  async function refreshStuckCount() {
    try {
      const list = await api('GET', `/v1/sagas${query({ state: 'stuck', limit: 100 })}`);
      const count = $('#stuck-count');
      const n = list.sagas.length;
      count.hidden = n === 0;
      count.textContent = n === 0 ? '' : `${n}${list.next_cursor ? '+' : ''}`;
    } catch (_) { /* the view's own refresh reports the error */ }
  }

  // ---------------------------------------------------------------- router and refresh loop

  const router = {
    view: null,
    lastData: null,
    renderedAt: 0,
    timer: null,
    generation: 0,
    busy: false,

    resolve(pathname, params) {
      const path = pathname.replace(/\/+$/, '');
      if (path === '/ui' || path === '/ui/sagas') return sagasView(params);
      const saga = path.match(/^\/ui\/sagas\/([^/]+)$/);
      if (saga) return sagaView(decodeURIComponent(saga[1]));
      if (path === '/ui/stuck') return stuckView();
      if (path === '/ui/participants') return participantsView();
      if (path === '/ui/workflows') return workflowsView();
      return notFoundView();
    },

    go(url) {
      history.pushState(null, '', url);
      this.start();
    },

    start() {
      this.view = this.resolve(location.pathname, new URLSearchParams(location.search));
      this.lastData = null;
      document.title = `${this.view.title} · Saga coordinator`;
      for (const link of document.querySelectorAll('.sections a')) {
        link.classList.toggle('current', link.dataset.section === this.view.section);
      }
      this.view.mount($('#view'));
      hideBanner();
      this.refresh(true);
    },

    /** Loads and renders the current view; `force` re-renders even when nothing changed. */
    async refresh(force) {
      clearTimeout(this.timer);
      // Only the latest refresh draws: an older one (other filters, another page) is dropped.
      const generation = ++this.generation;
      const view = this.view;
      try {
        const [data] = await Promise.all([view.load(), refreshStuckCount()]);
        if (generation !== this.generation) return;
        const snapshot = JSON.stringify(data);
        // Unchanged data is not drawn again (a selection survives), except now and then so
        // that "12s ago" stays true.
        if (force || snapshot !== this.lastData || Date.now() - this.renderedAt > STALE_RENDER_MS) {
          this.lastData = snapshot;
          this.renderedAt = Date.now();
          view.render(data);
        }
        if (!$('#banner').classList.contains('info')) hideBanner();
        $('#refreshed').textContent = `Updated ${clock(new Date().toISOString())}`;
      } catch (e) {
        if (generation !== this.generation) return;
        if (e.status === 404 && view.missing) {
          view.missing(e);
          return;
        }
        showBanner(e.message);
        console.warn('dashboard refresh failed:', e.message);
      } finally {
        if (generation === this.generation) this.schedule();
      }
    },

    schedule() {
      clearTimeout(this.timer);
      if (!$('#live').checked || document.visibilityState !== 'visible') return;
      this.timer = setTimeout(() => {
        // Not while a dialog is open: the operator is reading what they act on.
        if (document.querySelector('dialog[open]')) this.schedule();
        else this.refresh(false);
      }, REFRESH_MS);
    },
  };

  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-nav]');
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin) return;
    event.preventDefault();
    if (url.pathname === location.pathname && url.search === location.search) {
      if (url.hash) location.hash = url.hash;
      router.refresh(true);
      return;
    }
    router.go(url.pathname + url.search + url.hash);
  });
  window.addEventListener('popstate', () => router.start());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') router.refresh(false);
    else clearTimeout(router.timer);
  });
  $('#live').addEventListener('change', () => router.refresh(false));

  router.start();
})();
