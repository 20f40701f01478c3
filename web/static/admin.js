// The admin page: the user list (search, status filter, sort, page size,
// total), a user's detail view (names, sessions and signing out
// everywhere, the sign-in lock, the password-reset email), the create-user
// form (a password or an emailed invitation) with the API's field errors
// next to the fields, enable/disable and delete with confirmation, role
// editing, and the audit log (filtered, paged, exported as CSV). Text is
// only ever set with textContent; state changes carry the CSRF token.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const rows = $('user-rows');
  const status = $('admin-status');
  const createForm = $('create-form');
  let perPage = 25;
  let page = 1;
  let total = 0;
  let search = '';
  let roles = [];
  const consoleLink = $('keycloak-console');
  const consoleBase = consoleLink ? consoleLink.href : null;

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `Request failed (${status})`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    const options = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign('/auth/login?return_to=%2Fadmin');
      throw new ApiError(401, { detail: 'Your session has ended.' });
    }
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, problem);
    }
    // 202 and 204 carry no body.
    return (response.headers.get('content-type') || '').includes('json') ? response.json() : null;
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(label, className, onClick, ariaLabel) {
    const b = el('button', className, label);
    b.type = 'button';
    if (ariaLabel) b.setAttribute('aria-label', ariaLabel);
    b.addEventListener('click', onClick);
    return b;
  }

  // ---- Users ---------------------------------------------------------------

  function roleEditor(user) {
    const box = el('div', 'role-editor');
    const group = el('div', 'role-choices');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', `Roles of ${user.username}`);
    const boxes = [];
    for (const role of roles) {
      const label = el('label', 'role-choice');
      const check = document.createElement('input');
      check.type = 'checkbox';
      check.value = role.name;
      check.checked = user.roles.includes(role.name);
      check.dataset.role = role.name;
      boxes.push(check);
      label.append(check, ` ${role.name}`);
      group.appendChild(label);
    }
    const save = button('Save roles', 'button small secondary save-roles', async () => {
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      try {
        await api('PATCH', `/api/admin/users/${user.id}`, { roles: chosen });
        say(`Roles of ${user.username} saved: ${chosen.join(', ') || 'none'}.`);
        await Promise.all([loadUsers(), loadAudit()]);
      } catch (error) {
        say(`Roles of ${user.username} were not saved: ${error.message}`, true);
      }
    }, `Save roles of ${user.username}`);
    box.append(group, save);
    return box;
  }

  function userRow(user) {
    const tr = document.createElement('tr');
    tr.dataset.username = user.username;
    const name = `${user.firstName} ${user.lastName}`.trim();
    const who = el('td', 'user-cell');
    who.append(el('strong', null, user.username));
    if (name) who.append(el('span', 'muted', name));
    who.append(el('span', 'muted', user.lastLoginAt
      ? `Last sign-in ${when(user.lastLoginAt)}`
      : 'Never signed in'));
    const email = el('td', 'email-cell', user.email || '—');
    const state = el('td', null);
    const badge = el('span', `badge ${user.enabled ? 'ok' : 'off'}`, user.enabled ? 'Enabled' : 'Disabled');
    state.append(badge);
    if (user.status !== 'active') state.append(el('span', 'badge warn', user.status));
    const roleCell = el('td', null);
    roleCell.append(roleEditor(user));
    const actions = el('td', 'actions');
    const live = user.status === 'active';
    const details = button('Details', 'button small secondary details', () => showDetail(user), `Details of ${user.username}`);
    details.disabled = !live;
    const toggle = button(user.enabled ? 'Disable' : 'Enable', 'button small secondary toggle-enabled', async () => {
      if (user.enabled && !await confirmAction(`Disable ${user.username}?`,
        `${user.username} is signed out everywhere and cannot sign in until enabled again.`, 'Disable')) return;
      try {
        await api('PATCH', `/api/admin/users/${user.id}`, { enabled: !user.enabled });
        say(`${user.username} is now ${user.enabled ? 'disabled' : 'enabled'}.`);
        await Promise.all([loadUsers(), loadAudit()]);
      } catch (error) {
        say(`Could not change ${user.username}: ${error.message}`, true);
      }
      toggleFor(user.username)?.focus();
    }, `${user.enabled ? 'Disable' : 'Enable'} ${user.username}`);
    toggle.disabled = !live;
    const remove = button('Delete', 'button small danger delete-user', () => confirmDelete(user), `Delete ${user.username}`);
    remove.disabled = !live;
    actions.append(details, toggle, remove);
    tr.append(who, email, state, roleCell, actions);
    return tr;
  }

  const toggleFor = (username) => rows.querySelector(`tr[data-username="${CSS.escape(username)}"] .toggle-enabled`);

  function when(iso) {
    return new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  }

  async function loadUsers() {
    const query = new URLSearchParams({ page: String(page), per_page: String(perPage), sort: $('sort').value });
    if (search) query.set('search', search);
    if ($('status-filter').value) query.set('status', $('status-filter').value);
    const result = await api('GET', `/api/admin/users?${query}`);
    total = result.total;
    rows.textContent = '';
    if (result.items.length === 0) {
      const tr = document.createElement('tr');
      const td = el('td', 'empty', search ? 'No user matches this search.' : 'No users yet.');
      td.colSpan = 5;
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    for (const user of result.items) rows.appendChild(userRow(user));
    const pages = Math.max(1, Math.ceil(total / perPage));
    const first = total === 0 ? 0 : (page - 1) * perPage + 1;
    const last = Math.min(total, page * perPage);
    $('page-info').textContent = `${first}–${last} of ${total} user${total === 1 ? '' : 's'} · page ${page} of ${pages}`;
    $('prev-page').disabled = page <= 1;
    $('next-page').disabled = page >= pages;
  }

  $('prev-page').addEventListener('click', () => { page = Math.max(1, page - 1); loadUsers().catch(failed); });
  $('next-page').addEventListener('click', () => { page += 1; loadUsers().catch(failed); });
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    search = $('search').value.trim();
    page = 1;
    loadUsers().catch(failed);
  });
  for (const id of ['status-filter', 'sort', 'page-size']) {
    $(id).addEventListener('change', () => {
      perPage = Number($('page-size').value);
      page = 1;
      loadUsers().catch(failed);
    });
  }

  // ---- Confirmation ------------------------------------------------------------

  const confirmDialog = $('confirm-action');
  // Resolves whether the admin confirmed.
  function confirmAction(title, text, action) {
    $('confirm-action-title').textContent = title;
    $('confirm-action-text').textContent = text;
    $('confirm-action-yes').textContent = action;
    confirmDialog.returnValue = '';
    confirmDialog.showModal();
    return new Promise((resolve) => {
      confirmDialog.addEventListener('close', () => resolve(confirmDialog.returnValue === 'confirm'), { once: true });
    });
  }

  // ---- One user ------------------------------------------------------------------

  const detail = $('user-detail');
  let shown = null;

  function detailSay(text, isError) {
    const line = $('detail-status');
    line.textContent = text;
    line.classList.toggle('error', Boolean(isError));
  }

  async function showDetail(listed) {
    delete detail.dataset.loaded;
    // Fresh from the server: the list may be minutes old.
    let user;
    try {
      user = await api('GET', `/api/admin/users/${listed.id}`);
    } catch (error) {
      say(`Could not open ${listed.username}: ${error.message}`, true);
      return;
    }
    shown = user;
    $('detail-title').textContent = `${user.username}`;
    detailSay('');
    $('detail-email').textContent = user.email || '—';
    $('detail-state').textContent = `${user.enabled ? 'Enabled' : 'Disabled'}, ${user.status}`;
    $('detail-roles').textContent = user.roles.join(', ') || 'none';
    $('detail-created').textContent = when(user.createdAt);
    $('detail-last').textContent = user.lastLoginAt ? when(user.lastLoginAt) : 'Never';
    $('detail-first').value = user.firstName;
    $('detail-last-name').value = user.lastName;
    $('detail-email-input').value = user.email || '';
    for (const p of detail.querySelectorAll('[data-error-for]')) p.textContent = '';
    const kcLink = $('detail-console');
    kcLink.hidden = !(consoleBase && user.keycloakId);
    if (consoleBase && user.keycloakId) kcLink.href = `${consoleBase}/users/${encodeURIComponent(user.keycloakId)}/settings`;
    $('detail-reset').disabled = !user.email || !user.enabled;
    $('detail-sessions').textContent = '';
    $('detail-lock').textContent = 'Loading…';
    $('detail-unlock').hidden = true;
    detail.showModal();
    await Promise.all([loadSessions(user), loadLock(user)]);
    detail.dataset.loaded = user.username;
  }

  async function loadSessions(user) {
    const list = $('detail-sessions');
    try {
      const sessions = await api('GET', `/api/admin/users/${user.id}/sessions`);
      if (shown !== user) return;
      list.textContent = '';
      for (const s of sessions) {
        const li = el('li', 'session');
        const started = s.startedAt ? when(s.startedAt) : 'unknown';
        const last = s.lastAccessAt ? when(s.lastAccessAt) : 'unknown';
        li.append(el('strong', null, s.clients.join(', ') || 'Keycloak'),
          el('span', 'muted', ` from ${s.ipAddress || 'an unknown address'} · started ${started} · last used ${last}`));
        list.appendChild(li);
      }
      if (sessions.length === 0) list.appendChild(el('li', 'muted', 'No active sessions.'));
      $('detail-sign-out').disabled = sessions.length === 0;
    } catch (error) {
      list.textContent = '';
      list.appendChild(el('li', 'field-error', `Sessions could not be read: ${error.message}`));
    }
  }

  async function loadLock(user) {
    try {
      const lock = await api('GET', `/api/admin/users/${user.id}/lock`);
      if (shown !== user) return;
      const failures = `${lock.failures} failed sign-in${lock.failures === 1 ? '' : 's'}`;
      const lastFailure = lock.lastFailureAt
        ? `, the last ${when(lock.lastFailureAt)}${lock.lastFailureIp ? ` from ${lock.lastFailureIp}` : ''}` : '';
      $('detail-lock').textContent = lock.locked
        ? `Locked out after ${failures}${lastFailure}.`
        : `Not locked (${failures}${lastFailure}).`;
      $('detail-unlock').hidden = !lock.locked;
    } catch (error) {
      $('detail-lock').textContent = `The lock could not be read: ${error.message}`;
    }
  }

  $('detail-save-names').addEventListener('click', async () => {
    const user = shown;
    for (const p of detail.querySelectorAll('[data-error-for]')) p.textContent = '';
    try {
      const change = {
        firstName: $('detail-first').value.trim(),
        lastName: $('detail-last-name').value.trim(),
      };
      const email = $('detail-email-input').value.trim();
      if (email !== (user.email || '')) change.email = email;
      const saved = await api('PATCH', `/api/admin/users/${user.id}`, change);
      shown = saved;
      $('detail-email').textContent = saved.email || '—';
      detailSay(`The details of ${user.username} were saved.`);
      await Promise.all([loadUsers(), loadAudit()]);
    } catch (error) {
      const problem = error.problem || {};
      const errors = Array.isArray(problem.errors) ? problem.errors
        : problem.field ? [{ field: problem.field, message: problem.detail }] : [];
      for (const e of errors) {
        const p = detail.querySelector(`[data-error-for="${CSS.escape(e.field)}"]`);
        if (p) p.textContent = e.message;
      }
      detailSay(`Nothing was saved: ${error.message}`, true);
    }
  });

  $('detail-sign-out').addEventListener('click', async () => {
    const user = shown;
    detail.close();
    const yes = await confirmAction(`Sign ${user.username} out everywhere?`,
      `Every session of ${user.username} ends, in voxgate and in Keycloak; they can sign in again.`, 'Sign out everywhere');
    detail.showModal();
    if (!yes) { $('detail-sign-out').focus(); return; }
    try {
      await api('POST', `/api/admin/users/${user.id}/sign-out`);
      await Promise.all([loadSessions(user), loadAudit()]);
      detailSay(`${user.username} was signed out everywhere.`);
    } catch (error) {
      detailSay(`${user.username} was not signed out: ${error.message}`, true);
    }
    $('detail-title').focus();
  });

  $('detail-unlock').addEventListener('click', async () => {
    const user = shown;
    try {
      await api('DELETE', `/api/admin/users/${user.id}/lock`);
      await Promise.all([loadLock(user), loadAudit()]);
      detailSay(`${user.username} was unlocked.`);
    } catch (error) {
      detailSay(`${user.username} was not unlocked: ${error.message}`, true);
    }
    $('detail-lock').focus();
  });

  $('detail-reset').addEventListener('click', async () => {
    const user = shown;
    try {
      await api('POST', `/api/admin/users/${user.id}/password-reset`);
      detailSay(`A password-reset email was sent to ${user.email}.`);
      await loadAudit();
    } catch (error) {
      detailSay(`No email was sent: ${error.message}`, true);
    }
  });

  $('detail-audit').addEventListener('click', () => {
    auditTarget = shown;
    detail.close();
    auditPage = 1;
    loadAudit().catch(failed);
  });

  detail.addEventListener('close', () => {
    // Back to the row the detail was opened from.
    if (shown && !confirmDialog.open) rows.querySelector(`tr[data-username="${CSS.escape(shown.username)}"] .details`)?.focus();
  });

  // ---- Delete ----------------------------------------------------------------

  const dialog = $('confirm-delete');
  let deleting = null;
  function confirmDelete(user) {
    deleting = user;
    $('confirm-delete-text').textContent =
      `Delete ${user.username}${user.email ? ` (${user.email})` : ''}? They are removed from Keycloak and can no longer sign in. The audit log keeps a record.`;
    dialog.showModal();
  }
  dialog.addEventListener('close', async () => {
    const user = deleting;
    deleting = null;
    if (!user || dialog.returnValue !== 'confirm') return;
    try {
      await api('DELETE', `/api/admin/users/${user.id}`);
      say(`${user.username} was deleted.`);
      await Promise.all([loadUsers(), loadAudit()]);
    } catch (error) {
      say(`Could not delete ${user.username}: ${error.message}`, true);
    }
  });

  // ---- Create ------------------------------------------------------------------

  function clearErrors() {
    for (const p of createForm.querySelectorAll('[data-error-for]')) p.textContent = '';
    for (const i of createForm.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  function fieldError(field, message) {
    const target = createForm.querySelector(`[data-error-for="${CSS.escape(field)}"]`) ||
      createForm.querySelector('[data-error-for="_form"]');
    target.textContent = target.textContent ? `${target.textContent} ${message}` : message;
    const inputEl = createForm.querySelector(`[name="${CSS.escape(field)}"]`);
    if (inputEl) {
      inputEl.setAttribute('aria-invalid', 'true');
      if (target.id === '') target.id = `error-${field}`;
      inputEl.setAttribute('aria-describedby', target.id);
    }
  }

  function showNewRoles() {
    const box = $('new-roles');
    box.textContent = '';
    for (const role of roles) {
      const label = el('label', 'role-choice');
      const check = document.createElement('input');
      check.type = 'checkbox';
      check.name = 'roles';
      check.value = role.name;
      check.checked = role.name === 'user';
      label.append(check, ` ${role.name}`);
      label.title = role.description;
      box.appendChild(label);
    }
  }

  createForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const value = (name) => createForm.querySelector(`[name="${name}"]`).value;
    const body = {
      username: value('username').trim(),
      email: value('email').trim(),
      firstName: value('firstName').trim(),
      lastName: value('lastName').trim(),
      roles: [...createForm.querySelectorAll('input[name="roles"]:checked')].map((c) => c.value),
    };
    if (invite()) body.sendInvite = true;
    else body.password = { value: value('password'), temporary: $('new-temporary').checked };
    const submit = $('create-user');
    submit.disabled = true;
    try {
      const created = await api('POST', '/api/admin/users', body);
      createForm.reset();
      showNewRoles();
      say(body.sendInvite
        ? `User ${created.username} was created and invited by email.`
        : `User ${created.username} was created.`);
      showCredential();
      search = '';
      $('search').value = '';
      await Promise.all([loadUsers(), loadAudit()]);
    } catch (error) {
      const problem = error.problem || {};
      if (Array.isArray(problem.errors) && problem.errors.length > 0) {
        for (const e of problem.errors) fieldError(e.field, e.message);
      } else if (problem.field) {
        fieldError(problem.field, problem.detail || error.message);
      } else {
        fieldError('_form', error.message);
      }
      const firstInvalid = createForm.querySelector('[aria-invalid="true"]');
      if (firstInvalid) firstInvalid.focus();
      say('The user was not created. See the messages next to the fields.', true);
    } finally {
      submit.disabled = false;
    }
  });

  const invite = () => createForm.querySelector('input[name="credential"]:checked').value === 'invite';
  function showCredential() {
    $('password-field').hidden = invite();
    $('temporary-field').hidden = invite();
  }
  for (const radio of createForm.querySelectorAll('input[name="credential"]')) radio.addEventListener('change', showCredential);

  // ---- Repair ---------------------------------------------------------------------

  async function loadUnfinished() {
    const [pending, failed] = await Promise.all([
      api('GET', '/api/admin/users?status=pending&per_page=100'),
      api('GET', '/api/admin/users?status=failed&per_page=100'),
    ]);
    const list = $('unfinished');
    list.textContent = '';
    for (const user of [...pending.items, ...failed.items]) {
      const li = el('li', 'repair-item');
      li.dataset.username = user.username;
      li.append(el('strong', null, user.username), ' ',
        el('span', `badge ${user.status === 'failed' ? 'off' : 'warn'}`, user.status), ' ',
        el('span', 'muted', `started ${when(user.createdAt)}`), ' ');
      if (user.status === 'pending') {
        li.append(button('Finish or undo now', 'button small secondary recover', async () => {
          try {
            const report = await api('POST', `/api/admin/users/${user.id}/recover`);
            say(report.finished ? `The creation of ${user.username} was finished.`
              : report.compensated ? `The creation of ${user.username} was undone in both systems.`
                : `The creation of ${user.username} could not be settled yet; recovery tries again.`);
            await Promise.all([loadUnfinished(), loadUsers(), loadAudit()]);
          } catch (error) {
            say(`${user.username}: ${error.message}`, true);
          }
          $('unfinished-title').focus();
        }, `Finish or undo the creation of ${user.username}`));
      } else {
        li.append(
          button('Create again', 'button small secondary create-again', () => {
            // The form, filled in; the password (or invitation) is chosen again.
            createForm.querySelector('[name="username"]').value = user.username;
            createForm.querySelector('[name="email"]').value = user.email || '';
            createForm.querySelector('[name="firstName"]').value = user.firstName;
            createForm.querySelector('[name="lastName"]').value = user.lastName;
            $('new-password').focus();
            say(`The form holds ${user.username}; choose a password or an invitation and create.`);
          }, `Create ${user.username} again`),
          button('Clear', 'button small secondary clear-failed', async () => {
            try {
              await api('DELETE', `/api/admin/users/${user.id}`);
              say(`The failed creation of ${user.username} was cleared.`);
              await Promise.all([loadUnfinished(), loadAudit()]);
            } catch (error) {
              say(`${user.username}: ${error.message}`, true);
            }
            $('unfinished-title').focus();
          }, `Clear the failed creation of ${user.username}`),
        );
      }
      list.appendChild(li);
    }
    if (list.children.length === 0) list.appendChild(el('li', 'muted', 'None: every creation finished.'));
  }

  function showDrift(drift, fixing) {
    const body = $('drift-rows');
    body.textContent = '';
    for (const d of drift) {
      const tr = document.createElement('tr');
      tr.dataset.kind = d.kind;
      tr.append(el('td', null, d.kind.replaceAll('_', ' ')), el('td', null, d.username),
        el('td', null, d.detail), el('td', null, d.fixed || (fixing ? 'left as it is' : '—')));
      body.appendChild(tr);
    }
    $('drift-wrap').hidden = drift.length === 0;
    const fixable = drift.some((d) => d.kind !== 'stuck_provisioning');
    $('drift-fix').hidden = fixing || !fixable;
    $('drift-summary').textContent = drift.length === 0
      ? 'Keycloak and voxgate agree.'
      : fixing
        ? `${drift.filter((d) => d.fixed).length} of ${drift.length} difference${drift.length === 1 ? '' : 's'} fixed.`
        : `${drift.length} difference${drift.length === 1 ? '' : 's'} found.`;
  }

  $('drift-check').addEventListener('click', async () => {
    $('drift-summary').textContent = 'Checking…';
    try {
      showDrift(await api('GET', '/api/admin/reconcile'), false);
    } catch (error) {
      $('drift-summary').textContent = error.message;
    }
  });
  $('drift-fix').addEventListener('click', async () => {
    if (!await confirmAction('Fix the differences?',
      'Each is repaired in the direction that is safe (as voxgate users reconcile --fix); the audit log records it.', 'Fix them')) return;
    try {
      showDrift(await api('POST', '/api/admin/reconcile'), true);
      await Promise.all([loadUsers(), loadAudit(), loadUnfinished()]);
    } catch (error) {
      $('drift-summary').textContent = error.message;
    }
    $('drift-check').focus();
  });

  // ---- Audit --------------------------------------------------------------------

  const AUDIT_PER_PAGE = 20;
  let auditPage = 1;
  let auditTarget = null;

  function auditQuery() {
    const query = new URLSearchParams();
    if ($('audit-actor').value.trim()) query.set('actor', $('audit-actor').value.trim());
    if ($('audit-action').value) query.set('action', $('audit-action').value);
    if (auditTarget) query.set('target', auditTarget.id);
    return query;
  }

  // What changed, in a line: the details' fields, not JSON.
  function describe(details) {
    if (!details || typeof details !== 'object') return '';
    return Object.entries(details)
      .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0))
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : v}`)
      .join('; ');
  }

  async function loadAudit() {
    const query = auditQuery();
    $('audit-export').href = `/api/admin/audit/export${query.toString() ? `?${query}` : ''}`;
    query.set('page', String(auditPage));
    query.set('per_page', String(AUDIT_PER_PAGE));
    const result = await api('GET', `/api/admin/audit?${query}`);
    $('audit-target-line').hidden = !auditTarget;
    if (auditTarget) $('audit-target-name').textContent = auditTarget.username;
    const pages = Math.max(1, Math.ceil(result.total / AUDIT_PER_PAGE));
    $('audit-page-info').textContent = `Page ${auditPage} of ${pages} · ${result.total} entr${result.total === 1 ? 'y' : 'ies'}`;
    $('audit-prev').disabled = auditPage <= 1;
    $('audit-next').disabled = auditPage >= pages;
    const body = $('audit-rows');
    body.textContent = '';
    for (const entry of result.items) {
      const tr = document.createElement('tr');
      const time = el('time', null, new Date(entry.at).toLocaleString());
      time.dateTime = entry.at;
      const when = el('td', null);
      when.appendChild(time);
      tr.append(
        when,
        el('td', null, entry.actor),
        el('td', null, entry.action),
        el('td', null, entry.target || '—'),
        el('td', `outcome ${entry.outcome}`, entry.outcome),
        el('td', 'details-cell', describe(entry.details)),
        el('td', 'request-cell', entry.requestId || '—'),
      );
      body.appendChild(tr);
    }
    if (result.items.length === 0) {
      const tr = document.createElement('tr');
      const td = el('td', 'empty', auditQuery().toString() ? 'No entry matches these filters.' : 'Nothing has happened yet.');
      td.colSpan = 7;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  $('audit-filters').addEventListener('submit', (event) => {
    event.preventDefault();
    auditPage = 1;
    loadAudit().catch(failed);
  });
  $('audit-action').addEventListener('change', () => { auditPage = 1; loadAudit().catch(failed); });
  $('audit-target-clear').addEventListener('click', () => {
    auditTarget = null;
    auditPage = 1;
    loadAudit().catch(failed);
    $('audit-actor').focus();
  });
  $('audit-prev').addEventListener('click', () => { auditPage = Math.max(1, auditPage - 1); loadAudit().catch(failed); });
  $('audit-next').addEventListener('click', () => { auditPage += 1; loadAudit().catch(failed); });

  function failed(error) {
    say(error.message, true);
  }

  async function start() {
    try {
      roles = await api('GET', '/api/admin/roles');
    } catch (error) {
      failed(error);
    }
    showNewRoles();
    showCredential();
    perPage = Number($('page-size').value);
    await Promise.all([loadUsers().catch(failed), loadAudit().catch(failed), loadUnfinished().catch(failed)]);
    document.body.dataset.ready = 'true';
  }

  start();
})();
