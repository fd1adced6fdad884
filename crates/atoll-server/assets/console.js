// Atoll console: the few things a server-rendered page cannot do alone.
// Changes go through the JSON API (which checks roles and audits them);
// live parts re-fetch their fragment or poll the API.
'use strict';
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const enc = encodeURIComponent;

  // Calls the API; resolves to the parsed body, rejects with its message.
  async function api(method, url, body) {
    const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const err = new Error((data && data.message) || (res.status + ' ' + res.statusText));
      err.status = res.status;
      err.code = data && data.error;
      throw err;
    }
    return data;
  }

  // A session that ended while the page was open: back to the login page.
  function expired(err) {
    if (err && err.status === 401) { location.assign('/login'); return true; }
    return false;
  }

  function show(el, msg) {
    if (!el) return;
    el.textContent = msg || '';
    el.hidden = !msg;
  }

  // "YYYY-MM-DD HH:MM:SS" in UTC, like the server renders it.
  const utc = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

  // Header: log out.
  const logout = $('#logout');
  if (logout) {
    logout.addEventListener('click', async (ev) => {
      ev.preventDefault();
      try { await api('POST', '/api/v1/auth/logout'); } catch (_) { /* gone already */ }
      location.assign('/login');
    });
  }

  // Login.
  const login = $('#login-form');
  if (login) {
    login.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = $('#login-submit');
      btn.disabled = true;
      show($('#login-error'), '');
      try {
        const r = await api('POST', '/api/v1/auth/login', {
          username: $('#username').value,
          password: $('#password').value,
        });
        location.assign(r.must_change_password ? '/password' : '/hosts');
      } catch (err) {
        show($('#login-error'), err.message);
        btn.disabled = false;
      }
    });
  }

  // Change password.
  const pw = $('#password-form');
  if (pw) {
    pw.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = $('#password-error');
      const next = $('#new-password').value;
      if (next !== $('#confirm-password').value) {
        show(err, 'the two new passwords differ');
        return;
      }
      const btn = $('#password-submit');
      btn.disabled = true;
      show(err, '');
      try {
        await api('POST', '/api/v1/auth/password', {
          current_password: $('#current-password').value,
          new_password: next,
        });
        location.assign('/hosts');
      } catch (e) {
        if (!expired(e)) show(err, e.message);
        btn.disabled = false;
      }
    });
  }

  // Table rows that link somewhere: the whole row is clickable.
  document.addEventListener('click', (ev) => {
    const row = ev.target.closest && ev.target.closest('tr[data-href]');
    if (!row || ev.target.closest('a, button, input, select')) return;
    if (window.getSelection && String(window.getSelection())) return;
    location.assign(row.dataset.href);
  });

  // Live fragments: re-fetch this page with ?fragment=1 and swap the part in.
  $$('[data-refresh]').forEach((box) => {
    const every = Number(box.dataset.refresh) || 3000;
    const url = new URL(location.href);
    url.searchParams.set('fragment', box.dataset.fragment || '1');
    const tick = async () => {
      try {
        const res = await fetch(url, { credentials: 'same-origin' });
        if (res.redirected || !res.ok) {
          if (res.redirected && new URL(res.url).pathname === '/login') { location.assign('/login'); return; }
        } else {
          box.innerHTML = await res.text();
          // A fragment may carry copies of things outside it (a status in
          // the page head): <x data-mirror="ID"> updates the element #ID.
          $$('[data-mirror]', box).forEach((src) => {
            const dst = document.getElementById(src.dataset.mirror);
            if (dst) { dst.className = src.className; dst.textContent = src.textContent; }
          });
        }
      } catch (_) { /* server restarting; try again */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });

  // Host: run the precheck now.
  const check = $('#check-form');
  if (check) {
    check.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = $('#run-check');
      const err = $('#check-error');
      btn.disabled = true;
      btn.textContent = 'Checking…';
      show(err, '');
      try {
        await api('POST', '/api/v1/hosts/check', { hosts: [check.dataset.host], profile: $('#check-profile').value });
        location.reload();
      } catch (e) {
        if (!expired(e)) show(err, e.message);
        btn.disabled = false;
        btn.textContent = 'Run precheck';
      }
    });
  }

  // Task: follow it live and offer the operator's levers.
  const task = $('#task');
  if (task) followTask(task);

  function followTask(el) {
    const id = el.dataset.task;
    const base = '/api/v1/tasks/' + enc(id);
    const logs = $('#logs');
    let last = Number(el.dataset.lastLog) || 0;
    let settled = el.dataset.settled === 'true';
    let timer = null;

    function apply(t) {
      settled = ['succeeded', 'failed', 'cancelled', 'rolled_back'].includes(t.status);
      el.className = 'task ts-' + t.status + ' ph-' + t.phase;
      el.dataset.settled = String(settled);
      const st = $('#task-status');
      st.textContent = t.status;
      st.className = 'badge s-' + t.status;
      $('#task-progress').textContent = t.steps_done + '/' + t.steps_total;
      $('#task-phase').textContent = t.phase + (t.cancel_requested ? ' (cancel requested)' : '');
      $('#task-finished').textContent = t.finished_at_ms ? utc(t.finished_at_ms) : '—';
      const boxes = new Map($$('.step', el).map((b) => [b.dataset.step, b]));
      for (const s of t.steps || []) {
        const b = boxes.get(s.key);
        if (!b) continue;
        b.className = 'step st-' + s.status;
        const ss = $('.step-status', b);
        ss.textContent = s.status;
        ss.className = 'step-status badge s-' + s.status;
        $('.step-attempts', b).textContent = s.attempts + '/' + s.max_attempts;
        show($('.step-error', b), s.error || '');
      }
    }

    function append(lines) {
      if (!lines || !lines.length) return;
      const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 8;
      for (const l of lines) {
        const span = document.createElement('span');
        span.className = 'lv-' + l.level;
        span.textContent = [utc(l.at_ms), l.step, '#' + l.attempt, l.level, l.message].join('  ') + '\n';
        logs.appendChild(span);
        last = Math.max(last, l.id);
      }
      el.dataset.lastLog = String(last);
      if (atBottom) logs.scrollTop = logs.scrollHeight;
    }

    async function tick() {
      try {
        apply(await api('GET', base));
        append(await api('GET', base + '/logs?after=' + last));
      } catch (e) {
        if (expired(e)) return;
      }
      timer = settled ? null : setTimeout(tick, 1000);
    }

    function follow() {
      if (timer === null) timer = setTimeout(tick, 0);
    }

    logs.scrollTop = logs.scrollHeight;
    if (!settled) follow();

    el.addEventListener('click', async (ev) => {
      const btn = ev.target.closest('button[data-action]');
      if (!btn) return;
      const action = btn.dataset.action;
      const step = btn.closest('.step');
      const msg = step ? $('.step-msg', step) : $('#task-error');
      const url = step ? base + '/steps/' + enc(step.dataset.step) + '/' + action : base + '/' + action;
      btn.disabled = true;
      show(msg, '');
      try {
        apply(await api('POST', url));
        follow();
      } catch (e) {
        if (!expired(e)) show(msg, e.message);
      } finally {
        btn.disabled = false;
      }
    });
  }

  // Alerts: rules, silences (through the API, then a fresh page).
  const alerts = $('#alerts-error');
  if (alerts) {
    const list = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);
    const act = async (fn) => {
      show(alerts, '');
      try { await fn(); location.reload(); } catch (e) { if (!expired(e)) show(alerts, e.message); }
    };
    document.addEventListener('click', (ev) => {
      const b = ev.target.closest('button.rule-toggle, button.rule-delete, button.silence-expire');
      if (!b) return;
      if (b.classList.contains('rule-toggle')) {
        act(async () => {
          const url = '/api/v1/alerts/rules/' + enc(b.dataset.rule);
          const rule = await api('GET', url);
          rule.enabled = b.dataset.enable === 'true';
          await api('PUT', url, rule);
        });
      } else if (b.classList.contains('rule-delete')) {
        if (confirm('Delete rule ' + b.dataset.rule + '?')) act(() => api('DELETE', '/api/v1/alerts/rules/' + enc(b.dataset.rule)));
      } else {
        act(() => api('DELETE', '/api/v1/alerts/silences/' + enc(b.dataset.silence)));
      }
    });
    const ruleForm = $('#rule-form');
    if (ruleForm) {
      ruleForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const f = ruleForm.elements;
        act(() => api('POST', '/api/v1/alerts/rules', {
          name: f.name.value.trim(),
          metric: f.metric.value.trim(),
          match: list(f.match.value),
          rate: f.rate.checked,
          agg: f.agg.value || null,
          by: list(f.by.value),
          condition: f.condition.value.trim(),
          for_s: Number(f.for_s.value) || 0,
          severity: f.severity.value,
          summary: f.summary.value.trim(),
        }));
      });
    }
    const silenceForm = $('#silence-form');
    if (silenceForm) {
      silenceForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const f = silenceForm.elements;
        act(() => api('POST', '/api/v1/alerts/silences', {
          match: list(f.match.value), duration: f.duration.value.trim(), comment: f.comment.value.trim(),
        }));
      });
    }
  }
})();
